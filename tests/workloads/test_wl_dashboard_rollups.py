"""The analysis dashboard's value panels read the rollup that fits the range: any range reads a bounded number
of buckets per series (plans inspected with EXPLAIN on the plain flavour; the TimescaleDB flavour has the same
relations)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import psycopg
import pytest

from grafana_sql import expand, grafana_interval
from components.monitoring.dashboards import timeseries_analysis as ta

CASES = [  # (range, devices selected (4 metrics each), rollup read)
    (timedelta(hours=3), 4, "metrics_1m"),
    (timedelta(hours=24), 4, "metrics_1m"),
    (timedelta(days=7), 4, "metrics_1h"),
    (timedelta(days=30), 4, "metrics_1h"),
    (timedelta(days=90), 4, "metrics_1d"),
    (timedelta(hours=3), 100, "metrics_1m"),  # the All option over 400 series
    (timedelta(hours=24), 100, "metrics_1h"),
    (timedelta(days=7), 100, "metrics_1h"),
    (timedelta(days=30), 100, "metrics_1d"),
]


def _relations(plan: dict[str, object]) -> set[str]:
    found = {str(plan["Relation Name"])} if "Relation Name" in plan else set()
    for child in plan.get("Plans", []):  # type: ignore[attr-defined]
        found |= _relations(child)
    return found


@pytest.mark.parametrize("range_,devices,rollup", CASES, ids=[f"{r}-{d}dev" for r, d, _ in CASES])
def test_value_panels_read_one_rollup(migrated_dsn: str, range_: timedelta, devices: int, rollup: str) -> None:
    now = datetime.now(timezone.utc)
    interval = grafana_interval(range_)
    selection = [f"d{i}" for i in range(devices)], ["m0", "m1", "m2", "m3"]
    with psycopg.connect(migrated_dsn) as conn:
        for query in (ta.WEIGHTED_AVERAGE, ta.ENVELOPE, ta.SAMPLES):
            sql = expand(query, now, range_, interval, *selection, timescaledb=False)
            plan = conn.execute(f"EXPLAIN (FORMAT JSON) {sql}").fetchone()[0]  # type: ignore[index]
            assert _relations(plan[0]["Plan"]) == {rollup}
    buckets = range_.total_seconds() / dict(ta.ROLLUPS)[rollup]  # per series
    assert buckets <= ta.MAX_POINTS and (buckets * devices * 4 <= ta.MAX_ROWS or rollup == "metrics_1d")


def test_a_coarse_interval_picks_a_coarse_rollup_even_for_a_short_range(migrated_dsn: str) -> None:
    sql = expand(ta.SAMPLES, datetime.now(timezone.utc), timedelta(hours=6), timedelta(hours=1), ["d1"], ["m"],
                 timescaledb=False)
    with psycopg.connect(migrated_dsn) as conn:
        plan = conn.execute(f"EXPLAIN (FORMAT JSON) {sql}").fetchone()[0]  # type: ignore[index]
    assert _relations(plan[0]["Plan"]) == {"metrics_1h"}
