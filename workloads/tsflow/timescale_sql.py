"""All TimescaleDB-specific SQL lives here; schema.py picks it when the extension is available.

Facts relied on (TimescaleDB >= 2.13):
- `create_hypertable(..., by_range('time', <interval>), if_not_exists => TRUE)` is the current API.
- A continuous aggregate must be created `WITH NO DATA` inside a transaction block
  (`WITH DATA` refuses to run in one); the refresh policy fills it.
- Real-time aggregation is off by default since 2.13, so `materialized_only = false` is set to let
  the consumer see the current minute before the policy materialises it.
"""

from __future__ import annotations

from dataclasses import dataclass

from psycopg import sql

from .rollups import LEVELS, NAMES, Level, aggregates, time_column

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


# -- rollups and policies (metrics_1m since schema version 2, the rest and every policy since version 3) -------

ROLLUP_RETENTION_FACTOR = 4
"""Every rollup keeps four times the raw retention."""


@dataclass(frozen=True)
class Slot:
    """A fixed daily-aligned schedule: every `every_s` seconds, `offset_s` past UTC midnight."""

    every_s: int
    offset_s: int

    def next_start(self) -> sql.Composed:
        """SQL for the first slot after now()."""
        return sql.SQL(
            "date_bin(make_interval(secs => {every}), now() - make_interval(secs => {offset}), "
            "TIMESTAMPTZ '2000-01-01 00:00:00+00') + make_interval(secs => {every} + {offset})"
        ).format(every=sql.Literal(self.every_s), offset=sql.Literal(self.offset_s))


# Retention runs first each day and only drops whole chunks (seconds); compression starts half an hour later,
# so it never picks a chunk retention is dropping ("chunk deleted by other transaction"). Each rollup's
# retention has its own slot too. The refresh policies never touch either: their windows end where the raw
# retention starts.
RETENTION_SLOT = Slot(86400, 5 * 60)
COMPRESSION_SLOT = Slot(12 * 3600, 35 * 60)
ROLLUP_RETENTION_SLOTS = {name: Slot(86400, (10 + 5 * i) * 60) for i, name in enumerate(NAMES)}


def continuous_aggregate(level: Level) -> str:
    """CREATE MATERIALIZED VIEW for `level`, real-time (it reads the finer level for unmaterialized buckets)."""
    col = time_column(level)
    return f"""
CREATE MATERIALIZED VIEW IF NOT EXISTS {level.name}
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT time_bucket({level.width}, {col}) AS bucket, device_id, metric, {aggregates(level)}
FROM {level.source}
GROUP BY 1, device_id, metric
WITH NO DATA
"""


def refresh_policy(level: Level, retention_s: float) -> sql.Composed:
    """Refresh `level` over the whole raw retention, up to one bucket ago.

    The wide window is what lets late data in: TimescaleDB logs writes below the materialization threshold
    and a refresh recomputes only the invalidated buckets inside its window, so a quiet window costs
    nothing. It ends where raw retention starts, so it never recomputes (and empties) buckets of dropped
    chunks.
    """
    return sql.SQL(
        "SELECT add_continuous_aggregate_policy({name}, start_offset => make_interval(secs => {start}), "
        "end_offset => make_interval(secs => {end}), schedule_interval => make_interval(secs => {every}))"
    ).format(name=sql.Literal(level.name), start=sql.Literal(retention_s), end=sql.Literal(level.bucket_s),
             every=sql.Literal(level.schedule_s))


def scheduled_policies(retention_s: float, compress_after_s: float) -> list[sql.Composable]:
    """Drop the version-1/2 policies and add every policy with its schedule (one transaction, idempotent)."""
    out: list[sql.Composable] = [
        sql.SQL("SELECT remove_compression_policy('metrics', if_exists => TRUE)"),
        sql.SQL("SELECT add_compression_policy('metrics', make_interval(secs => {}), "
                "schedule_interval => make_interval(secs => {}), initial_start => {})").format(
            sql.Literal(compress_after_s), sql.Literal(COMPRESSION_SLOT.every_s), COMPRESSION_SLOT.next_start()),
    ]
    retentions = [("metrics", retention_s, RETENTION_SLOT)] + [
        (name, retention_s * ROLLUP_RETENTION_FACTOR, ROLLUP_RETENTION_SLOTS[name]) for name in NAMES]
    for name, after_s, slot in retentions:
        out.append(sql.SQL("SELECT remove_retention_policy({}, if_exists => TRUE)").format(sql.Literal(name)))
        out.append(sql.SQL("SELECT add_retention_policy({}, make_interval(secs => {}), "
                           "schedule_interval => make_interval(secs => {}), initial_start => {})").format(
            sql.Literal(name), sql.Literal(after_s), sql.Literal(slot.every_s), slot.next_start()))
    for level in LEVELS:
        out.append(sql.SQL("SELECT remove_continuous_aggregate_policy({}, if_exists => TRUE)").format(
            sql.Literal(level.name)))
        out.append(refresh_policy(level, retention_s))
    return out


def rollup_hierarchy(retention_s: float, compress_after_s: float) -> list[sql.Composable | str]:
    """Schema version 3 on TimescaleDB: the 1h and 1d aggregates, then every policy."""
    return [*(continuous_aggregate(level) for level in LEVELS[1:]), *scheduled_policies(retention_s, compress_after_s)]
