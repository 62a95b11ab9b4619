"""pgtune: timescaledb-tune's formulas, recomputed here from its Go source rather than copied outputs."""

from __future__ import annotations

import math
import re
from decimal import Decimal

import pytest

from components.timescaledb.tuning import TuneInput, bytes_to_pg_format, default_max_connections, go_round, tune, whole_cpus

KIB, MIB, GIB = 1 << 10, 1 << 20, 1 << 30
_UNITS = {"kB": KIB, "MB": MIB, "GB": GIB, "TB": 1 << 40}


def pg_bytes(text: str) -> int:
    """Parse a PostgreSQL size ('512MB', '2621kB') back to bytes."""
    match = re.fullmatch(r"(\d+)(kB|MB|GB|TB)", text)
    assert match, f"{text!r} is not a PostgreSQL size"
    return int(match.group(1)) * _UNITS[match.group(2)]


def cores(cpu: str) -> Decimal:
    """A Kubernetes CPU quantity ('500m', '2') in cores."""
    return Decimal(cpu[:-1]) / 1000 if cpu.endswith("m") else Decimal(cpu)


def close(actual: str, expected_bytes: float) -> bool:
    """BytesToPGFormat truncates to whole units of the chosen size: allow 1kB or 0.1%."""
    return abs(pg_bytes(actual) - expected_bytes) <= max(KIB, expected_bytes * 0.001)


# (memory, cpu quantity as a Kubernetes pod would state it, WAL disk bytes)
SIZES = [
    pytest.param(512 * MIB, "500m", 10 * GIB // 4, id="tiny-512Mi-0.5cpu"),
    pytest.param(2 * GIB, "2", 20 * GIB, id="small-2Gi-2cpu-wal20Gi"),
    pytest.param(3 * GIB, "1500m", 50 * GIB // 4, id="odd-3Gi-1.5cpu"),
    pytest.param(8 * GIB, "4", 100 * GIB, id="medium-8Gi-4cpu"),
    pytest.param(64 * GIB, "16", 500 * GIB, id="large-64Gi-16cpu"),
]


@pytest.mark.parametrize(("memory", "cpu", "wal_disk"), SIZES)
def test_memory_settings_follow_timescaledb_tune(memory: int, cpu: str, wal_disk: int) -> None:
    cpus = math.ceil(cores(cpu))
    params = tune(TuneInput(memory_bytes=memory, cpus=cores(cpu), wal_disk_bytes=wal_disk))
    gib = memory / GIB
    assert close(params["shared_buffers"], memory / 4)
    assert close(params["effective_cache_size"], memory * 3 / 4)
    assert close(params["maintenance_work_mem"], min(gib * 128 * MIB, 2047 * MIB))
    # work_mem = GiB * (6.4 * 20 MiB / 100 conns) / round-half-up(cpus / 2)
    assert close(params["work_mem"], gib * (128 * MIB / 100) / math.floor(cpus / 2 + 0.5))


@pytest.mark.parametrize(("memory", "cpu", "wal_disk"), SIZES)
def test_parallel_settings_follow_timescaledb_tune(memory: int, cpu: str, wal_disk: int) -> None:
    cpus = math.ceil(cores(cpu))
    params = tune(TuneInput(memory_bytes=memory, cpus=cores(cpu), wal_disk_bytes=wal_disk))
    assert params["timescaledb.max_background_workers"] == "16"
    assert int(params["max_worker_processes"]) == 3 + 16 + cpus
    assert int(params["max_parallel_workers"]) == cpus
    assert int(params["max_parallel_workers_per_gather"]) == math.floor(cpus / 2 + 0.5)


@pytest.mark.parametrize(("memory", "cpu", "wal_disk"), SIZES)
def test_wal_settings_are_sized_from_the_wal_disk(memory: int, cpu: str, wal_disk: int) -> None:
    params = tune(TuneInput(memory_bytes=memory, cpus=2, wal_disk_bytes=wal_disk))
    segment = 16 * MIB
    max_wal = math.ceil(wal_disk * 60 / 100 / segment) * segment
    assert pg_bytes(params["max_wal_size"]) == max_wal
    assert pg_bytes(params["min_wal_size"]) == max_wal // 2
    assert pg_bytes(params["max_wal_size"]) <= wal_disk * 0.6 + segment
    slot_keep = math.ceil(wal_disk * 25 / 100 / segment) * segment
    assert pg_bytes(params["max_slot_wal_keep_size"]) == slot_keep
    # WAL the server may hold stays inside the disk, with headroom.
    assert pg_bytes(params["max_wal_size"]) + pg_bytes(params["max_slot_wal_keep_size"]) < wal_disk
    expected_buffers = memory / GIB * 7864 * KIB if memory < 2 * GIB else 16 * MIB
    assert close(params["wal_buffers"], expected_buffers)


@pytest.mark.parametrize(("memory", "cpu", "wal_disk"), SIZES)
def test_misc_settings_follow_timescaledb_tune(memory: int, cpu: str, wal_disk: int) -> None:
    params = tune(TuneInput(memory_bytes=memory, cpus=4, wal_disk_bytes=wal_disk))
    gib = memory / GIB
    conns = 25 if gib <= 2 else 50 if gib <= 4 else 75 if gib <= 6 else 100
    locks = 1024 if gib >= 32 else 512 if gib >= 16 else 256 if gib >= 8 else 128
    assert params["max_connections"] == str(conns)
    assert params["max_locks_per_transaction"] == str(locks)
    assert params["random_page_cost"] == "1.1"
    assert params["effective_io_concurrency"] == "256"
    assert params["checkpoint_completion_target"] == "0.9"
    assert params["default_statistics_target"] == "100"
    assert params["autovacuum_max_workers"] == "10"


def test_explicit_max_connections_drives_work_mem_and_max_connections() -> None:
    params = tune(TuneInput(memory_bytes=4 * GIB, cpus=2, wal_disk_bytes=10 * GIB, max_connections=200))
    assert params["max_connections"] == "200"
    assert close(params["work_mem"], 4 * (128 * MIB / 200) / 1)


@pytest.mark.parametrize(
    ("size", "text"),
    [(1, "1kB"), (KIB, "1kB"), (1536, "2kB"), (MIB, "1MB"), (GIB + GIB // 2, "1536MB"), (2 * GIB, "2GB"),
     (3 * (1 << 40), "3TB"), (671088, "655kB")],
)
def test_bytes_to_pg_format_matches_timescaledb_tune(size: int, text: str) -> None:
    assert bytes_to_pg_format(size) == text


def test_go_rounding_rounds_halves_up_unlike_python() -> None:
    assert [go_round(x) for x in (0.5, 1.5, 2.5, 0.49)] == [1, 2, 3, 0]
    assert round(0.5) == 0  # the trap the module avoids


def test_fractional_cpus_round_up_and_never_reach_zero() -> None:
    assert [whole_cpus(Decimal(v)) for v in ("0.1", "1", "1.5", "4")] == [1, 1, 2, 4]


def test_memory_step_for_connections() -> None:
    assert [default_max_connections(g * GIB) for g in (1, 2, 3, 4, 5, 6, 7)] == [25, 25, 50, 50, 75, 75, 100]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (TuneInput(memory_bytes=32 * MIB, cpus=1, wal_disk_bytes=GIB), r"memory_bytes \(33554432\)"),
        (TuneInput(memory_bytes=GIB, cpus=1, wal_disk_bytes=MIB), r"wal_disk_bytes \(1048576\)"),
        (TuneInput(memory_bytes=GIB, cpus=1, wal_disk_bytes=GIB, max_connections=10), r"max_connections \(10\) must be >= 25"),
        (TuneInput(memory_bytes=GIB, cpus=1, wal_disk_bytes=GIB, max_background_workers=8), r"max_background_workers \(8\)"),
    ],
)
def test_bad_inputs_are_rejected_with_the_value(spec: TuneInput, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        tune(spec)
