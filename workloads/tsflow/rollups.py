"""The rollup hierarchy (1 minute -> 1 hour -> 1 day) and its plain-PostgreSQL maintenance.

Both schema flavours expose the same three relations with the same columns
(bucket, device_id, metric, avg_value, min_value, max_value, samples):

- TimescaleDB: hierarchical continuous aggregates (metrics_1m on metrics, metrics_1h on metrics_1m,
  metrics_1d on metrics_1h), refreshed by one job (``tsflow_refresh_hierarchy``) that runs every level in
  order, finest first, committing after each: a coarser level never reads a period the finer one has not
  materialized. Late data is found through TimescaleDB's own invalidation log: every level's window looks
  back over the whole raw retention, and a refresh only re-materializes the buckets that were invalidated
  in that window, so its cost follows the late data, not the window.
- Plain PostgreSQL: ordinary tables kept by ``tsflow_refresh_rollups()``, which the consumer calls before
  each analysis run. Statement-level triggers with transition tables log the time range of every write
  to ``metrics`` (any writer, any age) in ``rollup_invalidations``; the refresh takes those ranges, merges
  them and recomputes exactly the affected minutes, hours and days.

Buckets are aligned on UTC midnight in both flavours (time_bucket's and date_bin's origins are).
"""

from __future__ import annotations

from dataclasses import dataclass

ORIGIN = "TIMESTAMPTZ '2000-01-01 00:00:00+00'"
REFRESH_LOCK_KEY = 0x7473_726F_6C6C  # "tsroll": one plain-PostgreSQL refresher at a time


@dataclass(frozen=True)
class Level:
    """One rollup relation."""

    name: str
    """Relation name (`metrics_1m`, ...)."""
    bucket_s: int
    """Bucket width in seconds."""
    source: str
    """What it aggregates: raw `metrics` or the finer rollup."""

    @property
    def width(self) -> str:
        """The bucket width as an SQL interval literal."""
        return f"INTERVAL '{self.bucket_s} seconds'"

    @property
    def from_raw(self) -> bool:
        """True for the level that reads raw samples."""
        return self.source == "metrics"


LEVELS: tuple[Level, ...] = (
    Level("metrics_1m", 60, "metrics"),
    Level("metrics_1h", 3600, "metrics_1m"),
    Level("metrics_1d", 86400, "metrics_1h"),
)
NAMES = tuple(level.name for level in LEVELS)
MIN_RETENTION_S = 3 * 86400
"""The daily rollup's refresh window (the raw retention) must span at least two days past its 1-day end offset."""
REFRESH_END_OFFSET_S = LEVELS[0].bucket_s
"""TimescaleDB: every level's refresh window ends this long ago. The finest level waits one bucket (the current
minute still fills); a coarser one ends where the finer one does, so each refresh reads a period the finer level
has just materialized in the same run, and the real-time part of a query (past the watermark) stays short."""
REFRESH_SCHEDULE_S = 60
"""TimescaleDB: how often the one refresh job runs (every level, finest first): the finest rollup's bucket."""
LATE_DATA_REFRESH_RUNS = 1
"""Runs of the refresh job after which a late write is in every level (see :func:`late_data_window_s`)."""
JOB_DELAY_MARGIN_S = 3600
"""Allowance for refresh jobs that start late or run long (a busy scheduler, a restart)."""


def late_data_window_s(retention_s: float) -> float:
    """How old a row may be when written and still reach every rollup (TimescaleDB flavour).

    A refresh recomputes only the buckets wholly inside its window ``[now - retention, now - bucket]``, and
    raw retention drops the row's chunk once it is ``retention`` old. The refresh job materializes a late
    row into the 1 m, then the 1 h (reading the 1 m), then the 1 d (reading the 1 h) rollup within
    :data:`LATE_DATA_REFRESH_RUNS` of its runs (``bench/late_data.py`` measures the runs). The row's day
    must then still lie inside the coarsest level's window, whose start is rounded up to a bucket boundary:
    two buckets of slack. So the window is the raw retention minus twice the coarsest bucket, those runs and
    :data:`JOB_DELAY_MARGIN_S`; older rows are refused at ingest, counted and alerted on, never accepted and
    silently lost.
    """
    runs = LATE_DATA_REFRESH_RUNS * REFRESH_SCHEDULE_S
    return retention_s - 2 * LEVELS[-1].bucket_s - runs - JOB_DELAY_MARGIN_S


def series_index(level: Level) -> str:
    """A covering index per series: dashboards read a few series over a range (an index-only scan), where the
    primary key or TimescaleDB's own indexes lead with the bucket and read every series of the range."""
    return (f"CREATE INDEX IF NOT EXISTS {level.name}_series_idx ON {level.name} (device_id, metric, bucket) "
            "INCLUDE (avg_value, min_value, max_value, samples)")


def aggregates(level: Level) -> str:
    """The select list of `level` after (bucket, device_id, metric): identical in both flavours.

    Coarser levels re-aggregate the finer one: the mean is weighted by samples, so it is the true mean.
    """
    if level.from_raw:
        return "avg(value) AS avg_value, min(value) AS min_value, max(value) AS max_value, count(*) AS samples"
    return ("sum(avg_value * samples) / sum(samples) AS avg_value, min(min_value) AS min_value, "
            "max(max_value) AS max_value, sum(samples)::bigint AS samples")


def time_column(level: Level) -> str:
    """The source column bucketed by `level`."""
    return "time" if level.from_raw else "bucket"


# -- plain PostgreSQL ----------------------------------------------------------------------------------------

PLAIN_TABLE = """
CREATE TABLE IF NOT EXISTS {name} (
    bucket    timestamptz      NOT NULL,
    device_id text             NOT NULL,
    metric    text             NOT NULL,
    avg_value double precision,
    min_value double precision,
    max_value double precision,
    samples   bigint           NOT NULL,
    PRIMARY KEY (bucket, device_id, metric)
)
"""

PLAIN_INVALIDATION_LOG = (
    """
    CREATE TABLE IF NOT EXISTS rollup_invalidations (
        lowest    timestamptz NOT NULL,
        greatest  timestamptz NOT NULL,
        logged_at timestamptz NOT NULL DEFAULT now()
    )
    """,
    """
    CREATE OR REPLACE FUNCTION tsflow_log_invalidation() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO rollup_invalidations (lowest, greatest)
        SELECT min(time), max(time) FROM changed HAVING count(*) > 0;
        RETURN NULL;
    END $$
    """,
)
# A trigger with transition tables has one event and one table each; UPDATE needs both its old and new times.
_TRIGGERS = (("ins", "INSERT", "NEW"), ("del", "DELETE", "OLD"), ("upd_old", "UPDATE", "OLD"),
             ("upd_new", "UPDATE", "NEW"))
PLAIN_TRIGGERS = tuple(
    f"CREATE OR REPLACE TRIGGER metrics_rollup_{suffix} AFTER {event} ON metrics "
    f"REFERENCING {which} TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION tsflow_log_invalidation()"
    for suffix, event, which in _TRIGGERS
)


def _recompute(level: Level, lo: str, hi: str) -> str:
    """plpgsql statements replacing `level`'s buckets in [lo, hi) (lo/hi already aligned to the bucket)."""
    col = time_column(level)
    return f"""
        DELETE FROM {level.name} WHERE bucket >= {lo} AND bucket < {hi};
        INSERT INTO {level.name} (bucket, device_id, metric, avg_value, min_value, max_value, samples)
        SELECT date_bin({level.width}, {col}, {ORIGIN}), device_id, metric, {aggregates(level)}
        FROM {level.source} WHERE {col} >= {lo} AND {col} < {hi}
        GROUP BY 1, 2, 3;"""


def _align(level: Level, lo: str, hi: str) -> str:
    """plpgsql assignments widening [lo, hi) to whole buckets of `level` into lo_x, hi_x."""
    return (f"lo_x := date_bin({level.width}, {lo}, {ORIGIN}); "
            f"hi_x := date_bin({level.width}, {hi} - INTERVAL '1 microsecond', {ORIGIN}) + {level.width};")


def plain_refresh_function() -> str:
    """`tsflow_refresh_rollups()`: consume the invalidation log, recompute affected buckets of every level.

    Returns the number of merged time ranges recomputed, or NULL when another session is refreshing.
    """
    finest = LEVELS[0]
    steps = "\n".join(f"        {_align(level, 'los[i]', 'his[i]')}{_recompute(level, 'lo_x', 'hi_x')}"
                      for level in LEVELS)
    return f"""
CREATE OR REPLACE FUNCTION tsflow_refresh_rollups() RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    los timestamptz[];
    his timestamptz[];
    lo_x timestamptz;
    hi_x timestamptz;
BEGIN
    IF NOT pg_try_advisory_xact_lock({REFRESH_LOCK_KEY}) THEN
        RETURN NULL;
    END IF;
    WITH taken AS (DELETE FROM rollup_invalidations RETURNING lowest, greatest),
    spans AS (
        SELECT date_bin({finest.width}, lowest, {ORIGIN}) AS lo,
               date_bin({finest.width}, greatest, {ORIGIN}) + {finest.width} AS hi
        FROM taken),
    marked AS (
        SELECT lo, hi, CASE WHEN lo <= max(hi) OVER (ORDER BY lo, hi ROWS BETWEEN UNBOUNDED PRECEDING
                                                      AND 1 PRECEDING) THEN 0 ELSE 1 END AS starts
        FROM spans),
    grouped AS (SELECT lo, hi, sum(starts) OVER (ORDER BY lo, hi) AS grp FROM marked),
    merged AS (SELECT min(lo) AS lo, max(hi) AS hi FROM grouped GROUP BY grp)
    SELECT array_agg(lo ORDER BY lo), array_agg(hi ORDER BY lo) INTO los, his FROM merged;
    IF los IS NULL THEN
        RETURN 0;
    END IF;
    FOR i IN 1 .. array_length(los, 1) LOOP
{steps}
    END LOOP;
    RETURN array_length(los, 1);
END $$
"""


def plain_statements() -> tuple[str, ...]:
    """Everything the plain flavour needs, in order (idempotent)."""
    return (*(PLAIN_TABLE.format(name=n) for n in NAMES), *PLAIN_INVALIDATION_LOG, *PLAIN_TRIGGERS,
            plain_refresh_function())


REFRESH_SQL = "SELECT tsflow_refresh_rollups()"
INVALIDATE_ALL_SQL = ("INSERT INTO rollup_invalidations (lowest, greatest) "
                      "SELECT min(time), max(time) FROM metrics HAVING count(*) > 0")
