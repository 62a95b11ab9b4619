"""The program's stack configuration: reads ``Pulumi.<stack>.yaml`` once into typed, validated values.

It belongs to this program, not to the component library: programs that import the components build
their own Args.
"""

from stack.config import DATABASE_NAME, PROJECT, ROLE_PASSWORDS_OUTPUT, StackConfig, read_stack_config
from stack.reader import ConfigError

__all__ = ["DATABASE_NAME", "PROJECT", "ROLE_PASSWORDS_OUTPUT", "ConfigError", "StackConfig", "read_stack_config"]
