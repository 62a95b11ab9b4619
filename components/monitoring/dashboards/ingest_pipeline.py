"""Ingest pipeline: generator throughput, latency, buffer and retries; consumer freshness and anomalies."""

from __future__ import annotations

from typing import Any

from grafana_foundation_sdk.builders import dashboard as dash

from .common import (
    NAMESPACE, RATE, DashboardIds, prom, prometheus_dashboard, stat_panel, timeseries_panel, to_json,
)

SLUG = "ingest-pipeline"
N = NAMESPACE  # short alias: it appears in nearly every f-string below


def _quantiles(histogram: str) -> list[Any]:
    return [
        prom(f"histogram_quantile({q}, sum by (le) (rate({histogram}_bucket{{{N}}}[{RATE}])))", f"p{int(q * 100)}")
        for q in (0.5, 0.95, 0.99)
    ]


def build(ids: DashboardIds) -> dict[str, Any]:
    """The dashboard JSON."""
    board = prometheus_dashboard(
        ids, SLUG, "Ingest pipeline",
        "tsflow generator and consumer: rows/s, batch latency, buffer, retries, freshness, anomalies.",
        "tsflow_generator_rows_written_total",
    )
    board = (
        board.with_row(dash.Row("Now"))
        .with_panel(stat_panel("Rows/s", "short",
                               prom(f"sum(rate(tsflow_generator_rows_written_total{{{N}}}[{RATE}]))"),
                               steps=((None, "red"), (1, "green"))))
        .with_panel(stat_panel("Since last flush", "s",
                               prom(f"time() - max(tsflow_generator_last_flush_timestamp_seconds{{{N}}})"),
                               steps=((None, "green"), (60, "orange"), (300, "red"))))
        .with_panel(stat_panel("Data freshness", "s",
                               prom(f"min(tsflow_consumer_data_freshness_seconds{{{N}}})"),
                               description="Now minus the newest data the consumer can read.",
                               steps=((None, "green"), (120, "orange"), (300, "red"))))
        .with_panel(stat_panel("Anomalies (range)", "short",
                               prom(f"sum(increase(tsflow_consumer_anomalies_found_total{{{N}}}[$__range]))")))
        .with_row(dash.Row("Generator"))
        .with_panel(timeseries_panel(
            "Rows written per second", "short",
            prom(f"sum by (pod) (rate(tsflow_generator_rows_written_total{{{N}}}[{RATE}]))", "{{pod}}")))
        .with_panel(timeseries_panel(
            "Batches per second", "short",
            prom(f"sum by (pod) (rate(tsflow_generator_batches_written_total{{{N}}}[{RATE}]))", "{{pod}} written"),
            prom(f"sum by (pod) (rate(tsflow_generator_batches_duplicate_total{{{N}}}[{RATE}]))", "{{pod}} duplicate"),
            description="Duplicates are batches the ingest ledger had already committed (safe replays after retries)."))
        .with_panel(timeseries_panel("Batch flush latency", "s", *_quantiles("tsflow_generator_flush_seconds")))
        .with_panel(timeseries_panel(
            "Buffer depth", "short",
            prom(f"sum by (pod) (tsflow_generator_buffer_batches{{{N}}})", "{{pod}} queued"),
            prom(f"max by (pod) (tsflow_generator_buffer_capacity_batches{{{N}}})", "{{pod}} capacity")))
        .with_panel(timeseries_panel(
            "Write retries per second", "short",
            prom(f"sum by (pod) (rate(tsflow_generator_retries_total{{{N}}}[{RATE}]))", "{{pod}}")))
        .with_panel(timeseries_panel(
            "Late rows refused per second", "short",
            prom(f"sum by (pod) (rate(tsflow_generator_rows_rejected_total{{{N}}}[{RATE}]))", "{{pod}}"),
            description="Rows older than the database's late-data window, not written: raw retention would drop "
                        "them before every rollup took them (workloads/README.md, late-data policy)."))
        .with_panel(timeseries_panel(
            "Time since last flush", "s",
            prom(f"time() - max by (pod) (tsflow_generator_last_flush_timestamp_seconds{{{N}}})", "{{pod}}")))
        .with_row(dash.Row("Consumer"))
        .with_panel(timeseries_panel(
            "Data freshness", "s", prom(f"max by (pod) (tsflow_consumer_data_freshness_seconds{{{N}}})", "{{pod}}")))
        .with_panel(timeseries_panel(
            "Anomalies found per minute", "short",
            prom(f"sum by (pod) (rate(tsflow_consumer_anomalies_found_total{{{N}}}[{RATE}])) * 60", "{{pod}}")))
        .with_panel(timeseries_panel("Analysis run duration", "s", *_quantiles("tsflow_consumer_analysis_seconds")))
        .with_panel(timeseries_panel(
            "Runs and errors per minute", "short",
            prom(f"sum by (pod) (rate(tsflow_consumer_runs_total{{{N}}}[{RATE}])) * 60", "{{pod}} runs"),
            prom(f"sum by (pod) (rate(tsflow_consumer_errors_total{{{N}}}[{RATE}])) * 60", "{{pod}} errors")))
        .with_panel(timeseries_panel(
            "Aggregate rows scanned per second", "short",
            prom(f"sum by (pod) (rate(tsflow_consumer_rows_scanned_total{{{N}}}[{RATE}]))", "{{pod}}")))
        .with_panel(timeseries_panel(
            "Time since last successful run", "s",
            prom(f"time() - max by (pod) (tsflow_consumer_last_success_timestamp_seconds{{{N}}})", "{{pod}}")))
        .with_row(dash.Row("Autoscaling"))
        .with_panel(timeseries_panel(
            "Replicas", "short",
            prom(f"max by (horizontalpodautoscaler) (kube_horizontalpodautoscaler_status_current_replicas{{{N}}})",
                 "{{horizontalpodautoscaler}} current"),
            prom(f"max by (horizontalpodautoscaler) (kube_horizontalpodautoscaler_status_desired_replicas{{{N}}})",
                 "{{horizontalpodautoscaler}} desired"),
            prom(f"max by (horizontalpodautoscaler) (kube_horizontalpodautoscaler_spec_max_replicas{{{N}}})",
                 "{{horizontalpodautoscaler}} max"),
            span=24))
    )
    return to_json(board)
