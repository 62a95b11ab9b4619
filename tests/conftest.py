"""Shared pytest setup: the mock harness runs programs itself (tests/harness.py sets mocks with preview=False
before any resource is created), so nothing here imports the program at collection time."""

from __future__ import annotations

import pytest

from tests.harness import Recording, run_program


@pytest.fixture
def run() -> type[Recording] | object:
    """Return ``run_program`` so tests can run a component program under mocks and get a Recording."""
    return run_program
