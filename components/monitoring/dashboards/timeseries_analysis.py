"""Time-series analysis straight from the database: the tsflow rollups (1 minute, 1 hour, 1 day) and ``anomalies``.

Queries run through a Grafana PostgreSQL data source that logs in as the read-only role and points at the
replica Service, so dashboards never load the primary. ``avg_value`` is re-aggregated weighted by ``samples``
so zooming out still gives the true mean.

The rule that keeps every panel bounded, whatever the range and selection:

- **Points per series.** Every value panel sets ``maxDataPoints`` (MAX_DATA_POINTS) and groups by
  ``$__interval`` (``$__timeGroupAlias``), which Grafana derives from the range and that: at most that many
  points per series.
- **Which rollup.** Each part of a query reads the coarsest rollup whose bucket is not wider than
  ``$__interval`` (finer data would be averaged away), unless the range holds more than MAX_POINTS buckets
  per series, or the series that part reads more than its row budget, of that rollup: then the next coarser
  one (``rollup_branches``). So the choice follows the interval and the selection, not the range alone.
- **Series per panel.** A panel draws at most MAX_SERIES series. A wider selection (the variables' All) is read
  at the resolution WIDE_ROWS allows for all of it, once grouped per series to rank it (exactly: a maximum or a
  sum) and once grouped per interval to draw one aggregate of the whole selection; its top MAX_SERIES are then
  drawn one by one through the per-series index, at the resolution MAX_ROWS allows for that many
  (``top_series``). The min/max band covers every selected series in two. Rows returned stay at most (MAX_SERIES + 1) x ``maxDataPoints``.
- **Indexes.** Every rollup has a covering index on (device_id, metric, bucket) (tsflow schema version 6), so
  a few series over a long range are an index-only scan, not a scan of every series in the range.

``bench/dashboards.py`` measures every panel query for 1, 16 and 400 series at 3 h to 30 d over 10M rows.
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

MAX_ROWS = 12_000
"""Most rollup rows a panel reads for the series it draws (about 1-2 us each to read and group on TimescaleDB 2.28):
a wide selection over a long range reads a coarser rollup."""

WIDE_ROWS = 5_000
"""Most rollup rows a panel reads over a selection wider than MAX_SERIES, to rank it and draw its aggregate. The
ranking (a maximum, a sum) is exact at any resolution; only the aggregate line gets coarser."""

MAX_SERIES = 10
"""Most series a panel draws. A wider selection draws its MAX_SERIES top-ranked series (each panel's ranking) plus
one aggregate of the whole selection, so the panel stays readable and its result small whatever is selected."""

SERIES = "cardinality(ARRAY[$device]) * cardinality(ARRAY[$metric])"
"""How many series the selection can hold (a constant once Grafana has substituted the variables)."""

DEVICES_SELECTED = "cardinality(ARRAY[$device])"


def _at_least(level: int, series: str, budget: int = MAX_ROWS) -> str:
    """SQL (constants only, after Grafana's interpolation) true when a query part over ``series`` series needs
    rollup `level` or coarser.

    A rollup is needed when the panel's interval is at least its bucket (finer data would only be averaged
    away), or when the range holds more than MAX_POINTS buckets per series, or more than MAX_ROWS buckets for
    all those series (``budget``), of the next finer rollup.
    """
    width, finer = ROLLUPS[level][1], ROLLUPS[level - 1][1]
    return (f"($__interval_ms >= {width * 1000} OR $__range_s > {finer * MAX_POINTS} "
            f"OR ({series}) * $__range_s > {finer * budget})")


def rollup_branches(template: str, series: str = SERIES, when: str = "", budget: int = MAX_ROWS) -> str:
    """`template` (reading ``{rollup}`` under ``{guard}``) once per rollup, UNION ALL, each branch guarded by
    constants: the rollup a part reading ``series`` series needs, and ``when``.

    After Grafana substitutes ``$__interval_ms``, ``$__range_s`` and the variables the guards are literal
    booleans, so the planner drops every branch but one (a one-time filter).
    """
    branches = []
    for level, (name, _) in enumerate(ROLLUPS):
        guards = [when] if when else []
        if level:
            guards.append(_at_least(level, series, budget))
        if level + 1 < len(ROLLUPS):
            guards.append(f"NOT {_at_least(level + 1, series, budget)}")
        branches.append(template.format(rollup=name, guard=" AND ".join(guards) or "true"))
    return "\nUNION ALL\n".join(f"({b})" for b in branches)


def by_interval(template: str) -> str:
    """A whole panel query over the selection: :func:`rollup_branches`, ordered by time."""
    return rollup_branches(template) + "\nORDER BY 1"


def top_series(*, keys: tuple[str, ...], selected: str, per_key: str, scores: str, drawn: str,
               aggregated: str, aggregate_label: str) -> str:
    """A value panel query that draws at most MAX_SERIES series, whatever the selection.

    ``selected`` counts the selection's keys (constant after interpolation), each covering ``per_key`` rollup
    series. Templates read ``{rollup}`` under ``{guard}``; ``drawn`` also has ``{series_filter}``.

    - A selection of at most MAX_SERIES keys: ``drawn`` (columns ``"time"``, ``series``, ``value``) over the
      selection, at the resolution the selection allows.
    - A wider one is read twice at the resolution WIDE_ROWS allow for the whole selection, each time grouped as
      little as its answer needs: ``scores`` (per key, a ``score`` column: a maximum or a sum, exact at any
      resolution) ranks the keys, and the top MAX_SERIES are drawn with ``drawn`` one key at a time (an index
      lookup each, at the resolution MAX_SERIES keys allow); ``aggregated`` (columns ``"time"``, ``value``: one
      value per ``$__interval`` bucket over every key) is drawn as ``aggregate_label``.
    """
    columns = ", ".join(keys)
    narrow, wide = f"{selected} <= {MAX_SERIES}", f"{selected} > {MAX_SERIES}"
    one_key = " AND ".join(f"{key} = top.{key}" for key in keys)
    return f"""WITH top AS (
  SELECT {columns} FROM (
{rollup_branches(scores, SERIES, when=wide, budget=WIDE_ROWS)}
  ) scored ORDER BY score DESC, {columns} LIMIT {MAX_SERIES}
)
{rollup_branches(drawn.replace("{series_filter}", SELECTION), SERIES, when=narrow)}
UNION ALL
(SELECT drawn.* FROM top CROSS JOIN LATERAL (
{rollup_branches(drawn.replace("{series_filter}", one_key), f"LEAST({selected}, {MAX_SERIES}) * {per_key}", when=wide)}
) drawn)
UNION ALL
(SELECT "time", '{aggregate_label}' AS series, value FROM (
{rollup_branches(aggregated, SERIES, when=wide, budget=WIDE_ROWS)}
) whole)
ORDER BY 1"""


_WINDOW = "$__timeFilter(bucket) AND {guard}"

WEIGHTED_AVERAGE = top_series(
    keys=("device_id", "metric"), selected=SERIES, per_key="1",
    scores=f"""SELECT device_id, metric, max(max_value) AS score
FROM {{rollup}} WHERE {SELECTION} AND {_WINDOW}
GROUP BY device_id, metric""",
    drawn=f"""SELECT $__timeGroupAlias(bucket, $__interval), device_id || ' ' || metric AS series,
       sum(avg_value * samples) / NULLIF(sum(samples), 0) AS value
FROM {{rollup}} WHERE {{series_filter}} AND {_WINDOW}
GROUP BY 1, device_id, metric""",
    aggregated=f"""SELECT $__timeGroupAlias(bucket, $__interval), sum(avg_value * samples) / NULLIF(sum(samples), 0) AS value
FROM {{rollup}} WHERE {SELECTION} AND {_WINDOW}
GROUP BY 1""",
    aggregate_label="selection mean")
"""Sample-weighted mean per series: a wide selection's MAX_SERIES with the highest peak in range, and its mean."""

ENVELOPE = by_interval(f"""SELECT $__timeGroupAlias(bucket, $__interval),
       min(min_value) AS "min",
       max(max_value) AS "max"
FROM {{rollup}}
WHERE {SELECTION} AND {_WINDOW}
GROUP BY 1""")
"""The band every selected series lies in: two series whatever the selection."""

SAMPLES = top_series(
    keys=("device_id",), selected=DEVICES_SELECTED, per_key="cardinality(ARRAY[$metric])",
    scores=f"""SELECT device_id, -sum(samples) AS score
FROM {{rollup}} WHERE {SELECTION} AND {_WINDOW}
GROUP BY device_id""",
    drawn=f"""SELECT $__timeGroupAlias(bucket, $__interval), device_id AS series, sum(samples) AS value
FROM {{rollup}} WHERE {{series_filter}} AND metric IN ($metric) AND {_WINDOW}
GROUP BY 1, device_id""",
    aggregated=f"""SELECT $__timeGroupAlias(bucket, $__interval), sum(samples)::float8 / {DEVICES_SELECTED} AS value
FROM {{rollup}} WHERE {SELECTION} AND {_WINDOW}
GROUP BY 1""",
    aggregate_label="mean per device")
"""Samples per device: a wide selection's MAX_SERIES devices with the fewest samples in range (gaps first), and the
mean over the selected devices."""

ANOMALY_RATE = f"""WITH per AS (
  SELECT $__timeGroupAlias("time", $__interval), metric, count(*) AS anomalies
  FROM anomalies
  WHERE $__timeFilter("time") AND {SELECTION}
  GROUP BY 1, metric
), top AS (
  SELECT metric FROM per GROUP BY metric ORDER BY sum(anomalies) DESC, metric LIMIT {MAX_SERIES}
)
SELECT per."time", metric AS series, anomalies AS value FROM per JOIN top USING (metric)
UNION ALL
SELECT "time", 'all selected' AS series, sum(anomalies) AS value FROM per
WHERE cardinality(ARRAY[$metric]) > {MAX_SERIES}
GROUP BY 1
ORDER BY 1"""
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
