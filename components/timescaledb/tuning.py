"""PostgreSQL tuning from a pod's CPU, memory and WAL disk, following timescaledb-tune's rules.

A pure function (no I/O) so every number is unit-tested. Formulas are those of timescaledb-tune
(github.com/timescale/timescaledb-tune, ``pkg/pgtune``), read from its Go source:

``memory.go``
    shared_buffers = mem / 4; effective_cache_size = mem * 3 / 4;
    maintenance_work_mem = mem_GiB * 128MiB, capped at 2047MiB;
    work_mem = mem_GiB * (6.4 * 20 MiB / conns) / round(cpus / 2), ``conns`` = the max-conns flag or 100.
``parallel.go``
    max_worker_processes = 3 + max_background_workers + cpus; max_parallel_workers = cpus;
    max_parallel_workers_per_gather = round(cpus / 2); timescaledb.max_background_workers = 16 (minimum).
``wal.go``
    wal_buffers = mem_GiB * 7864kB below 2GiB of memory, else 16MiB;
    max_wal_size = 60% of the WAL disk rounded up to a 16MiB segment; min_wal_size = max_wal_size / 2.
``misc.go``
    max_connections = 25 / 50 / 75 / 100 for memory <= 2 / 4 / 6 / more GiB (or the max-conns flag);
    max_locks_per_transaction = 128 / 256 / 512 / 1024 below 8 / 16 / 32 / from 32 GiB;
    checkpoint_completion_target 0.9, default_statistics_target 100, random_page_cost 1.1 (SSD),
    autovacuum_max_workers 10, autovacuum_naptime 10, effective_io_concurrency 256 (PostgreSQL 13+).
``internal/parse/parse.go``
    values are rendered by ``BytesToPGFormat``: the largest unit (kB/MB/GB/TB, 1024-based) that keeps an
    integer, dropping one unit when the fraction exceeds 0.001.

Go's ``math.Round`` rounds halves away from zero (``round(0.5) == 1``), unlike Python's ``round``; this
module reproduces Go. Deviations, each deliberate:

* timescaledb-tune skips the parallel group on one CPU; here the same formulas still apply, because
  TimescaleDB's 16 background workers need ``max_worker_processes`` well above PostgreSQL's default 8.
* A Kubernetes CPU quantity may be fractional; ``cpus`` is rounded up to whole cores (``1500m`` -> 2).
* ``max_slot_wal_keep_size`` (not in timescaledb-tune) caps WAL kept for a lagging or dead replica's
  replication slot at 25% of the WAL disk, so a lost replica cannot fill the disk and stop the primary.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal

KIB = 1 << 10
MIB = 1 << 20
GIB = 1 << 30
TIB = 1 << 40

MAX_BACKGROUND_WORKERS = 16
"""timescaledb-tune's MaxBackgroundWorkersDefault (also its minimum)."""
MIN_MAX_CONNECTIONS = 25
"""Patroni replaces a max_connections below 25 with 100; timescaledb-tune refuses lower values too."""
WAL_DISK_PERCENT = 60
"""Share of the WAL disk that max_wal_size may take (timescaledb-tune walMaxDiskPct)."""
SLOT_WAL_KEEP_PERCENT = 25
"""Share of the WAL disk that replication slots may retain (not in timescaledb-tune; see docstring)."""
WAL_SEGMENT = 16 * MIB

_MIN_BUILTIN_PROCESSES = 3
_BASE_CONNS = 20
_WORK_MEM_PER_GIB_PER_CONN = 6.4 * _BASE_CONNS
_DEFAULT_WORK_MEM_CONNS = 100
_MAINTENANCE_WORK_MEM_LIMIT = 2047 * MIB
_WAL_BUFFERS_THRESHOLD = 2 * GIB
_WAL_BUFFERS_DEFAULT = 16 * MIB
_MAX_LOCKS = ("128", "256", "512", "1024")


@dataclass(frozen=True, kw_only=True)
class TuneInput:
    """What the tuning depends on: the PostgreSQL container's resources and its WAL disk."""

    memory_bytes: int
    """Memory available to PostgreSQL (the container's memory limit)."""
    cpus: Decimal | int | float
    """CPU cores available (limit, else request); fractional values round up."""
    wal_disk_bytes: int
    """Size of the disk holding pg_wal (the WAL volume, or the share of the data volume set aside for WAL)."""
    max_connections: int | None = None
    """timescaledb-tune's ``--max-conns``; None uses its memory step function."""
    max_background_workers: int = MAX_BACKGROUND_WORKERS
    """timescaledb.max_background_workers (at least 16)."""


def go_round(value: float) -> int:
    """Go's ``math.Round`` for non-negative values: halves round away from zero."""
    return int(math.floor(value + 0.5))


def bytes_to_pg_format(size: int) -> str:
    """timescaledb-tune's ``BytesToPGFormat``: 1024 -> ``1kB``, 1.5GiB -> ``1536MB``."""
    if size <= 0:
        raise ValueError(f"size ({size}) must be at least 1 byte")
    units = ((TIB, "TB"), (GIB, "GB"), (MIB, "MB"), (KIB, "kB"))
    divisor, unit = next(((d, u) for d, u in units if size >= d), (1, ""))
    value = size / divisor
    if unit == "":
        return "1kB"
    if unit == "kB":
        return f"{int(go_round(value))}kB"
    if value - int(value) > 0.001:
        smaller = {"TB": "GB", "GB": "MB", "MB": "kB"}
        value, unit = value * 1024, smaller[unit]
    return f"{int(value)}{unit}"


def whole_cpus(cpus: Decimal | int | float) -> int:
    """Whole cores for tuning: fractional Kubernetes CPU quantities round up, never below 1."""
    return max(1, math.ceil(Decimal(str(cpus))))


def default_max_connections(memory_bytes: int) -> int:
    """timescaledb-tune's ``getMaxConns`` memory step function."""
    for limit, conns in ((2 * GIB, 25), (4 * GIB, 50), (6 * GIB, 75)):
        if memory_bytes <= limit:
            return conns
    return 100


def max_wal_bytes(wal_disk_bytes: int, percent: int = WAL_DISK_PERCENT) -> int:
    """``percent`` of the WAL disk, rounded up to a whole 16MiB WAL segment (timescaledb-tune calcMaxWALBytes)."""
    limit = wal_disk_bytes * percent // 100
    if limit % WAL_SEGMENT:
        limit = (limit // WAL_SEGMENT + 1) * WAL_SEGMENT
    return limit


def _memory(memory: int, cpus: int, conns: int) -> dict[str, str]:
    gibs = memory / GIB
    maintenance = min(gibs * 128 * MIB, _MAINTENANCE_WORK_MEM_LIMIT)
    work_mem = gibs * (_WORK_MEM_PER_GIB_PER_CONN * MIB / conns) / go_round(cpus / 2)
    return {
        "shared_buffers": bytes_to_pg_format(memory // 4),
        "effective_cache_size": bytes_to_pg_format(memory * 3 // 4),
        "maintenance_work_mem": bytes_to_pg_format(int(maintenance)),
        "work_mem": bytes_to_pg_format(int(work_mem)),
    }


def _parallel(cpus: int, background_workers: int) -> dict[str, str]:
    return {
        "timescaledb.max_background_workers": str(background_workers),
        "max_worker_processes": str(_MIN_BUILTIN_PROCESSES + background_workers + cpus),
        "max_parallel_workers": str(cpus),
        "max_parallel_workers_per_gather": str(go_round(cpus / 2)),
    }


def _wal(memory: int, wal_disk: int) -> dict[str, str]:
    if memory < _WAL_BUFFERS_THRESHOLD:
        wal_buffers = int(memory / GIB * 7864 * KIB)
    else:
        wal_buffers = _WAL_BUFFERS_DEFAULT
    max_wal = max_wal_bytes(wal_disk)
    return {
        "wal_buffers": bytes_to_pg_format(wal_buffers),
        "min_wal_size": bytes_to_pg_format(max_wal // 2),
        "max_wal_size": bytes_to_pg_format(max_wal),
        "max_slot_wal_keep_size": bytes_to_pg_format(max_wal_bytes(wal_disk, SLOT_WAL_KEEP_PERCENT)),
    }


def _misc(memory: int, max_connections: int) -> dict[str, str]:
    locks = _MAX_LOCKS[0]
    for index in range(len(_MAX_LOCKS) - 1, 0, -1):
        if memory >= 2 ** (2 + index) * GIB:
            locks = _MAX_LOCKS[index]
            break
    return {
        "max_connections": str(max_connections),
        "max_locks_per_transaction": locks,
        "checkpoint_completion_target": "0.9",
        "default_statistics_target": "100",
        "random_page_cost": "1.1",
        "autovacuum_max_workers": "10",
        "autovacuum_naptime": "10",
        "effective_io_concurrency": "256",
    }


def tune(spec: TuneInput) -> dict[str, str]:
    """PostgreSQL parameters (name -> value as postgresql.conf text) for ``spec``."""
    if spec.memory_bytes < 64 * MIB:
        raise ValueError(f"memory_bytes ({spec.memory_bytes}) must be at least 64Mi to run PostgreSQL")
    if spec.wal_disk_bytes < 4 * WAL_SEGMENT:
        raise ValueError(f"wal_disk_bytes ({spec.wal_disk_bytes}) must hold at least four 16Mi WAL segments")
    if spec.max_connections is not None and spec.max_connections < MIN_MAX_CONNECTIONS:
        raise ValueError(f"max_connections ({spec.max_connections}) must be >= {MIN_MAX_CONNECTIONS}")
    if spec.max_background_workers < MAX_BACKGROUND_WORKERS:
        raise ValueError(
            f"max_background_workers ({spec.max_background_workers}) must be >= {MAX_BACKGROUND_WORKERS}"
        )
    cpus = whole_cpus(spec.cpus)
    connections = spec.max_connections or default_max_connections(spec.memory_bytes)
    return {
        **_memory(spec.memory_bytes, cpus, spec.max_connections or _DEFAULT_WORK_MEM_CONNS),
        **_parallel(cpus, spec.max_background_workers),
        **_wal(spec.memory_bytes, spec.wal_disk_bytes),
        **_misc(spec.memory_bytes, connections),
    }
