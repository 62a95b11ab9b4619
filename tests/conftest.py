"""Shared pytest setup.

Nothing is imported or mocked at collection time: ``tests.harness.run_program`` sets the Pulumi mocks
(``preview=False``) and the stack config itself before it runs a program, fresh for every run, so tests
of components and whole stacks never share state.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

SESSION_UMASK = os.umask(0o022)
os.umask(SESSION_UMASK)


@pytest.fixture(autouse=True)
def unchanged_umask() -> Iterator[None]:
    """Fail the test that changes the process umask, and restore it: a leaked 077 (importing Patroni sets
    one) makes every later file unreadable to the unprivileged user the server tests start processes as."""
    yield
    leaked = os.umask(SESSION_UMASK)
    assert leaked == SESSION_UMASK, f"the process umask was left at {leaked:03o} (was {SESSION_UMASK:03o})"
