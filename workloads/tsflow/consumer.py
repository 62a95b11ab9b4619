"""`tsflow consume`: periodic anomaly detection over the 1-minute rollup.

Reads go to --read-dsn (a replica) when given, writes (anomalies, and the plain-PostgreSQL view
refresh) go to the primary. Each run is independent: a failed run is counted and retried at the
next interval on fresh connections.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass
from datetime import timedelta

import psycopg

from . import db, schema
from .analysis import Anomaly, find_anomalies, window_stats
from .config import ConsumerConfig
from .http import Health
from .metrics import ConsumerMetrics

log = logging.getLogger("tsflow.consumer")

APP_NAME = "tsflow-consumer"
REFRESH_SQL = "REFRESH MATERIALIZED VIEW CONCURRENTLY metrics_1m"
READ_SQL = """
SELECT bucket, device_id, metric, avg_value
FROM metrics_1m
WHERE bucket >= now() - make_interval(secs => %s)
"""
NEWEST_SQL = """
SELECT now(), (SELECT max(time) FROM metrics WHERE time >= now() - make_interval(secs => %s))
"""
INSERT_SQL = """
INSERT INTO anomalies (time, device_id, metric, value, zscore, baseline_mean, baseline_stddev)
VALUES (%s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (time, device_id, metric) DO NOTHING
"""


@dataclass
class RunResult:
    """Outcome of one analysis run."""

    buckets_scanned: int
    series: int
    anomalies: list[Anomaly]
    inserted: int
    freshness_s: float


class Consumer:
    """Holds the primary/read connections and runs the analysis on a schedule."""

    def __init__(self, cfg: ConsumerConfig, metrics: ConsumerMetrics, health: Health) -> None:
        self._cfg = cfg
        self._metrics = metrics
        self._health = health
        self._primary: psycopg.Connection | None = None
        self._reader: psycopg.Connection | None = None
        self._flavor: str | None = None

    # -- connections ---------------------------------------------------------------------
    def open(self, stop: threading.Event) -> None:
        """Connect at start-up (bounded by --startup-timeout) and wait for the schema."""
        cfg = self._cfg
        deadline = time.monotonic() + cfg.db.startup_timeout
        self._primary = db.connect_with_retry(cfg.db.dsn, APP_NAME, cfg.db.connect_timeout,
                                              cfg.db.startup_timeout, cfg.db.max_backoff, stop, autocommit=True)
        if cfg.read_dsn:
            remaining = max(1.0, deadline - time.monotonic())
            self._reader = db.connect_with_retry(cfg.read_dsn, APP_NAME + "-read", cfg.db.connect_timeout,
                                                 remaining, cfg.db.max_backoff, stop, autocommit=True)
        while not schema.schema_ready(self._primary):
            if time.monotonic() > deadline or stop.is_set():
                raise db.StartupError("the database schema is missing or outdated: run `tsflow migrate` first")
            log.warning("waiting for the schema (run `tsflow migrate`)")
            stop.wait(1.0)
        self._flavor = schema.installed_flavor(self._primary)
        self._health.set_ready(True)
        log.info("consumer connected", extra={"flavor": self._flavor, "read_replica": bool(cfg.read_dsn)})

    def close(self) -> None:
        """Drop both connections."""
        db.safe_close(self._reader)
        db.safe_close(self._primary)
        self._reader = self._primary = None

    def _ensure_connected(self) -> tuple[psycopg.Connection, psycopg.Connection]:
        cfg = self._cfg
        if self._primary is None or self._primary.closed:
            self._primary = db.connect(cfg.db.dsn, APP_NAME, cfg.db.connect_timeout, autocommit=True)
        if cfg.read_dsn:
            if self._reader is None or self._reader.closed:
                self._reader = db.connect(cfg.read_dsn, APP_NAME + "-read", cfg.db.connect_timeout, autocommit=True)
            return self._primary, self._reader
        return self._primary, self._primary

    # -- analysis ------------------------------------------------------------------------
    def run_once(self) -> RunResult:
        """Refresh (plain PostgreSQL only), read the window, flag anomalies, record them."""
        cfg = self._cfg
        primary, reader = self._ensure_connected()
        if self._flavor is None:
            self._flavor = schema.installed_flavor(primary)
        if self._flavor == schema.PLAIN:
            primary.execute(REFRESH_SQL)
        lookback = cfg.window + 60.0  # the window before the latest minute, plus that minute
        rows = reader.execute(READ_SQL, (lookback,)).fetchall()
        now, newest = reader.execute(NEWEST_SQL, (lookback,)).fetchone() or (None, None)
        freshness = (now - newest).total_seconds() if now is not None and newest is not None else math.inf
        stats = window_stats(rows, timedelta(seconds=cfg.window))
        anomalies = find_anomalies(stats, cfg.threshold, cfg.min_samples)
        inserted = 0
        if anomalies:
            with primary.transaction(), primary.cursor() as cur:
                for a in anomalies:
                    cur.execute(INSERT_SQL, (a.time, a.device_id, a.metric, a.value, a.zscore, a.mean, a.stddev))
                    inserted += cur.rowcount
        return RunResult(len(rows), len(stats), anomalies, inserted, freshness)

    def run_and_record(self) -> bool:
        """One run with metrics and logs; False (and connections dropped) if it failed."""
        m = self._metrics
        m.runs.inc()
        started = time.perf_counter()
        try:
            result = self.run_once()
        except psycopg.Error as exc:
            m.errors.inc()
            self._health.set_ready(False)
            self.close()
            log.error("analysis run failed", extra={"error": db.one_line(exc)})
            return False
        m.analysis_seconds.observe(time.perf_counter() - started)
        m.rows_scanned.inc(result.buckets_scanned)
        m.anomalies_found.inc(result.inserted)
        m.data_freshness.set(result.freshness_s)
        m.last_success.set(time.time())
        self._health.set_ready(True)
        for a in result.anomalies:
            log.info("anomaly", extra={"time": a.time.isoformat(), "device_id": a.device_id, "metric": a.metric,
                                       "value": round(a.value, 4), "zscore": round(a.zscore, 2)})
        log.info("analysis run done", extra={
            "buckets": result.buckets_scanned, "series": result.series, "anomalies": len(result.anomalies),
            "new_anomalies": result.inserted,
            "freshness_s": None if math.isinf(result.freshness_s) else round(result.freshness_s, 3)})
        return True

    def run(self, stop: threading.Event) -> bool:
        """Run every --interval until `stop`; with --once, a single run. Returns the last run's success."""
        self.open(stop)
        try:
            ok = True
            while True:
                ok = self.run_and_record()
                if self._cfg.once or stop.wait(self._cfg.interval):
                    return ok
        finally:
            self.close()
            self._health.set_ready(False)
