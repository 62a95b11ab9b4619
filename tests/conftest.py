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


# -- tiers: ``--quick`` runs only the tests that start no external process --------------------------

HARNESS_MODULES = ("bench.pgserver", "bench.pgbouncer", "pgserver", "pgbouncer", "tests.ha.", "tests.backup.support",
                   "tests.backup.s3server", "tests.pglite", "tests.crd_validation", "wl_support",
                   "tests.workloads.", "subprocess")
"""Modules that start servers or other processes (``subprocess`` itself included): a test module or fixture
that uses one is ``real``."""


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--quick", action="store_true",
                     help="run only tests that start no external process (the inner loop); others are deselected")


_HARNESS_VERDICTS: dict[tuple[int, int], bool] = {}
"""``_from_harness`` per (module namespace, depth): the same few dozen namespaces come up for every one of the
~1100 items and their fixtures (uncached, classifying took 9 s of each worker's collection)."""


def _from_harness(namespace: dict[str, object], depth: int = 1) -> bool:
    """The namespace holds a harness module or something defined in one; with ``depth``, also a function
    imported from another module whose own namespace does (a helper that wraps ``subprocess``)."""
    key = (id(namespace), depth)
    if key not in _HARNESS_VERDICTS:
        _HARNESS_VERDICTS[key] = _namespace_uses_harness(namespace, depth)
    return _HARNESS_VERDICTS[key]


def _namespace_uses_harness(namespace: dict[str, object], depth: int) -> bool:
    for value in namespace.values():
        name = value.__name__ if isinstance(value, type(os)) else getattr(value, "__module__", None)
        if isinstance(name, str) and any(name == h.rstrip(".") or name.startswith(h) for h in HARNESS_MODULES):
            return True
        globals_ = getattr(value, "__globals__", None)
        if depth and isinstance(globals_, dict) and globals_ is not namespace and _from_harness(globals_, depth - 1):
            return True
    return False


def is_real(item: pytest.Item) -> bool:
    """``@pytest.mark.quick`` / ``real`` decide; else real when the test's module or one of its fixtures
    uses a process-starting harness, or it is marked ``ha``."""
    if item.get_closest_marker("quick"):
        return False
    if item.get_closest_marker("real") or item.get_closest_marker("ha"):
        return True
    module = getattr(item, "module", None)
    if module is not None and _from_harness(vars(module)):
        return True
    fixtures = getattr(getattr(item, "_fixtureinfo", None), "name2fixturedefs", {})
    return any(_from_harness(getattr(d.func, "__globals__", {})) for defs in fixtures.values() for d in defs)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    real = [item for item in items if is_real(item)]
    for item in real:
        item.add_marker(pytest.mark.real)
    if config.getoption("--quick"):
        chosen = set(map(id, real))
        config.hook.pytest_deselected(items=real)
        items[:] = [item for item in items if id(item) not in chosen]
        return
    # Longest first: files that start processes run before the rest (each file whole, in its own order), so
    # the xdist workers, which take files in this order, finish together instead of one ending on a cluster.
    starting_processes = {item.path for item in real}
    items.sort(key=lambda item: item.path not in starting_processes)


@pytest.fixture(autouse=True)
def no_process_in_quick_mode(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Under ``--quick`` starting any process fails the test loudly (a misclassified test must not silently
    slow the inner loop): mark it ``real`` or make it use a harness."""
    if not request.config.getoption("--quick"):
        return
    import subprocess

    def refuse(self: object, args: object, *rest: object, **kwargs: object) -> None:
        raise RuntimeError(f"--quick: {request.node.nodeid} started a process {args!r}; mark it @pytest.mark.real")

    monkeypatch.setattr(subprocess.Popen, "__init__", refuse)
