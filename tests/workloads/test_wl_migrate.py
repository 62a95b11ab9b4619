"""migrate: idempotent, concurrency-safe, and the fixed column contract the dashboards rely on."""

from __future__ import annotations

import subprocess
import sys
import threading

import psycopg

from wl_support import json_lines, migrate_db, run_tsflow, scalar, tsflow_env
from tsflow import schema


def _columns(dsn: str, relation: str) -> dict[str, str]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute "
            "WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped", (relation,)).fetchall()
    return dict(rows)


def test_migrate_twice_is_idempotent(dsn: str) -> None:
    first = run_tsflow(["migrate", "--dsn", dsn])
    second = run_tsflow(["migrate", "--dsn", dsn])
    assert first.returncode == 0, first.stderr
    assert second.returncode == 0, second.stderr
    logs = json_lines(first.stdout) + json_lines(second.stdout)
    done = [line for line in logs if line["msg"] == "migrate done"]
    assert [d["applied"] for d in done] == [[1, 2, 3, 4, 5, 6], []]
    assert any("timescaledb is not available" in str(line["msg"]) for line in logs)
    assert scalar(dsn, "SELECT count(*) FROM schema_migrations") == schema.LATEST_VERSION
    assert scalar(dsn, "SELECT min(flavor) FROM schema_migrations") == "postgresql"


def test_migrate_concurrently_from_processes_and_threads(dsn: str) -> None:
    procs = [subprocess.Popen([sys.executable, "-m", "tsflow", "migrate", "--dsn", dsn],
                              env=tsflow_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(4)]
    errors: list[BaseException] = []

    def in_thread() -> None:
        try:
            migrate_db(dsn)
        except BaseException as exc:  # noqa: BLE001 - collected for the assertion
            errors.append(exc)

    threads = [threading.Thread(target=in_thread) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    results = [p.communicate(timeout=30) for p in procs]
    assert errors == []
    assert [p.returncode for p in procs] == [0, 0, 0, 0], [r[1] for r in results]
    applied = [line["applied"] for out, _ in results for line in json_lines(out) if line["msg"] == "migrate done"]
    assert sum(len(a) for a in applied) <= schema.LATEST_VERSION  # each version applied once at most
    assert scalar(dsn, "SELECT count(*) FROM schema_migrations") == schema.LATEST_VERSION


ROLLUP_COLUMNS = {
    "bucket": "timestamp with time zone", "device_id": "text", "metric": "text",
    "avg_value": "double precision", "min_value": "double precision", "max_value": "double precision",
    "samples": "bigint",
}


def test_schema_contract(migrated_dsn: str) -> None:
    for rollup in ("metrics_1m", "metrics_1h", "metrics_1d"):
        assert _columns(migrated_dsn, rollup) == ROLLUP_COLUMNS, rollup
    anomalies = _columns(migrated_dsn, "anomalies")
    for name, type_ in {"time": "timestamp with time zone", "device_id": "text", "metric": "text",
                        "value": "double precision", "zscore": "double precision",
                        "detected_at": "timestamp with time zone"}.items():
        assert anomalies[name] == type_
    ledger = _columns(migrated_dsn, "ingest_batches")
    assert {"batch_id", "row_count", "committed_at"} <= set(ledger)
    with psycopg.connect(migrated_dsn) as conn:
        uniques = conn.execute(
            "SELECT pg_get_indexdef(indexrelid) FROM pg_index "
            "WHERE indisunique AND indrelid IN ('anomalies'::regclass, 'metrics_1m'::regclass)").fetchall()
    defs = " ".join(r[0] for r in uniques)
    assert "anomalies USING btree (\"time\", device_id, metric)" in defs
    assert "metrics_1m_pkey ON public.metrics_1m USING btree (bucket, device_id, metric)" in defs


def test_plain_rollups_refresh(migrated_dsn: str) -> None:
    with psycopg.connect(migrated_dsn, autocommit=True) as conn:
        conn.execute("INSERT INTO metrics VALUES (now() - interval '30 seconds', 'd1', 'm', 1), "
                     "(now() - interval '30 seconds', 'd1', 'm', 3)")
        assert conn.execute("SELECT tsflow_refresh_rollups()").fetchone() == (1,)
        assert conn.execute("SELECT tsflow_refresh_rollups()").fetchone() == (0,)  # nothing new
        rows = [conn.execute(f"SELECT avg_value, min_value, max_value, samples FROM {rollup}").fetchall()
                for rollup in ("metrics_1m", "metrics_1h", "metrics_1d")]
    assert rows == [[(2.0, 1.0, 3.0, 2)]] * 3


def test_a_migration_the_server_cuts_off_reports_the_servers_own_message(dsn: str) -> None:
    """The server ends `tsflow migrate`'s session inside its locked section (as a FATAL at CREATE EXTENSION of a
    TimescaleDB that is not preloaded does): the one-line error is the server's, not "the connection is closed"."""
    from concurrent.futures import ThreadPoolExecutor

    from tests.waits import poll

    migrate_db(dsn)
    # The watcher is a second session: inside the blocker's transaction pg_stat_activity is one frozen snapshot.
    with psycopg.connect(dsn, autocommit=True) as blocker, psycopg.connect(dsn, autocommit=True) as watcher, \
            ThreadPoolExecutor(1) as pool:
        blocker.execute("BEGIN")
        blocker.execute("LOCK TABLE schema_migrations IN ACCESS EXCLUSIVE MODE")  # migrate reads it under its lock
        running = pool.submit(run_tsflow, ["migrate", "--dsn", dsn, "--startup-timeout", "5"], 60)

        def waiting_migrate() -> int | None:
            row = watcher.execute("SELECT pid FROM pg_stat_activity WHERE application_name = 'tsflow-migrate'"
                                  " AND wait_event_type = 'Lock'").fetchone()
            return row[0] if row else None

        def activity() -> str:
            rows = watcher.execute("SELECT pid, application_name, state, wait_event_type, left(query, 60)"
                                   " FROM pg_stat_activity WHERE datname = current_database()").fetchall()
            finished = running.result() if running.done() else None
            return f"sessions: {rows}; tsflow: {finished.stderr if finished else 'still running'}"

        pid = poll(waiting_migrate, deadline=30, what="tsflow migrate to wait for the schema_migrations lock",
                   state=activity, interval=0.05)
        watcher.execute("SELECT pg_terminate_backend(%s)", (pid,))
        blocker.execute("ROLLBACK")
        result = running.result(timeout=60)
    assert result.returncode == 1
    error = result.stderr.strip().splitlines()
    assert error == ["tsflow: error: AdminShutdown: FATAL 57P01: terminating connection due to administrator command"], result.stderr
