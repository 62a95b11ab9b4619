"""Time-series analysis straight from the database: the ``metrics_1m`` continuous aggregate and ``anomalies``.

Queries run through a Grafana PostgreSQL data source that logs in as the read-only role and points at the
replica Service, so dashboards never load the primary. ``avg_value`` is re-aggregated weighted by
``samples`` so zooming out (coarser ``$__interval``) still gives the true mean.
"""

from __future__ import annotations

from typing import Any

from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.models import dashboard as model

from components.monitoring.dashboards.common import (
    POSTGRES_DS_TYPE, DashboardIds, SqlQuery, dashboard, stat_panel, table_panel, timeseries_panel, to_json,
)

SLUG = "tsdb-analysis"
SELECTION = "device_id IN ($device) AND metric IN ($metric)"

WEIGHTED_AVERAGE = f"""SELECT $__timeGroupAlias(bucket, $__interval),
       device_id || ' ' || metric AS series,
       sum(avg_value * samples) / NULLIF(sum(samples), 0) AS value
FROM metrics_1m
WHERE $__timeFilter(bucket) AND {SELECTION}
GROUP BY 1, 2
ORDER BY 1"""

ENVELOPE = f"""SELECT $__timeGroupAlias(bucket, $__interval),
       min(min_value) AS "min",
       max(max_value) AS "max"
FROM metrics_1m
WHERE $__timeFilter(bucket) AND {SELECTION}
GROUP BY 1
ORDER BY 1"""

SAMPLES = f"""SELECT $__timeGroupAlias(bucket, $__interval),
       device_id AS series,
       sum(samples) AS samples
FROM metrics_1m
WHERE $__timeFilter(bucket) AND {SELECTION}
GROUP BY 1, 2
ORDER BY 1"""

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

NEWEST_BUCKET_AGE = """SELECT EXTRACT(EPOCH FROM now() - max(bucket)) AS age_seconds
FROM metrics_1m
WHERE bucket > now() - INTERVAL '1 day'"""

RECENT_ANOMALIES = f"""SELECT "time", device_id, metric, value, zscore, detected_at
FROM anomalies
WHERE $__timeFilter("time") AND {SELECTION}
ORDER BY "time" DESC
LIMIT 500"""

DEVICES = "SELECT DISTINCT device_id FROM metrics_1m WHERE bucket > now() - INTERVAL '1 day' ORDER BY 1"
METRICS = "SELECT DISTINCT metric FROM metrics_1m WHERE bucket > now() - INTERVAL '1 day' ORDER BY 1"

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
                               description="Age of the newest metrics_1m bucket (continuous aggregate lag).",
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
