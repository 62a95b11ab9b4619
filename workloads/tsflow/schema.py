"""Versioned, idempotent schema setup for TimescaleDB or, failing that, plain PostgreSQL.

Every migration runs in its own transaction while holding a session advisory lock, so several
pods may run `tsflow migrate` at once: one applies, the others wait and then find nothing to do.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable

import psycopg
from psycopg import sql

from . import identity, rollups
from . import timescale_sql as ts
from .config import MigrateConfig

log = logging.getLogger("tsflow.schema")

ADVISORY_LOCK_KEY = 0x7473_666C_6F77  # "tsflow"
TIMESCALE = "timescaledb"
PLAIN = "postgresql"

# Schema version 2 kept the plain 1-minute view to this recent window; version 3 replaces it (rollups.py).
PLAIN_VIEW_WINDOW = "2 days"

_BASE_TABLES = (
    """
    CREATE TABLE IF NOT EXISTS metrics (
        time      timestamptz      NOT NULL,
        device_id text             NOT NULL,
        metric    text             NOT NULL,
        value     double precision NOT NULL
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS ingest_batches (
        batch_id     text        PRIMARY KEY,
        generator_id text        NOT NULL,
        seq          bigint      NOT NULL,
        row_count    integer     NOT NULL,
        committed_at timestamptz NOT NULL DEFAULT now()
    )
    """,
    "CREATE INDEX IF NOT EXISTS ingest_batches_generator_seq_idx ON ingest_batches (generator_id, seq DESC)",
    """
    CREATE TABLE IF NOT EXISTS anomalies (
        time        timestamptz      NOT NULL,
        device_id   text             NOT NULL,
        metric      text             NOT NULL,
        value       double precision NOT NULL,
        zscore      double precision NOT NULL,
        baseline_mean   double precision,
        baseline_stddev double precision,
        detected_at timestamptz      NOT NULL DEFAULT now(),
        PRIMARY KEY (time, device_id, metric)
    )
    """,
    "CREATE INDEX IF NOT EXISTS anomalies_detected_at_idx ON anomalies (detected_at DESC)",
)

_PLAIN_VIEW = f"""
CREATE MATERIALIZED VIEW IF NOT EXISTS metrics_1m AS
SELECT date_bin(INTERVAL '1 minute', time, TIMESTAMPTZ '2000-01-01 00:00:00+00') AS bucket,
       device_id,
       metric,
       avg(value) AS avg_value,
       min(value) AS min_value,
       max(value) AS max_value,
       count(*) AS samples
FROM metrics
WHERE time >= now() - INTERVAL '{PLAIN_VIEW_WINDOW}'
GROUP BY 1, device_id, metric
WITH DATA
"""


@dataclass(frozen=True)
class Migration:
    """One schema step; `apply` runs inside a transaction."""

    version: int
    name: str
    apply: Callable[[psycopg.Connection, str, MigrateConfig], None]


def _m1_tables(conn: psycopg.Connection, flavor: str, cfg: MigrateConfig) -> None:
    for stmt in _BASE_TABLES:
        conn.execute(stmt)
    if flavor == TIMESCALE:
        conn.execute(ts.hypertable(cfg.chunk_interval))
        conn.execute("CREATE INDEX IF NOT EXISTS metrics_device_time_idx ON metrics (device_id, time DESC)")
        conn.execute(ts.COMPRESSION)  # its policy, like every policy, comes with version 3
    else:
        conn.execute("CREATE INDEX IF NOT EXISTS metrics_time_idx ON metrics (time DESC)")
        conn.execute("CREATE INDEX IF NOT EXISTS metrics_device_time_idx ON metrics (device_id, time DESC)")


def _m2_rollup(conn: psycopg.Connection, flavor: str, cfg: MigrateConfig) -> None:
    if flavor == TIMESCALE:
        conn.execute(ts.continuous_aggregate(rollups.LEVELS[0]))  # policies: version 3
    else:
        conn.execute(_PLAIN_VIEW)
        # The unique index is what REFRESH MATERIALIZED VIEW CONCURRENTLY requires.
        conn.execute("CREATE UNIQUE INDEX IF NOT EXISTS metrics_1m_key ON metrics_1m (bucket, device_id, metric)")


def _m3_rollup_hierarchy(conn: psycopg.Connection, flavor: str, cfg: MigrateConfig) -> None:
    # Dashboards filter anomalies by series over a time range.
    conn.execute("CREATE INDEX IF NOT EXISTS anomalies_series_time_idx ON anomalies (device_id, metric, time)")
    if flavor == TIMESCALE:
        for stmt in ts.rollup_hierarchy(cfg.retention, cfg.compress_after):
            conn.execute(stmt)
        return
    # The 2-day materialized view becomes three tables kept by tsflow_refresh_rollups(), rebuilt from all data.
    kind = conn.execute("SELECT relkind FROM pg_class WHERE oid = to_regclass('metrics_1m')").fetchone()
    if kind is not None and kind[0] == "m":
        conn.execute("DROP MATERIALIZED VIEW metrics_1m")
    for stmt in rollups.plain_statements():
        conn.execute(stmt)
    conn.execute(rollups.INVALIDATE_ALL_SQL)
    conn.execute(rollups.REFRESH_SQL)


def _m5_late_data_window(conn: psycopg.Connection, flavor: str, cfg: MigrateConfig) -> None:
    """``tsflow_late_data_window()``: how old a row may be when written and still reach every rollup (NULL: any
    age). Plain PostgreSQL keeps every raw row and logs every write's range, so any age reaches every rollup."""
    window = (sql.SQL("make_interval(secs => {})").format(sql.Literal(rollups.late_data_window_s(cfg.retention)))
              if flavor == TIMESCALE else sql.SQL("NULL::interval"))
    conn.execute(sql.SQL("CREATE OR REPLACE FUNCTION tsflow_late_data_window() RETURNS interval LANGUAGE sql "
                         "IMMUTABLE AS $$ SELECT {} $$").format(window))
    conn.execute("COMMENT ON FUNCTION tsflow_late_data_window() IS 'Rows older than this when written are refused "
                 "by tsflow generate: raw retention would drop them before every rollup took them (NULL: no limit)'")


def _m6_ordered_refresh(conn: psycopg.Connection, flavor: str, cfg: MigrateConfig) -> None:
    """TimescaleDB: one job refreshes the rollups finest first (plain PostgreSQL's refresh always was ordered).
    Both: a covering index per series on every rollup, for the dashboards."""
    if flavor == TIMESCALE:
        for stmt in ts.ordered_refresh(cfg.retention):
            conn.execute(stmt)
    for level in rollups.LEVELS:
        conn.execute(rollups.series_index(level))
    _m5_late_data_window(conn, flavor, cfg)  # the window follows the job's schedule


def late_data_window(conn: psycopg.Connection) -> float | None:
    """Seconds of ``tsflow_late_data_window()``, None when rows of any age reach every rollup."""
    row = conn.execute("SELECT extract(epoch FROM tsflow_late_data_window())::float8").fetchone()
    return None if row is None or row[0] is None else float(row[0])


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "metrics, ingest ledger, anomalies", _m1_tables),
    Migration(2, "metrics_1m rollup", _m2_rollup),
    Migration(3, "rollup hierarchy 1m/1h/1d, late data, policy schedules", _m3_rollup_hierarchy),
    Migration(4, "generator identity leases", lambda conn, _flavor, _cfg: conn.execute(identity.SCHEMA) and None),
    Migration(5, "late-data window", _m5_late_data_window),
    Migration(6, "ordered rollup refresh in one job, per-series rollup indexes", _m6_ordered_refresh),
)
LATEST_VERSION = MIGRATIONS[-1].version


def detect_flavor(conn: psycopg.Connection) -> str:
    """`timescaledb` if the server can load the extension, else `postgresql`."""
    row = conn.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'").fetchone()
    return TIMESCALE if row else PLAIN


def installed_flavor(conn: psycopg.Connection) -> str:
    """The flavor the schema was built with (extension present in this database or not)."""
    row = conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'").fetchone()
    return TIMESCALE if row else PLAIN


def current_version(conn: psycopg.Connection) -> int:
    """Highest applied migration, 0 when none (or no version table yet)."""
    exists = conn.execute("SELECT to_regclass('schema_migrations') IS NOT NULL").fetchone()
    if not exists or not exists[0]:
        return 0
    row = conn.execute("SELECT coalesce(max(version), 0) FROM schema_migrations").fetchone()
    return int(row[0]) if row else 0


def schema_ready(conn: psycopg.Connection) -> bool:
    """True when every known migration is applied."""
    return current_version(conn) >= LATEST_VERSION


def migrate(conn: psycopg.Connection, cfg: MigrateConfig) -> list[int]:
    """Apply pending migrations on an autocommit connection; return the versions applied."""
    if not conn.autocommit:
        raise ValueError("migrate() needs an autocommit connection (it manages its own transactions)")
    flavor = detect_flavor(conn)
    if flavor == PLAIN:
        log.warning("timescaledb is not available on this server; building the plain PostgreSQL "
                    "equivalent (ordinary table, rollup tables metrics_1m/1h/1d refreshed by the consumer)")
    conn.execute("SELECT pg_advisory_lock(%s)", (ADVISORY_LOCK_KEY,))
    try:
        if flavor == TIMESCALE:
            conn.execute(ts.EXTENSION)
        conn.execute(
            """
            CREATE TABLE IF NOT EXISTS schema_migrations (
                version    integer     PRIMARY KEY,
                name       text        NOT NULL,
                flavor     text        NOT NULL,
                applied_at timestamptz NOT NULL DEFAULT now()
            )
            """
        )
        done = {int(r[0]) for r in conn.execute("SELECT version FROM schema_migrations").fetchall()}
        applied: list[int] = []
        for migration in MIGRATIONS:
            if migration.version in done:
                continue
            with conn.transaction():
                migration.apply(conn, flavor, cfg)
                conn.execute(
                    "INSERT INTO schema_migrations (version, name, flavor) VALUES (%s, %s, %s)",
                    (migration.version, migration.name, flavor),
                )
            log.info("migration applied", extra={"version": migration.version, "migration": migration.name,
                                                 "flavor": flavor})
            applied.append(migration.version)
        if not applied:
            log.info("schema is up to date", extra={"version": max(done, default=0), "flavor": flavor})
        return applied
    finally:
        # A session the server closed (a FATAL error, a terminated backend) released its lock with it; unlocking
        # on it would raise "the connection is closed" and hide the server's own message.
        if not conn.closed:
            conn.execute("SELECT pg_advisory_unlock(%s)", (ADVISORY_LOCK_KEY,))
