"""Import the installed Patroni's modules into the test process without its side effect on the umask."""

from __future__ import annotations

import importlib
import os
from types import ModuleType


def patroni_module(name: str) -> ModuleType:
    """``importlib.import_module(name)`` for a ``patroni.*`` module, restoring the process umask afterwards:
    importing Patroni sets it to 077 (``patroni/file_perm.py``), which would leave every later file of the
    test process unreadable to the unprivileged user the server tests start processes as."""
    umask = os.umask(0o022)
    try:
        return importlib.import_module(name)
    finally:
        os.umask(umask)
