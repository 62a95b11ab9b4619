"""Run the whole program (``__main__.py``) for a stack file under the mock harness."""

from __future__ import annotations

import functools
import runpy
from pathlib import Path
from typing import Any

import yaml

from tests.harness import Recording, run_program

ROOT = Path(__file__).resolve().parent.parent
STACK_FILES = sorted(ROOT.glob("Pulumi.*.yaml"))
STACKS = [p.name.split(".")[1] for p in STACK_FILES]


def stack_file_config(stack: str) -> dict[str, Any]:
    """The ``config:`` block of ``Pulumi.<stack>.yaml`` as the CLI would pass it."""
    return yaml.safe_load((ROOT / f"Pulumi.{stack}.yaml").read_text())["config"]


def run_main(stack: str, config: dict[str, Any]) -> Recording:
    """Run ``__main__.py`` with ``config`` (full keys such as ``timescale-k8s:cluster``); a ``StackReference`` reads
    the recordings :func:`referenced_stacks` names."""
    return run_program(lambda: runpy.run_path(str(ROOT / "__main__.py"), run_name="__main__"), stack=stack, config=config,
                       stack_outputs=referenced_stacks(config))


def referenced_stacks(config: dict[str, Any]) -> dict[str, Recording]:
    """The stack files' recordings a config's ``passwordsFromStack`` names, by that name (its last part is the
    stack file: ``acme/timescale-k8s/prod`` reads ``Pulumi.prod.yaml``'s exports)."""
    source = (config.get("timescale-k8s:timescaledb") or {}).get("passwordsFromStack")
    return {source: run_stack(source.rsplit("/", 1)[-1])} if isinstance(source, str) else {}


@functools.cache
def run_stack(stack: str) -> Recording:
    """Run the program for a stack file in the repo (cached: the recording is read-only in tests)."""
    return run_main(stack, stack_file_config(stack))


def external_objects(config: dict[str, Any]) -> list[dict[str, Any]]:
    """Objects a stack's config names but expects to exist already (the backup credentials Secret)."""
    backup = config.get("timescale-k8s:backup") or {}
    secret = (backup.get("repository") or {}).get("credentialsSecret")
    if secret is None:
        return []
    return [{"apiVersion": "v1", "kind": "Secret", "metadata": {"name": secret},
             "data": {"AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": ""}}]


def stack_passwords(stack: str) -> list[str]:
    """The mocked passwords a stack's objects may carry: its own and those of the stacks it takes passwords from."""
    config = stack_file_config(stack)
    return [*run_stack(stack).mock_passwords(), *(p for source in referenced_stacks(config).values() for p in source.mock_passwords())]

