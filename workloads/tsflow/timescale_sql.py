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

from .rollups import LEVELS, NAMES, REFRESH_END_OFFSET_S, REFRESH_SCHEDULE_S, Level, aggregates, time_column

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
# retention has its own slot too. The refresh job never touches either: its windows end where the raw
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


REFRESH_PROCEDURE = "tsflow_refresh_hierarchy"
"""The one job that refreshes every rollup, finest first (schema version 6; before it, one policy per level)."""

REFRESH_PROCEDURE_SQL = f"""
CREATE OR REPLACE PROCEDURE {REFRESH_PROCEDURE}(job_id integer, config jsonb) LANGUAGE plpgsql AS $$
DECLARE
    -- One instant for every level, so a coarser level's window never reaches past the finer one's.
    started timestamptz := now();
    lookback interval := (config->>'start_offset')::interval;
    views regclass[];
    ends interval[];
BEGIN
    SELECT array_agg((level->>'view')::regclass ORDER BY n), array_agg((level->>'end_offset')::interval ORDER BY n)
      INTO views, ends
      FROM jsonb_array_elements(config->'continuous_aggregates') WITH ORDINALITY AS l(level, n);
    FOR i IN 1 .. coalesce(array_length(views, 1), 0) LOOP
        CALL refresh_continuous_aggregate(views[i], started - lookback, started - ends[i],
                                          options => config->'refresh_options');
        COMMIT;  -- the next level reads what this one materialized
    END LOOP;
END $$
"""


REFRESH_OPTIONS = '{"buckets_per_batch": 0}'
"""refresh_continuous_aggregate's options: one pass over each level's window. TimescaleDB 2.19+ splits a refresh
into batches of ten buckets by default, newest first, and a late write into several chunks then needed a second
run of every level (``bench/late_data.py`` on 2.28.3); one pass takes it in one run (2.23 had no batching)."""


def refresh_config(retention_s: float) -> sql.Composed:
    """The job's config: the window start (the raw retention) and every level, finest first, with its end offset.

    Generic on purpose: the exporter reads each level's end offset from it (``continuous_aggregates``), as it
    reads a refresh policy's.
    """
    levels = ", ".join(f'{{"view": "{level.name}", "end_offset": "{REFRESH_END_OFFSET_S} seconds"}}'
                       for level in LEVELS)
    return sql.SQL("jsonb_build_object('start_offset', make_interval(secs => {})::text, "
                   "'refresh_options', {}::jsonb, 'continuous_aggregates', {}::jsonb)").format(
        sql.Literal(retention_s), sql.Literal(REFRESH_OPTIONS), sql.Literal(f"[{levels}]"))


def ordered_refresh(retention_s: float) -> list[sql.Composable | str]:
    """Schema version 6: one job refreshes 1 m, then 1 h, then 1 d over the whole raw retention, each up to its end
    offset ago, replacing the per-level policies (which could run a coarser level before the finer one had
    materialized the same period, so it missed that period until its next run).

    The wide window is what lets late data in: TimescaleDB logs writes below the materialization threshold and a
    refresh recomputes only the invalidated buckets inside its window, so a quiet window costs nothing. It ends
    where raw retention starts, so it never recomputes (and empties) buckets of dropped chunks.
    """
    return [
        *(sql.SQL("SELECT remove_continuous_aggregate_policy({}, if_exists => TRUE)").format(sql.Literal(level.name))
          for level in LEVELS),
        REFRESH_PROCEDURE_SQL,
        sql.SQL("SELECT delete_job(job_id) FROM timescaledb_information.jobs WHERE proc_name = {}").format(
            sql.Literal(REFRESH_PROCEDURE)),
        sql.SQL("SELECT add_job({}, make_interval(secs => {}), config => {})").format(
            sql.Literal(REFRESH_PROCEDURE), sql.Literal(REFRESH_SCHEDULE_S), refresh_config(retention_s)),
    ]


def scheduled_policies(retention_s: float, compress_after_s: float) -> list[sql.Composable]:
    """Drop the version-1/2 policies and add compression and retention with their schedules (one transaction,
    idempotent); the rollups' refresh is version 6's :func:`ordered_refresh`."""
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
    return out


def rollup_hierarchy(retention_s: float, compress_after_s: float) -> list[sql.Composable | str]:
    """Schema version 3 on TimescaleDB: the 1h and 1d aggregates, then every policy."""
    return [*(continuous_aggregate(level) for level in LEVELS[1:]), *scheduled_policies(retention_s, compress_after_s)]
