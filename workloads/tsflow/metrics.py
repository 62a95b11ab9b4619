"""Prometheus metrics of both apps; names are a fixed contract with the alerting rules."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_FLUSH_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_ANALYSIS_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class GeneratorMetrics:
    """Metrics of `tsflow generate`, registered in `registry` (no labels: present from start-up)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.rows_written = Counter(
            "tsflow_generator_rows_written", "Rows committed to the database.", registry=registry)
        self.batches_written = Counter(
            "tsflow_generator_batches_written", "Batches committed to the database.", registry=registry)
        self.batches_duplicate = Counter(
            "tsflow_generator_batches_duplicate",
            "Batches skipped because the ingest ledger already had them.", registry=registry)
        self.retries = Counter(
            "tsflow_generator_retries", "Batch write attempts that failed and were retried.", registry=registry)
        self.buffer_batches = Gauge(
            "tsflow_generator_buffer_batches", "Batches waiting in the buffer.", registry=registry)
        self.buffer_capacity = Gauge(
            "tsflow_generator_buffer_capacity_batches", "Capacity of the batch buffer.", registry=registry)
        self.flush_seconds = Histogram(
            "tsflow_generator_flush_seconds", "Time to commit one batch.",
            buckets=_FLUSH_BUCKETS, registry=registry)
        self.last_flush = Gauge(
            "tsflow_generator_last_flush_timestamp_seconds",
            "Unix time of the last successful flush.", registry=registry)
        self.rows_generated = Counter(
            "tsflow_generator_rows_generated", "Rows produced by the simulator.", registry=registry)
        self.rows_rejected = Counter(
            "tsflow_generator_rows_rejected",
            "Rows refused, not written: older than the database's late-data window, they could never reach every "
            "rollup before raw retention drops them.", registry=registry)


class ConsumerMetrics:
    """Metrics of `tsflow consume`, registered in `registry` (no labels: present from start-up)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.analysis_seconds = Histogram(
            "tsflow_consumer_analysis_seconds", "Duration of one analysis run.",
            buckets=_ANALYSIS_BUCKETS, registry=registry)
        self.data_freshness = Gauge(
            "tsflow_consumer_data_freshness_seconds",
            "Now minus the newest data time seen (+Inf when the window holds no data).", registry=registry)
        self.anomalies_found = Counter(
            "tsflow_consumer_anomalies_found", "New anomalies recorded.", registry=registry)
        self.rows_scanned = Counter(
            "tsflow_consumer_rows_scanned", "1-minute aggregate rows read for analysis.", registry=registry)
        self.runs = Counter("tsflow_consumer_runs", "Analysis runs started.", registry=registry)
        self.errors = Counter("tsflow_consumer_errors", "Analysis runs that failed.", registry=registry)
        self.last_success = Gauge(
            "tsflow_consumer_last_success_timestamp_seconds",
            "Unix time of the last successful analysis run.", registry=registry)
