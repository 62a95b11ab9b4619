"""Time-series analysis straight from the database: the tsflow rollups (1 minute, 1 hour, 1 day) and ``anomalies``.

Queries run through a Grafana PostgreSQL data source that logs in as the read-only role and points at the
replica Service, so dashboards never load the primary. ``avg_value`` is re-aggregated weighted by ``samples``
so zooming out still gives the true mean.

The rule that keeps every panel bounded, whatever the range and selection:

- **Points per series.** Every value panel sets ``maxDataPoints`` (MAX_DATA_POINTS) and groups by
  ``$__interval`` (``$__timeGroupAlias``), which Grafana derives from the range and that: at most that many
  points per series.
- **Which rollup.** It reads the coarsest rollup whose bucket is not wider than ``$__interval`` (finer data
  would be averaged away), unless the range holds more than MAX_POINTS buckets per series or the selection
  more than MAX_ROWS buckets in all of that rollup: then the next coarser one (``by_interval``). So the choice
  follows the interval and the selection, not the range alone, and no query reads more than MAX_ROWS buckets
  of a finer rollup.
- **Series per panel.** A panel draws at most MAX_SERIES series: a wider selection (the variables' All) draws
  its top MAX_SERIES by the panel's ranking plus one aggregate of the whole selection (``top_series``); the
  min/max band covers every selected series in two. Rows returned stay at most (MAX_SERIES + 1) x
  ``maxDataPoints``.
"""

from __future__ import annotations

from typing import Any

from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.models import dashboard as model

from .common import (
    POSTGRES_DS_TYPE, DashboardIds, SqlQuery, dashboard, stat_panel, table_panel, timeseries_panel, to_json,
)

SLUG = "tsdb-analysis"
SELECTION = "device_id IN ($device) AND metric IN ($metric)"

ROLLUPS = (("metrics_1m", 60), ("metrics_1h", 3600), ("metrics_1d", 86400))
"""The tsflow rollups (same columns in both schema flavours), finest first, with their bucket widths in seconds."""

MAX_DATA_POINTS = 1000
"""The value panels' ``maxDataPoints``: Grafana's ``$__interval`` is the range divided by it (rounded up to a nice step)."""

MAX_POINTS = 1500
"""Most buckets a panel reads per series: a range longer than MAX_POINTS buckets of a rollup reads a coarser one."""

MAX_ROWS = 100_000
"""Most buckets a panel reads in all: a wide selection (the variables' All) over a long range reads a coarser rollup."""

SERIES = "cardinality(ARRAY[$device]) * cardinality(ARRAY[$metric])"
"""How many series the selection can hold (a constant once Grafana has substituted the variables)."""


def _at_least(level: int) -> str:
    """SQL (constants only, after Grafana's interpolation) true when the panel needs rollup `level` or coarser.

    A rollup is needed when the panel's interval is at least its bucket (finer data would only be averaged
    away), or when the range holds more than MAX_POINTS buckets per series, or more than MAX_ROWS buckets for
    the whole selection, of the next finer rollup.
    """
    width, finer = ROLLUPS[level][1], ROLLUPS[level - 1][1]
    return (f"($__interval_ms >= {width * 1000} OR $__range_s > {finer * MAX_POINTS} "
            f"OR {SERIES} * $__range_s > {finer * MAX_ROWS})")


def by_interval(template: str) -> str:
    """`template` (reading ``{rollup}``) once per rollup, UNION ALL, each branch guarded by constants.

    After Grafana substitutes ``$__interval_ms`` and ``$__range_s`` the guards are literal booleans, so the
    planner drops every branch but one (a one-time filter) and a 30-day panel reads hourly buckets.
    """
    branches = []
    for level, (name, _) in enumerate(ROLLUPS):
        guards = [_at_least(level)] if level else []
        if level + 1 < len(ROLLUPS):
            guards.append(f"NOT {_at_least(level + 1)}")
        branches.append(template.format(rollup=name, guard=" AND ".join(guards)))
    return "\nUNION ALL\n".join(f"({b})" for b in branches) + "\nORDER BY 1"


MAX_SERIES = 10
"""Most series a panel draws. A wider selection draws its MAX_SERIES top-ranked series (each panel's ranking) plus
one aggregate of the whole selection, so the panel stays readable and its result small whatever is selected."""


def top_series(per_series: str, keys: str, *, label: str, rank: str, value: str, aggregate: str,
               aggregate_label: str, selected: str = SERIES) -> str:
    """One panel query drawing at most MAX_SERIES series, plus ``aggregate_label`` when ``selected`` exceeds that.

    ``per_series`` yields one row per ``$__interval`` bucket (column ``"time"``) and series (``keys``); it is
    read once (a CTE), ranked by ``rank`` (an aggregate over the range, ties by key) and cut to the top
    MAX_SERIES; ``aggregate`` folds every selected series into one per bucket. ``selected`` is a constant once
    Grafana has substituted the variables, so a narrow selection skips the aggregate branch.
    """
    return f"""WITH per AS (
{per_series}
), top AS (
  SELECT {keys} FROM per GROUP BY {keys} ORDER BY {rank}, {keys} LIMIT {MAX_SERIES}
)
SELECT per."time", {label} AS series, {value} AS value FROM per JOIN top USING ({keys})
UNION ALL
SELECT "time", '{aggregate_label}' AS series, {aggregate} AS value FROM per WHERE {selected} > {MAX_SERIES}
GROUP BY 1"""


WEIGHTED_AVERAGE = by_interval(top_series(
    f"""  SELECT $__timeGroupAlias(bucket, $__interval), device_id, metric,
         sum(avg_value * samples) AS weighted, sum(samples) AS samples, max(max_value) AS peak
  FROM {{rollup}}
  WHERE $__timeFilter(bucket) AND {SELECTION} AND {{guard}}
  GROUP BY 1, device_id, metric""",
    "device_id, metric", label="device_id || ' ' || metric", rank="max(peak) DESC",
    value="weighted / NULLIF(samples, 0)", aggregate="sum(weighted) / NULLIF(sum(samples), 0)",
    aggregate_label="selection mean"))
"""Sample-weighted mean per series: the MAX_SERIES series with the highest peak in range, and the selection's mean."""

ENVELOPE = by_interval(f"""SELECT $__timeGroupAlias(bucket, $__interval),
       min(min_value) AS "min",
       max(max_value) AS "max"
FROM {{rollup}}
WHERE $__timeFilter(bucket) AND {SELECTION} AND {{guard}}
GROUP BY 1""")
"""The band every selected series lies in: two series whatever the selection."""

SAMPLES = by_interval(top_series(
    f"""  SELECT $__timeGroupAlias(bucket, $__interval), device_id, sum(samples) AS samples
  FROM {{rollup}}
  WHERE $__timeFilter(bucket) AND {SELECTION} AND {{guard}}
  GROUP BY 1, device_id""",
    "device_id", label="device_id", rank="sum(samples)", value="samples",
    aggregate="sum(samples) / count(*)", aggregate_label="mean per device",
    selected="cardinality(ARRAY[$device])"))
"""Samples per device: the MAX_SERIES devices with the fewest samples in range (gaps first), and the mean device."""

ANOMALY_RATE = top_series(
    f"""  SELECT $__timeGroupAlias("time", $__interval), metric, count(*) AS anomalies
  FROM anomalies
  WHERE $__timeFilter("time") AND {SELECTION}
  GROUP BY 1, metric""",
    "metric", label="metric", rank="sum(anomalies) DESC", value="anomalies", aggregate="sum(anomalies)",
    aggregate_label="all selected", selected="cardinality(ARRAY[$metric])") + "\nORDER BY 1"
"""Anomalies per metric: the MAX_SERIES metrics with the most anomalies in range, and the selection's total."""

ANOMALY_COUNT = f"""SELECT count(*) AS anomalies
FROM anomalies
WHERE $__timeFilter("time") AND {SELECTION}"""

NEWEST_BUCKET_AGE = """SELECT EXTRACT(EPOCH FROM now() - coalesce(
    (SELECT max(bucket) FROM metrics_1m WHERE bucket > now() - INTERVAL '10 minutes'),
    (SELECT max(bucket) FROM metrics_1h WHERE bucket > now() - INTERVAL '1 day'))) AS age_seconds"""
"""Reads ten minutes of the 1-minute rollup; only when that is empty (already red) the hourly one for a day."""

RECENT_ANOMALIES = f"""SELECT "time", device_id, metric, value, zscore, detected_at
FROM anomalies
WHERE $__timeFilter("time") AND {SELECTION}
ORDER BY "time" DESC
LIMIT 500"""

DEVICES = "SELECT DISTINCT device_id FROM metrics_1h WHERE bucket > now() - INTERVAL '1 day' ORDER BY 1"
METRICS = "SELECT DISTINCT metric FROM metrics_1h WHERE bucket > now() - INTERVAL '1 day' ORDER BY 1"

PANEL_QUERIES = (WEIGHTED_AVERAGE, ENVELOPE, SAMPLES, ANOMALY_RATE, ANOMALY_COUNT, NEWEST_BUCKET_AGE, RECENT_ANOMALIES)
VARIABLE_QUERIES = (DEVICES, METRICS)


def _sql_variable(name: str, label: str, sql: str, datasource_uid: str) -> dash.QueryVariable:
    return (
        dash.QueryVariable(name).label(label)
        .datasource(model.DataSourceRef(type_val=POSTGRES_DS_TYPE, uid=datasource_uid))
        .query(sql).multi(True).include_all(True)
        .refresh(model.VariableRefresh.ON_DASHBOARD_LOAD)
    )


def build(ids: DashboardIds) -> dict[str, Any]:
    """The dashboard JSON; its queries use the data source whose uid is ``ids.analysis_datasource_uid``."""
    ds = ids.analysis_datasource_uid

    def sql(text: str, fmt: str = "time_series") -> SqlQuery:
        return SqlQuery(ds, text, fmt)  # type: ignore[arg-type]

    board = (
        dashboard(ids, SLUG, "Time-series analysis",
                  "The 1-minute rollup and detected anomalies, queried read-only from a replica.")
        .with_variable(_sql_variable("device", "Device", DEVICES, ds))
        .with_variable(_sql_variable("metric", "Metric", METRICS, ds))
        .with_row(dash.Row("Summary"))
        .with_panel(stat_panel("Newest aggregated minute", "s", sql(NEWEST_BUCKET_AGE, "table"),
                               description="Age of the newest metrics_1m bucket (rollup lag); past 10 minutes, "
                                           "to the hour.",
                               span=12, steps=((None, "green"), (180, "orange"), (600, "red"))))
        .with_panel(stat_panel("Anomalies in range", "short", sql(ANOMALY_COUNT, "table"), span=12,
                               steps=((None, "green"), (1, "orange"))))
        .with_row(dash.Row("Values"))
        .with_panel(timeseries_panel("Average value", "short", sql(WEIGHTED_AVERAGE), span=24,
                                     description=f"Sample-weighted mean of each device and metric; a selection of "
                                                 f"more than {MAX_SERIES} shows the {MAX_SERIES} with the highest "
                                                 "peak and the selection's mean.",
                                     max_data_points=MAX_DATA_POINTS))
        .with_panel(timeseries_panel("Min / max across selection", "short", sql(ENVELOPE),
                                     max_data_points=MAX_DATA_POINTS))
        .with_panel(timeseries_panel("Samples per interval", "short", sql(SAMPLES),
                                     description=f"Samples per device; more than {MAX_SERIES} devices show the "
                                                 f"{MAX_SERIES} with the fewest and the mean device.",
                                     max_data_points=MAX_DATA_POINTS))
        .with_row(dash.Row("Anomalies"))
        .with_panel(timeseries_panel("Anomalies per interval", "short", sql(ANOMALY_RATE), span=24,
                                     description=f"Per metric; more than {MAX_SERIES} metrics show the {MAX_SERIES} "
                                                 "with the most and the total.",
                                     max_data_points=MAX_DATA_POINTS))
        .with_panel(table_panel("Recent anomalies", sql(RECENT_ANOMALIES, "table"),
                                description="Newest first; zscore is the deviation from the trailing window."))
    )
    return to_json(board)
