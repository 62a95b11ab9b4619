"""Time-series analysis straight from the database: the tsflow rollups (1 minute, 1 hour, 1 day) and ``anomalies``.

Queries run through a Grafana PostgreSQL data source that logs in as the read-only role and points at the
replica Service, so dashboards never load the primary. Each value panel reads the rollup that fits its
interval, range and selection (``by_interval``), so any range up to 30 days reads at most MAX_POINTS
buckets per series and MAX_ROWS in all. ``avg_value`` is re-aggregated weighted by ``samples`` so zooming
out still gives the true mean.
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


WEIGHTED_AVERAGE = by_interval(f"""SELECT $__timeGroupAlias(bucket, $__interval),
       device_id || ' ' || metric AS series,
       sum(avg_value * samples) / NULLIF(sum(samples), 0) AS value
FROM {{rollup}}
WHERE $__timeFilter(bucket) AND {SELECTION} AND {{guard}}
GROUP BY 1, device_id, metric""")

ENVELOPE = by_interval(f"""SELECT $__timeGroupAlias(bucket, $__interval),
       min(min_value) AS "min",
       max(max_value) AS "max"
FROM {{rollup}}
WHERE $__timeFilter(bucket) AND {SELECTION} AND {{guard}}
GROUP BY 1""")

SAMPLES = by_interval(f"""SELECT $__timeGroupAlias(bucket, $__interval),
       device_id AS series,
       sum(samples) AS samples
FROM {{rollup}}
WHERE $__timeFilter(bucket) AND {SELECTION} AND {{guard}}
GROUP BY 1, 2""")

ANOMALY_RATE = f"""SELECT $__timeGroupAlias("time", $__interval),
       metric AS series,
       count(*) AS anomalies
FROM anomalies
WHERE $__timeFilter("time") AND {SELECTION}
GROUP BY 1, 2
ORDER BY 1"""

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
                                     description="Sample-weighted mean of each device and metric."))
        .with_panel(timeseries_panel("Min / max across selection", "short", sql(ENVELOPE)))
        .with_panel(timeseries_panel("Samples per interval", "short", sql(SAMPLES)))
        .with_row(dash.Row("Anomalies"))
        .with_panel(timeseries_panel("Anomalies per interval", "short", sql(ANOMALY_RATE), span=24))
        .with_panel(table_panel("Recent anomalies", sql(RECENT_ANOMALIES, "table"),
                                description="Newest first; zscore is the deviation from the trailing window."))
    )
    return to_json(board)
