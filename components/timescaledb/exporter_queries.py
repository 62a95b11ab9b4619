"""TimescaleDB health as Prometheus metrics: postgres_exporter custom queries (``--extend.query-path``).

Background jobs (compression, retention, continuous-aggregate refresh) fail silently: PostgreSQL stays
up, every default metric looks healthy, and the disk fills. These queries turn the job catalog into
metrics the alerts in ``components/monitoring/rules.py`` watch:

- ``timescaledb_job_*``: per policy job (ids >= 1000; the lower ids are TimescaleDB's own telemetry and
  housekeeping jobs): last run status, consecutive failures, last success time, schedule interval.
- ``timescaledb_compression_*``: per hypertable with a compression policy, the uncompressed chunks that
  ended longer ago than ``compress_after`` plus one schedule interval (the policy has had a run to
  compress them and did not).
- ``timescaledb_continuous_aggregate_*``: per continuous aggregate, how far its materialization
  watermark is behind now, and the most its refresh job lets it trail: ``end_offset`` (the refresh
  window ends there) + one bucket (the watermark is the end of the last whole bucket) + the schedule
  interval (the time until the next refresh). The job is the aggregate's refresh policy, or a job that
  refreshes several in order and lists each in its config as ``continuous_aggregates: [{view,
  end_offset}, ...]`` (tsflow's ``tsflow_refresh_hierarchy``).

Every name in the SQL was checked against TimescaleDB's own ``sql/views.sql``,
``sql/pre_install/tables.sql`` and ``sql/util_time.sql`` at tags 2.18.2, 2.23.1 and 2.28.3: the
``timescaledb_information`` views are stable public API; ``consecutive_failures`` exists only in
``_timescaledb_internal.bgw_job_stat`` (same table and column in all three, SELECT granted to PUBLIC);
a cagg's watermark is read from ``_timescaledb_catalog.continuous_aggs_watermark`` (what
``_timescaledb_functions.cagg_watermark`` returns, without that function's SELECT check on the view,
which the exporter's ``pg_monitor`` role does not pass) and turned into a timestamp by
``_timescaledb_functions.to_timestamp``. The exporter's role needs no grant beyond ``pg_monitor``. The queries run in the database the exporter
connects to, which must be the one with the extension (the application database).

The format is postgres_exporter's ``queries.yaml`` (cmd/postgres_exporter/queries.go, v0.15-v0.20):
metric ``<query name>_<column>``, ``LABEL`` columns become labels, NULL becomes NaN (never matches an
alert comparison).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import yaml

Usage = Literal["LABEL", "GAUGE", "COUNTER"]

USER_JOB_ID_MIN = 1000
"""TimescaleDB numbers policy and user-defined jobs from 1000; below are its own jobs."""
QUERIES_FILE = "queries.yaml"
"""File name of the rendered queries (key in the ConfigMap, file in the exporter container)."""


@dataclass(frozen=True)
class Column:
    """One result column: a label or a metric named ``<query>_<name>``."""

    name: str
    usage: Usage
    description: str


@dataclass(frozen=True)
class CustomQuery:
    """One postgres_exporter custom query."""

    name: str
    """Metric name prefix (postgres_exporter calls it the namespace)."""
    sql: str
    columns: tuple[Column, ...]
    cache_seconds: int = 0
    """Reuse the result for this long (0: run on every scrape)."""

    def metric(self, column: str) -> str:
        """The Prometheus metric name of ``column``."""
        return f"{self.name}_{column}"

    @property
    def metrics(self) -> dict[str, Usage]:
        """Metric name -> GAUGE/COUNTER for every non-label column."""
        return {self.metric(c.name): c.usage for c in self.columns if c.usage != "LABEL"}

    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns if c.usage == "LABEL")


def _interval_in(config: str, key: str) -> str:
    """SQL: ``config->key`` as an interval when it is one (integer-time hypertables store a number)."""
    return f"CASE WHEN jsonb_typeof({config}->'{key}') = 'string' THEN ({config}->>'{key}')::interval END"


def _epoch(expr: str) -> str:
    return f"extract(epoch FROM {expr})::float8"


JOBS = CustomQuery(
    name="timescaledb_job",
    sql=f"""
SELECT j.job_id::text AS job_id,
       j.proc_name::text AS proc_name,
       coalesce(j.hypertable_schema || '.' || j.hypertable_name, '') AS hypertable,
       CASE WHEN j.scheduled THEN 1 ELSE 0 END AS scheduled,
       CASE s.last_run_status WHEN 'Success' THEN 1 WHEN 'Failed' THEN 0 END AS last_run_success,
       coalesce(st.consecutive_failures, 0) AS consecutive_failures,
       CASE WHEN s.last_successful_finish > '-infinity'
            THEN {_epoch("s.last_successful_finish")} END AS last_success_timestamp_seconds,
       {_epoch("j.schedule_interval")} AS schedule_interval_seconds,
       coalesce(s.total_failures, 0) AS failures_total
FROM timescaledb_information.jobs j
LEFT JOIN timescaledb_information.job_stats s ON s.job_id = j.job_id
LEFT JOIN _timescaledb_internal.bgw_job_stat st ON st.job_id = j.job_id
WHERE j.job_id >= {USER_JOB_ID_MIN}
""".strip(),
    columns=(
        Column("job_id", "LABEL", "TimescaleDB job id"),
        Column("proc_name", "LABEL", "Job procedure, e.g. policy_compression, policy_retention"),
        Column("hypertable", "LABEL", "schema.name of the hypertable or continuous aggregate ('' for none)"),
        Column("scheduled", "GAUGE", "1 if the scheduler runs the job, 0 if it is paused"),
        Column("last_run_success", "GAUGE", "1 if the last run succeeded, 0 if it failed, NaN if never run"),
        Column("consecutive_failures", "GAUGE", "Failed runs since the last successful one"),
        Column("last_success_timestamp_seconds", "GAUGE", "Unix time the last successful run finished"),
        Column("schedule_interval_seconds", "GAUGE", "Seconds between scheduled runs"),
        Column("failures_total", "COUNTER", "Failed runs since the job was created"),
    ),
)

_OVERDUE = "c.range_end < now() - p.compress_after - p.schedule_interval"
COMPRESSION = CustomQuery(
    name="timescaledb_compression",
    sql=f"""
WITH policies AS (
  SELECT j.hypertable_schema, j.hypertable_name, j.schedule_interval,
         {_interval_in("j.config", "compress_after")} AS compress_after
  FROM timescaledb_information.jobs j
  WHERE j.proc_name = 'policy_compression' AND j.scheduled AND j.job_id >= {USER_JOB_ID_MIN}
)
SELECT p.hypertable_schema || '.' || p.hypertable_name AS hypertable,
       count(c.chunk_name) FILTER (WHERE {_OVERDUE}) AS overdue_chunks,
       coalesce({_epoch(f"now() - p.compress_after - p.schedule_interval - min(c.range_end) FILTER (WHERE {_OVERDUE})")},
                0) AS oldest_overdue_seconds,
       {_epoch("p.compress_after")} AS compress_after_seconds
FROM policies p
LEFT JOIN timescaledb_information.chunks c
  ON c.hypertable_schema = p.hypertable_schema AND c.hypertable_name = p.hypertable_name AND NOT c.is_compressed
WHERE p.compress_after IS NOT NULL
GROUP BY p.hypertable_schema, p.hypertable_name, p.compress_after, p.schedule_interval
""".strip(),
    columns=(
        Column("hypertable", "LABEL", "schema.name of the hypertable"),
        Column("overdue_chunks", "GAUGE",
               "Uncompressed chunks older than compress_after plus one schedule interval"),
        Column("oldest_overdue_seconds", "GAUGE", "How long the oldest overdue chunk has been due (0: none)"),
        Column("compress_after_seconds", "GAUGE", "The policy's compress_after"),
    ),
    cache_seconds=60,
)

_TIME_TYPES = "ARRAY['timestamptz', 'timestamp', 'date']::regtype[]"
CONTINUOUS_AGGREGATES = CustomQuery(
    name="timescaledb_continuous_aggregate",
    sql=f"""
SELECT ca.user_view_schema || '.' || ca.user_view_name AS view,
       CASE WHEN w.watermark > timestamptz '0001-01-01 00:00:00+00'
            THEN {_epoch("now() - w.watermark")} END AS watermark_lag_seconds,
       {_epoch("p.schedule_interval + coalesce(p.end_offset, interval '0') + w.bucket_width")} AS expected_lag_seconds
FROM _timescaledb_catalog.continuous_agg ca
JOIN timescaledb_information.continuous_aggregates info
  ON info.view_schema = ca.user_view_schema AND info.view_name = ca.user_view_name
JOIN timescaledb_information.dimensions d
  ON d.hypertable_schema = info.materialization_hypertable_schema
 AND d.hypertable_name = info.materialization_hypertable_name AND d.dimension_number = 1
LEFT JOIN _timescaledb_catalog.continuous_aggs_watermark cw ON cw.mat_hypertable_id = ca.mat_hypertable_id
LEFT JOIN _timescaledb_catalog.continuous_aggs_bucket_function bf ON bf.mat_hypertable_id = ca.mat_hypertable_id
CROSS JOIN LATERAL (
  SELECT CASE WHEN d.column_type = ANY({_TIME_TYPES})
              THEN _timescaledb_functions.to_timestamp(cw.watermark) END AS watermark,
         CASE WHEN d.column_type = ANY({_TIME_TYPES}) THEN bf.bucket_width::interval END AS bucket_width
) w
LEFT JOIN LATERAL (
  SELECT j.schedule_interval, coalesce({_interval_in("l.level", "end_offset")},
                                       {_interval_in("j.config", "end_offset")}) AS end_offset
  FROM timescaledb_information.jobs j
  LEFT JOIN LATERAL jsonb_array_elements(CASE WHEN jsonb_typeof(j.config->'continuous_aggregates') = 'array'
                                              THEN j.config->'continuous_aggregates' END) l(level) ON true
  WHERE j.scheduled
    AND ((j.proc_name = 'policy_refresh_continuous_aggregate'
          AND (j.config->>'mat_hypertable_id')::int = ca.mat_hypertable_id)
      OR to_regclass(l.level->>'view') = to_regclass(format('%I.%I', ca.user_view_schema, ca.user_view_name)))
  ORDER BY j.job_id
  LIMIT 1
) p ON true
""".strip(),
    columns=(
        Column("view", "LABEL", "schema.name of the continuous aggregate"),
        Column("watermark_lag_seconds", "GAUGE",
               "Seconds between now and the materialization watermark (NaN before the first refresh)"),
        Column("expected_lag_seconds", "GAUGE",
               "Lag the refresh job allows: end_offset + schedule interval + bucket width (NaN without a refresh job)"),
    ),
    cache_seconds=30,
)

QUERIES: tuple[CustomQuery, ...] = (JOBS, COMPRESSION, CONTINUOUS_AGGREGATES)


def exported_metrics() -> dict[str, Usage]:
    """Every metric name the custom queries export -> GAUGE/COUNTER."""
    return {name: usage for query in QUERIES for name, usage in query.metrics.items()}


def queries_file() -> str:
    """The postgres_exporter ``queries.yaml`` for ``QUERIES``."""
    document = {
        query.name: {
            "query": query.sql,
            "master": True,
            **({"cache_seconds": query.cache_seconds} if query.cache_seconds else {}),
            "metrics": [{c.name: {"usage": c.usage, "description": c.description}} for c in query.columns],
        }
        for query in QUERIES
    }
    return yaml.safe_dump(document, sort_keys=False, width=1000)
