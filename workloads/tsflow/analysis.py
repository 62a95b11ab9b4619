"""Anomaly detection computed where the data is: one SQL statement over the 1-minute rollup.

For each (device, metric) series, the latest minute in the look-back is compared with the minutes in
[latest - window, latest): z = (latest - mean) / stddev (sample standard deviation). PostgreSQL does the
grouping and the statistics; only flagged minutes and one summary row come back, so the consumer's memory
does not grow with the number of series.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Sequence

_BASELINE = "bucket < latest AND bucket >= latest - make_interval(secs => %(window)s)"

ANALYSIS_SQL = f"""
WITH recent AS (
    SELECT device_id, metric, bucket, avg_value,
           max(bucket) OVER (PARTITION BY device_id, metric) AS latest
    FROM metrics_1m
    WHERE bucket >= now() - make_interval(secs => %(lookback)s) AND avg_value IS NOT NULL
),
series AS (
    SELECT device_id, metric, latest, count(*) AS buckets,
           max(avg_value) FILTER (WHERE bucket = latest) AS value,
           avg(avg_value) FILTER (WHERE {_BASELINE}) AS mean,
           stddev_samp(avg_value) FILTER (WHERE {_BASELINE}) AS stddev,
           count(*) FILTER (WHERE {_BASELINE}) AS baseline
    FROM recent
    GROUP BY device_id, metric, latest
)
SELECT latest, device_id, metric, value, (value - mean) / stddev AS zscore, mean, stddev,
       NULL::bigint AS series, NULL::bigint AS buckets
FROM series
WHERE baseline >= %(min_samples)s AND stddev > 0 AND abs(value - mean) / stddev >= %(threshold)s
UNION ALL
SELECT NULL, NULL, NULL, NULL, NULL, NULL, NULL, count(*), coalesce(sum(buckets), 0)
FROM series
"""
"""Rows: one per anomaly, plus one summary row (time NULL) with the series and bucket counts."""


@dataclass(frozen=True)
class Anomaly:
    """A flagged latest minute."""

    time: datetime
    device_id: str
    metric: str
    value: float
    zscore: float
    mean: float
    stddev: float


def analysis_params(lookback_s: float, window_s: float, threshold: float, min_samples: int) -> dict[str, Any]:
    """Parameters of ANALYSIS_SQL."""
    return {"lookback": lookback_s, "window": window_s, "threshold": threshold, "min_samples": min_samples}


def parse_row(row: Sequence[Any]) -> Anomaly | tuple[int, int]:
    """An anomaly row, or the summary row as (series, buckets)."""
    if row[0] is None:
        return int(row[7]), int(row[8])
    return Anomaly(row[0], row[1], row[2], float(row[3]), float(row[4]), float(row[5]), float(row[6]))
