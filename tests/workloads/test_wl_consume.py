"""consume: planted anomalies are found (once), clean data gives none, reads honour --read-dsn."""

from __future__ import annotations

import math
import statistics
import threading
from datetime import datetime, timedelta
from typing import Any, Callable, Sequence

import psycopg
from prometheus_client import CollectorRegistry
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import tuple_row

from wl_support import json_lines, metric_value, run_tsflow, scalar
from tsflow.config import ConsumerConfig, DbConfig, HttpConfig
from tsflow.consumer import CURSOR_NAME, Consumer
from tsflow.http import Health
from tsflow.metrics import ConsumerMetrics


def _plant(dsn: str, spikes: dict[str, float], clean: list[str]) -> None:
    """One hour of calm minutes per device, then a latest minute (spiky for devices in `spikes`)."""
    rows = []
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT date_trunc('minute', now())").fetchone()
        assert row is not None
        anchor: datetime = row[0]
        for device in [*spikes, *clean]:
            for k in range(2, 62):
                for s in (5, 25, 45):
                    rows.append((anchor - timedelta(minutes=k, seconds=-s), device, "temperature",
                                 20.0 + math.sin(k) + 0.1 * math.cos(s)))
            latest = spikes.get(device, 20.3)
            for s in (5, 25):
                rows.append((anchor - timedelta(minutes=1, seconds=-s), device, "temperature", latest))
        with conn.cursor() as cur, cur.copy("COPY metrics (time, device_id, metric, value) FROM STDIN") as copy:
            for r in rows:
                copy.write_row(r)


def _consumer(dsn: str, read_dsn: str = "") -> tuple[Consumer, CollectorRegistry]:
    registry = CollectorRegistry()
    cfg = ConsumerConfig(db=DbConfig(dsn=dsn, startup_timeout=5), http=HttpConfig("127.0.0.1", 0),
                         read_dsn=read_dsn, threshold=4.0, min_samples=10, once=True)
    return Consumer(cfg, ConsumerMetrics(registry), Health()), registry


def test_finds_planted_anomalies_once(migrated_dsn: str) -> None:
    _plant(migrated_dsn, spikes={"dev-hot": 35.0, "dev-cold": 5.0}, clean=["dev-ok-1", "dev-ok-2"])
    consumer, registry = _consumer(migrated_dsn)
    assert consumer.run(threading.Event()) is True
    assert consumer.run(threading.Event()) is True  # second run: nothing new
    with psycopg.connect(migrated_dsn) as conn:
        found = conn.execute("SELECT device_id, metric, value, zscore FROM anomalies ORDER BY device_id").fetchall()
    assert [(d, m, v) for d, m, v, _ in found] == [("dev-cold", "temperature", 5.0), ("dev-hot", "temperature", 35.0)]
    assert found[0][3] < -4 < 4 < found[1][3]
    assert metric_value(registry, "tsflow_consumer_anomalies_found_total") == 2
    assert metric_value(registry, "tsflow_consumer_runs_total") == 2
    assert metric_value(registry, "tsflow_consumer_errors_total") == 0
    # 2 runs x 4 series x (latest + up to 60 baseline minutes; the oldest may slide out of the window)
    assert 2 * 4 * 59 <= metric_value(registry, "tsflow_consumer_rows_scanned_total") <= 2 * 4 * 61
    assert 0 <= metric_value(registry, "tsflow_consumer_data_freshness_seconds") < 120
    assert metric_value(registry, "tsflow_consumer_last_success_timestamp_seconds") > 0


def test_clean_data_has_no_anomalies(migrated_dsn: str) -> None:
    _plant(migrated_dsn, spikes={}, clean=[f"dev-{i}" for i in range(5)])
    consumer, registry = _consumer(migrated_dsn)
    assert consumer.run(threading.Event()) is True
    assert scalar(migrated_dsn, "SELECT count(*) FROM anomalies") == 0
    assert 5 * 59 <= metric_value(registry, "tsflow_consumer_rows_scanned_total") <= 5 * 61


def test_empty_database_reports_no_freshness(migrated_dsn: str) -> None:
    consumer, registry = _consumer(migrated_dsn)
    assert consumer.run(threading.Event()) is True
    assert metric_value(registry, "tsflow_consumer_data_freshness_seconds") == math.inf


def test_cli_reads_through_read_dsn_merged_with_pg_env(migrated_dsn: str) -> None:
    _plant(migrated_dsn, spikes={"dev-hot": 35.0}, clean=["dev-ok"])
    params = conninfo_to_dict(migrated_dsn)
    result = run_tsflow(
        ["consume", "--once", "--metrics-port", "0", "--metrics-host", "127.0.0.1",
         "--read-dsn", f"application_name=ro-test dbname={params['dbname']}"],
        PGHOST=str(params["host"]), PGPORT=str(params["port"]), PGUSER=str(params["user"]),
        PGDATABASE=str(params["dbname"]), PGPASSWORD="unused-with-trust-auth", PGSSLMODE="disable")
    assert result.returncode == 0, result.stderr
    logs = json_lines(result.stdout)
    assert [line["device_id"] for line in logs if line["msg"] == "anomaly"] == ["dev-hot"]
    assert next(line for line in logs if line["msg"] == "consumer connected")["read_replica"] is True
    assert scalar(migrated_dsn, "SELECT count(*) FROM anomalies") == 1


def _plant_rollup_minutes(dsn: str, series: dict[str, list[float]]) -> None:
    """Raw samples giving each device the given per-minute values, the last one in the latest minute."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute("SELECT date_trunc('minute', now())").fetchone()
        assert row is not None
        anchor: datetime = row[0]
        with conn.cursor() as cur, cur.copy("COPY metrics (time, device_id, metric, value) FROM STDIN") as copy:
            for device, values in series.items():
                for k, value in enumerate(reversed(values)):
                    copy.write_row((anchor - timedelta(minutes=k), device, "m", value))


def test_sql_statistics_window_and_threshold(migrated_dsn: str) -> None:
    # 30 alternating minutes then a jump, and a flat series: only the first is an anomaly.
    _plant_rollup_minutes(migrated_dsn, {"d": [10.0 + (i % 2) for i in range(30)] + [20.0],
                                         "flat": [5.0] * 31})

    def run(min_samples: int) -> list[tuple[str, int]]:
        registry = CollectorRegistry()
        cfg = ConsumerConfig(db=DbConfig(dsn=migrated_dsn, startup_timeout=5), http=HttpConfig("127.0.0.1", 0),
                             window=20 * 60, threshold=4.0, min_samples=min_samples, once=True)
        consumer = Consumer(cfg, ConsumerMetrics(registry), Health())
        consumer.open(threading.Event())
        try:
            result = consumer.run_once()
        finally:
            consumer.close()
        assert result.series == 2 and result.buckets_scanned == 2 * 21  # window + latest minute, per series
        return [(a.device_id, round(a.zscore, 6)) for a in result.anomalies]

    baseline = [10.0 + (i % 2) for i in range(10, 30)]  # the 20 minutes before the latest one
    expected = (20.0 - statistics.mean(baseline)) / statistics.stdev(baseline)
    assert run(min_samples=10) == [("d", round(expected, 6))]
    assert run(min_samples=21) == []  # only 20 baseline minutes


def test_memory_is_flat_in_the_series_count(migrated_dsn: str) -> None:
    """2,000 series x 11 minutes in the window, yet only the anomalies and one summary row reach Python."""
    series = {f"dev-{i:04d}": [20.0 + (k % 3) for k in range(10)] + [20.5] for i in range(2000)}
    series["dev-hot"] = [20.0 + (k % 3) for k in range(10)] + [60.0]
    _plant_rollup_minutes(migrated_dsn, series)
    cfg = ConsumerConfig(db=DbConfig(dsn=migrated_dsn, startup_timeout=5), http=HttpConfig("127.0.0.1", 0),
                         window=10 * 60, threshold=4.0, min_samples=5, once=True)
    consumer = Consumer(cfg, ConsumerMetrics(CollectorRegistry()), Health())
    consumer.open(threading.Event())
    fetched: list[int] = []
    declared: list[str] = []

    def counting_row(cursor: psycopg.Cursor[Any]) -> Callable[[Sequence[Any]], tuple[Any, ...]]:
        if isinstance(cursor, psycopg.ServerCursor):
            declared.append(cursor.name)
        make = tuple_row(cursor)

        def row(values: Sequence[Any]) -> tuple[Any, ...]:
            fetched.append(1)
            return make(values)
        return row

    try:
        consumer._primary.row_factory = counting_row  # type: ignore[union-attr]
        result = consumer.run_once()
    finally:
        consumer.close()
    assert result.series == 2001 and result.buckets_scanned == 2001 * 11
    assert [a.device_id for a in result.anomalies] == ["dev-hot"]
    assert declared == [CURSOR_NAME]  # the analysis streams through a server-side cursor
    assert len(fetched) <= 3  # freshness row + anomaly + summary, not 22,011 buckets
    assert scalar(migrated_dsn, "SELECT count(*) FROM anomalies") == 1
