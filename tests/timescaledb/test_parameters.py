"""PostgreSQL parameter values: the table agrees with a real server, values parse as PostgreSQL parses
them, and the shared-memory estimate matches what PostgreSQL computes."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import psycopg
import pytest

from components.timescaledb import parameters as pp

VERSION_DIFFERENCES = {"wal_buffers", "timescaledb.max_background_workers"}
"""Not comparable here: wal_buffers' maximum is (2^31-1)/8kB in 17 and 18 alike but reported as -1 .. 262143
by the fixed GUC table of both; timescaledb's own parameter needs the library, which this server lacks."""


@pytest.fixture(scope="module")
def server() -> Iterator[object]:
    pgserver = pytest.importorskip("bench.pgserver")
    running = pgserver.PgServer().init().start()
    try:
        yield running
    finally:
        running.cleanup()


@pytest.fixture(scope="module")
def stopped_cluster() -> Iterator[object]:
    """An initialised data directory with no server running: ``postgres -C`` refuses a running one."""
    pgserver = pytest.importorskip("bench.pgserver")
    cluster = pgserver.PgServer().init()
    try:
        yield cluster
    finally:
        cluster.cleanup()


def test_the_table_matches_the_servers_own_description(server) -> None:  # type: ignore[no-untyped-def]
    kinds = {"bool": "bool", "int": "integer", "real": "real", "enum": "enum"}
    with psycopg.connect(server.dsn()) as conn:
        rows = conn.execute(
            "SELECT name, vartype, unit, min_val, max_val, enumvals FROM pg_settings WHERE name = ANY(%s)",
            (sorted(pp.SPECS),),
        ).fetchall()
    described = {row[0]: row[1:] for row in rows}
    assert len(described) >= len(pp.SPECS) - len(VERSION_DIFFERENCES)
    for name, spec in pp.SPECS.items():
        if name in VERSION_DIFFERENCES or name not in described:
            continue
        vartype, unit, low, high, choices = described[name]
        assert kinds[spec.kind] == vartype, name
        if spec.kind == "int":
            assert (spec.unit, spec.low, spec.high) == (unit, float(low), float(high)), name
        if spec.kind == "enum":
            assert set(spec.choices) == set(choices), name


@pytest.mark.parametrize(("name", "value", "expected"), [
    ("shared_buffers", "256MB", 32768),
    ("shared_buffers", "32768", 32768),
    ("shared_buffers", "1.5GB", 196608),
    ("work_mem", "64MB", 65536),
    ("max_wal_size", "2GB", 2048),
    ("checkpoint_timeout", "5min", 300),
    ("statement_timeout", "2s", 2000),
    ("log_min_duration_statement", "-1", -1),
    ("jit", "OFF", False),
    ("hot_standby_feedback", "1", True),
    ("wal_level", "Replica", "replica"),
    ("random_page_cost", "1.1", 1.1),
])
def test_values_parse_like_postgresql(name: str, value: str, expected: object) -> None:
    assert pp.parse_value(name, value, pp.SPECS[name]) == expected


@pytest.mark.parametrize(("name", "value"), [
    ("shared_buffers", "lots"), ("shared_buffers", "8"), ("work_mem", "64 MiB"), ("max_connections", "0"),
    ("max_connections", "12.5"), ("checkpoint_timeout", "10"), ("random_page_cost", "1s"), ("ssl", "enabled"),
    ("log_statement", "everything"),
])
def test_values_postgresql_would_refuse_are_refused(name: str, value: str) -> None:
    with pytest.raises(ValueError):
        pp.parse_value(name, value, pp.SPECS[name])


def test_the_same_values_really_are_refused_by_postgresql(stopped_cluster) -> None:  # type: ignore[no-untyped-def]
    """The refusals above are PostgreSQL's, not stricter inventions (checked with ``postgres -C``)."""
    for name, value in (("shared_buffers", "lots"), ("max_connections", "0"), ("checkpoint_timeout", "10"),
                        ("ssl", "enabled"), ("log_statement", "everything"), ("max_connections", "1000000")):
        result = _postgres_c(stopped_cluster, "shared_memory_size", {name: value})
        assert result.returncode != 0 and name in result.stderr, (name, value, result.stderr)
    assert _postgres_c(stopped_cluster, "shared_memory_size", {"shared_buffers": "256MB"}).returncode == 0


@pytest.mark.parametrize("settings", [
    {"shared_buffers": "256MB", "max_connections": "25", "max_locks_per_transaction": "128", "max_worker_processes": "20"},
    {"shared_buffers": "2GB", "max_connections": "100", "max_locks_per_transaction": "1024", "wal_buffers": "16MB"},
    {"shared_buffers": "128MB", "max_connections": "20000", "max_locks_per_transaction": "64"},
    {"shared_buffers": "512MB", "max_connections": "500", "max_prepared_transactions": "100"},
])
def test_the_shared_memory_estimate_matches_postgresql(stopped_cluster, settings: dict[str, str]) -> None:  # type: ignore[no-untyped-def]
    result = _postgres_c(stopped_cluster, "shared_memory_size", settings)
    assert result.returncode == 0, result.stderr
    actual = int(result.stdout.strip()) * pp.MB  # reported in MB
    estimate = pp.shared_memory_bytes(settings)
    assert abs(estimate - actual) <= 0.05 * actual, (estimate // pp.MB, actual // pp.MB)


def test_memory_fit_names_the_override_and_passes_tuned_values() -> None:
    tuned = {"shared_buffers": "256MB", "max_connections": "25", "max_locks_per_transaction": "128"}
    pp.check_fits_memory(tuned, memory_bytes=2**30, field_name="postgresql_parameters", overrides={})
    with pytest.raises(ValueError, match=r"postgresql_parameters 'max_connections' need about \d+MiB"):
        pp.check_fits_memory({**tuned, "max_connections": "100000"}, memory_bytes=2**30,
                             field_name="postgresql_parameters", overrides={"max_connections": "100000"})


def _postgres_c(server, name: str, settings: dict[str, str]) -> subprocess.CompletedProcess[str]:  # type: ignore[no-untyped-def]
    """``postgres -C name`` with ``settings``: computes the value without starting a second server."""
    args = [str(server.bin_dir / "postgres"), "-D", str(server.pgdata), "-C", name]
    for key, value in settings.items():
        args += ["-c", f"{key}={value}"]
    return subprocess.run(args, capture_output=True, text=True, user=server._user, cwd=server.root, timeout=60)
