"""Helpers shared by the tsflow tests (kept out of conftest.py: pytest runs with --import-mode=importlib)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Callable

import psycopg

ROOT = Path(__file__).resolve().parents[2]
WORKLOADS = ROOT / "workloads"
for _p in (WORKLOADS, ROOT / "bench"):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

from tsflow import schema  # noqa: E402
from prometheus_client import CollectorRegistry  # noqa: E402
from tsflow.config import DbConfig, GeneratorConfig, MigrateConfig  # noqa: E402


def migrate_db(dsn: str) -> None:
    """Apply the tsflow schema to `dsn`."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        schema.migrate(conn, MigrateConfig(db=DbConfig(dsn=dsn)))


def scalar(dsn: str, query: str, params: tuple[object, ...] = ()) -> object:
    """First column of the first row of `query`."""
    with psycopg.connect(dsn) as conn:
        row = conn.execute(query, params).fetchone()
        assert row is not None
        return row[0]


def tsflow_env(**extra: str) -> dict[str, str]:
    """Environment for a `python -m tsflow` subprocess (no stray TSFLOW_/PG* settings)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TSFLOW_", "PG"))}
    env["PYTHONPATH"] = str(WORKLOADS)
    env.update(extra)
    return env


def run_tsflow(args: list[str], timeout: float = 30, **env: str) -> subprocess.CompletedProcess[str]:
    """Run `python -m tsflow ARGS` to completion."""
    return subprocess.run([sys.executable, "-m", "tsflow", *args], env=tsflow_env(**env),
                          capture_output=True, text=True, timeout=timeout)


def json_lines(text: str) -> list[dict[str, object]]:
    """Parse stdout of a tsflow process: every line must be one JSON object."""
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def generator_config(dsn: str, rows: int, **overrides: object) -> GeneratorConfig:
    """A fast, unpaced generator config writing exactly `rows` rows."""
    from tsflow.config import HttpConfig, SimulationConfig

    fields: dict[str, object] = dict(
        db=DbConfig(dsn=dsn, connect_timeout=2, startup_timeout=10, max_backoff=0.5),
        http=HttpConfig("127.0.0.1", 0),
        sim=SimulationConfig(devices=20, metrics_per_device=3, interval=1.0, seed=7),
        generator_id="gen-a", batch_rows=1000, batch_age=0.5, buffer_batches=10,
        max_rows=rows, pace=False, backfill=3600.0, shutdown_timeout=10.0,
    )
    fields.update(overrides)
    return GeneratorConfig(**fields)  # type: ignore[arg-type]


def table_counts(dsn: str) -> dict[str, int]:
    """Rows, distinct samples, ledger batches and ledger row total."""
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT (SELECT count(*) FROM metrics),"
            " (SELECT count(*) FROM (SELECT DISTINCT time, device_id, metric FROM metrics) d),"
            " (SELECT count(*) FROM ingest_batches),"
            " (SELECT coalesce(sum(row_count), 0) FROM ingest_batches)").fetchone()
    assert row is not None
    return {"rows": int(row[0]), "distinct": int(row[1]), "batches": int(row[2]), "ledger_rows": int(row[3])}


def metric_value(registry: CollectorRegistry, name: str) -> float:
    """Current value of an unlabelled sample in `registry`."""
    value = registry.get_sample_value(name)
    assert value is not None, name
    return value


ROLLUPS = ("metrics_1m", "metrics_1h", "metrics_1d")
LATE_AGES = (timedelta(hours=5), timedelta(hours=30), timedelta(days=3))
"""Ages of the late samples: hours (beyond the old 3 h refresh window) and days (beyond the old 2-day view)."""


def rollup_samples(dsn: str) -> dict[str, int]:
    """Total samples each rollup accounts for."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        return {r: int(conn.execute(f"SELECT coalesce(sum(samples), 0) FROM {r}").fetchone()[0])  # type: ignore[index]
                for r in ROLLUPS}


def check_late_data_reaches_every_rollup(dsn: str, refresh: Callable[[], None]) -> None:
    """Current data is rolled up and materialized; then samples hours and days old arrive: every rollup must
    count them after the next refresh, and each late bucket must have the right mean in every rollup."""
    before = rollup_samples(dsn)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("INSERT INTO metrics SELECT now() - make_interval(secs => s), 'dev-now', 'm', s "
                     "FROM generate_series(0, 299) s")
    refresh()
    assert rollup_samples(dsn) == {r: before[r] + 300 for r in ROLLUPS}
    with psycopg.connect(dsn, autocommit=True) as conn:
        for age in LATE_AGES:
            conn.execute("INSERT INTO metrics VALUES (now() - %s, 'dev-late', 'm', 1.0), "
                         "(now() - %s, 'dev-late', 'm', 3.0)", (age, age))
    refresh()
    assert rollup_samples(dsn) == {r: before[r] + 300 + 2 * len(LATE_AGES) for r in ROLLUPS}
    with psycopg.connect(dsn, autocommit=True) as conn:
        for rollup in ROLLUPS:
            late = conn.execute(f"SELECT avg_value, min_value, max_value, samples FROM {rollup} "
                                "WHERE device_id = 'dev-late' ORDER BY bucket").fetchall()
            assert [(a, lo, hi, int(n)) for a, lo, hi, n in late] == [(2.0, 1.0, 3.0, 2)] * len(LATE_AGES), rollup
