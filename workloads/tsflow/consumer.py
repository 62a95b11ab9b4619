"""`tsflow consume`: periodic anomaly detection over the 1-minute rollup.

Reads go to --read-dsn (a replica) when given, writes (anomalies, and the plain-PostgreSQL rollup
refresh) go to the primary. Each run is independent: a failed run is counted and retried at the
next interval on fresh connections. The statistics are computed by the database (analysis.py) and
streamed through a server-side cursor, so memory stays flat in the number of series.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass
from typing import Iterable

import psycopg

from . import db, rollups, schema
from .analysis import ANALYSIS_SQL, Anomaly, analysis_params, parse_row
from .config import ConsumerConfig
from .http import Health
from .metrics import ConsumerMetrics

log = logging.getLogger("tsflow.consumer")

APP_NAME = "tsflow-consumer"
CURSOR_NAME = "tsflow_analysis"
FETCH_ROWS = 500  # rows per round trip of the server-side cursor
INSERT_BATCH = 500
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


def _insert(primary: psycopg.Connection, found: Iterable[Anomaly]) -> int:
    """Record anomalies (already recorded ones are skipped); returns how many are new."""
    values = [(a.time, a.device_id, a.metric, a.value, a.zscore, a.mean, a.stddev) for a in found]
    if not values:
        return 0
    inserted = 0
    with primary.transaction(), primary.cursor() as cur:
        for v in values:
            cur.execute(INSERT_SQL, v)
            inserted += cur.rowcount
    return inserted


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
            primary.execute(rollups.REFRESH_SQL)
        lookback = cfg.window + 60.0  # the window before the latest minute, plus that minute
        now, newest = reader.execute(NEWEST_SQL, (lookback,)).fetchone() or (None, None)
        freshness = (now - newest).total_seconds() if now is not None and newest is not None else math.inf
        params = analysis_params(lookback, cfg.window, cfg.threshold, cfg.min_samples)
        anomalies: list[Anomaly] = []
        series = buckets = inserted = 0
        with reader.transaction(), reader.cursor(CURSOR_NAME) as cur:
            cur.itersize = FETCH_ROWS
            cur.execute(ANALYSIS_SQL, params)
            pending: list[Anomaly] = []
            for row in cur:
                parsed = parse_row(row)
                if isinstance(parsed, Anomaly):
                    anomalies.append(parsed)
                    pending.append(parsed)
                    if len(pending) >= INSERT_BATCH:
                        inserted += _insert(primary, pending)
                        pending = []
                else:
                    series, buckets = parsed
            inserted += _insert(primary, pending)
        return RunResult(buckets, series, anomalies, inserted, freshness)

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
