"""All TimescaleDB-specific SQL lives here; schema.py picks it when the extension is available.

Facts relied on (TimescaleDB >= 2.13):
- `create_hypertable(..., by_range('time', <interval>), if_not_exists => TRUE)` is the current API.
- A continuous aggregate must be created `WITH NO DATA` inside a transaction block
  (`WITH DATA` refuses to run in one); the refresh policy fills it.
- Real-time aggregation is off by default since 2.13, so `materialized_only = false` is set to let
  the consumer see the current minute before the policy materialises it.
"""

from __future__ import annotations

from psycopg import sql

EXTENSION = "CREATE EXTENSION IF NOT EXISTS timescaledb"


def hypertable(chunk_interval_s: float) -> sql.Composed:
    """Turn `metrics` into a hypertable partitioned by time."""
    return sql.SQL(
        "SELECT create_hypertable('metrics', by_range('time', make_interval(secs => {})), "
        "if_not_exists => TRUE)"
    ).format(sql.Literal(chunk_interval_s))


COMPRESSION = (
    "ALTER TABLE metrics SET (timescaledb.compress, "
    "timescaledb.compress_segmentby = 'device_id', "
    "timescaledb.compress_orderby = 'metric, time DESC')"
)


def compression_policy(after_s: float) -> sql.Composed:
    """Compress chunks older than `after_s` seconds."""
    return sql.SQL(
        "SELECT add_compression_policy('metrics', make_interval(secs => {}), if_not_exists => TRUE)"
    ).format(sql.Literal(after_s))


def retention_policy(after_s: float) -> sql.Composed:
    """Drop chunks older than `after_s` seconds."""
    return sql.SQL(
        "SELECT add_retention_policy('metrics', make_interval(secs => {}), if_not_exists => TRUE)"
    ).format(sql.Literal(after_s))


CONTINUOUS_AGGREGATE = """
CREATE MATERIALIZED VIEW IF NOT EXISTS metrics_1m
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT time_bucket(INTERVAL '1 minute', time) AS bucket,
       device_id,
       metric,
       avg(value) AS avg_value,
       min(value) AS min_value,
       max(value) AS max_value,
       count(*) AS samples
FROM metrics
GROUP BY bucket, device_id, metric
WITH NO DATA
"""

REFRESH_WINDOW_SECONDS = 3 * 3600
"""How far back the continuous aggregate's refresh policy looks. Raw retention must be longer: a refresh
over chunks retention already dropped would delete their rollup buckets."""

CONTINUOUS_AGGREGATE_POLICY = (
    "SELECT add_continuous_aggregate_policy('metrics_1m', "
    f"start_offset => INTERVAL '{REFRESH_WINDOW_SECONDS} seconds', end_offset => INTERVAL '1 minute', "
    "schedule_interval => INTERVAL '1 minute', if_not_exists => TRUE)"
)


def aggregate_retention_policy(after_s: float) -> sql.Composed:
    """Keep the 1-minute rollup four times longer than raw data."""
    return sql.SQL(
        "SELECT add_retention_policy('metrics_1m', make_interval(secs => {}), if_not_exists => TRUE)"
    ).format(sql.Literal(after_s * 4))
