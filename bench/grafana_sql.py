"""Grafana's PostgreSQL macros and global variables, expanded as Grafana would, for running dashboard SQL.

Covers what the analysis dashboard uses: ``$__timeGroupAlias(col, $__interval)`` (time_bucket, as with the
data source's TimescaleDB option, else floor(epoch)), ``$__timeFilter(col)``, ``$__interval``,
``$__interval_ms``, ``$__range_s`` and the ``$device``/``$metric`` multi-value variables.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta


def grafana_interval(range_: timedelta, max_data_points: int = 1000) -> timedelta:
    """Roughly Grafana's auto interval: range / max data points, rounded to a 'nice' step."""
    raw = range_.total_seconds() / max_data_points
    steps = (1, 2, 5, 10, 15, 20, 30, 60, 120, 300, 600, 900, 1200, 1800, 3600, 7200, 21600, 43200, 86400)
    return timedelta(seconds=next((s for s in steps if s >= raw), steps[-1]))


def _quoted(values: list[str]) -> str:
    return ",".join("'" + v.replace("'", "''") + "'" for v in values)


def expand(sql: str, now: datetime, range_: timedelta, interval: timedelta, devices: list[str], metrics: list[str],
           timescaledb: bool = True) -> str:
    """`sql` with every macro and variable replaced."""
    start, end = (now - range_).isoformat(), now.isoformat()
    step = int(interval.total_seconds())
    group = (f"time_bucket('{step}s', \\1) AS \"time\"" if timescaledb
             else f'to_timestamp(floor(extract(epoch from \\1) / {step}) * {step}) AS "time"')
    sql = re.sub(r"\$__timeGroupAlias\(([^,]+), \$__interval\)", group, sql)
    sql = re.sub(r"\$__timeFilter\(([^)]+)\)", rf"\1 BETWEEN '{start}' AND '{end}'", sql)
    sql = sql.replace("$__interval_ms", str(step * 1000)).replace("$__range_s", str(int(range_.total_seconds())))
    sql = sql.replace("$device", _quoted(devices)).replace("$metric", _quoted(metrics))
    if "$" in sql:
        raise ValueError(f"unexpanded Grafana macro or variable in: {sql}")
    return sql
