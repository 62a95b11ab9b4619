"""The analysis dashboard's value panels read the rollup that fits the range: any range reads a bounded number
of buckets per series (plans inspected with EXPLAIN on the plain flavour; the TimescaleDB flavour has the same
relations)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import psycopg
import pytest

from grafana_sql import expand, grafana_interval
from components.monitoring.dashboards import timeseries_analysis as ta
from tsflow import rollups

M1, H1, D1 = "metrics_1m", "metrics_1h", "metrics_1d"
H3, H24, D7, D30, D90 = (timedelta(hours=3), timedelta(hours=24), timedelta(days=7), timedelta(days=30),
                         timedelta(days=90))
# (range, devices, metrics) -> rollups read by the average, samples and envelope panels. The average and samples
# panels of a selection wider than MAX_SERIES read the whole selection coarsely (WIDE_ROWS) and the drawn top
# series finely (MAX_ROWS for at most MAX_SERIES keys); the envelope reads the selection at MAX_ROWS.
CASES = [
    (H24, 1, 4, {M1}, {M1}, {M1}),           # 4 series: every part reads minutes for a day
    (D30, 1, 4, {H1}, {H1}, {H1}),           # a 1 h interval reads hours
    (H3, 4, 4, {M1}, {M1}, {M1}),            # 16 series
    (H24, 4, 4, {H1}, {H1}, {H1}),
    (D7, 4, 4, {H1}, {H1}, {H1}),
    (D30, 4, 4, {H1, D1}, {H1}, {H1}),       # the 16-series ranking and mean from days, the top 10 from hours
    (D90, 4, 4, {D1}, {D1}, {D1}),
    (H3, 100, 4, {M1, H1}, {M1, H1}, {H1}),  # the All option: 400 series
    (H24, 100, 4, {H1, D1}, {H1, D1}, {H1}),
    (D7, 100, 4, {H1, D1}, {H1, D1}, {D1}),
    (D30, 100, 4, {H1, D1}, {D1}, {D1}),
]


def _relations(plan: dict[str, object]) -> set[str]:
    found = {str(plan["Relation Name"])} if "Relation Name" in plan else set()
    for child in plan.get("Plans", []):  # type: ignore[attr-defined]
        found |= _relations(child)
    return found


@pytest.mark.parametrize("range_,devices,metrics,average,samples,envelope", CASES,
                         ids=[f"{r}-{d}x{m}" for r, d, m, *_ in CASES])
def test_value_panels_read_the_rollups_their_budgets_allow(
        migrated_dsn: str, range_: timedelta, devices: int, metrics: int, average: set[str], samples: set[str],
        envelope: set[str]) -> None:
    now = datetime.now(timezone.utc)
    interval = grafana_interval(range_, ta.MAX_DATA_POINTS)
    selection = [f"d{i}" for i in range(devices)], [f"m{i}" for i in range(metrics)]
    with psycopg.connect(migrated_dsn) as conn:
        for query, expected in ((ta.WEIGHTED_AVERAGE, average), (ta.SAMPLES, samples), (ta.ENVELOPE, envelope)):
            sql = expand(query, now, range_, interval, *selection, timescaledb=False)
            plan = conn.execute(f"EXPLAIN (FORMAT JSON) {sql}").fetchone()[0]  # type: ignore[index]
            assert _relations(plan[0]["Plan"]) - {"anomalies"} == expected, query[:60]


def test_a_coarse_interval_picks_a_coarse_rollup_even_for_a_short_range(migrated_dsn: str) -> None:
    sql = expand(ta.SAMPLES, datetime.now(timezone.utc), timedelta(hours=6), timedelta(hours=1), ["d1"], ["m"],
                 timescaledb=False)
    with psycopg.connect(migrated_dsn) as conn:
        plan = conn.execute(f"EXPLAIN (FORMAT JSON) {sql}").fetchone()[0]  # type: ignore[index]
    assert _relations(plan[0]["Plan"]) == {"metrics_1h"}


def _drawn(conn: psycopg.Connection, query: str, devices: list[str], metrics: list[str]) -> dict[str, int]:
    """Series the panel query returns for the last 3 hours -> points each."""
    sql = expand(query, datetime.now(timezone.utc), timedelta(hours=3), grafana_interval(timedelta(hours=3),
                 ta.MAX_DATA_POINTS), devices, metrics, timescaledb=False)
    drawn: dict[str, int] = {}
    for _, series, _value in conn.execute(sql).fetchall():
        drawn[series] = drawn.get(series, 0) + 1
    return drawn


def test_a_wide_selection_draws_the_top_series_and_one_aggregate(migrated_dsn: str) -> None:
    """30 devices of one metric, device d<i> peaking at i: the average panel draws the MAX_SERIES highest peaks and
    the selection's mean, the samples panel the MAX_SERIES devices with the fewest samples and the mean device;
    a narrow selection draws only its own series. No series has more points than the panel's maxDataPoints."""
    devices = [f"d{i:02d}" for i in range(30)]
    with psycopg.connect(migrated_dsn, autocommit=True) as conn:
        # d<i> writes 60 - i samples over the last hour, peaking at value i.
        conn.execute("INSERT INTO metrics SELECT now() - make_interval(mins => s), 'd' || lpad(i::text, 2, '0'), 'm', "
                     "CASE WHEN s = 0 THEN i ELSE 0 END FROM generate_series(0, 29) i, generate_series(0, 59 - i) s")
        conn.execute(rollups.REFRESH_SQL)
        average = _drawn(conn, ta.WEIGHTED_AVERAGE, devices, ["m"])
        assert set(average) == {f"d{i:02d} m" for i in range(30 - ta.MAX_SERIES, 30)} | {"selection mean"}
        samples = _drawn(conn, ta.SAMPLES, devices, ["m"])
        assert set(samples) == {f"d{i:02d}" for i in range(30 - ta.MAX_SERIES, 30)} | {"mean per device"}
        narrow = _drawn(conn, ta.WEIGHTED_AVERAGE, devices[:3], ["m"])
        assert set(narrow) == {"d00 m", "d01 m", "d02 m"}
        assert max(average.values()) <= ta.MAX_DATA_POINTS and max(narrow.values()) <= ta.MAX_DATA_POINTS
