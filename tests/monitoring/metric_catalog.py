"""Every metric name our rules and dashboards may use, with the program that exports it.

A rule or panel that names a metric nobody exports never fires and never draws; the tests check every
PromQL expression against this catalog. Sources (read in the exporters' own code, not copied):

- postgres_exporter: prometheus-community/postgres_exporter, collectors ``pg_up`` (exporter core),
  ``stat_activity``, ``settings``, ``replication``, ``database``, ``stat_database`` and ``wal``. The names
  below are identical from v0.15 through v0.20.1 (v0.20 moved some collectors out of the legacy metric
  map without renaming them); the reference version is ``POSTGRES_EXPORTER_REFERENCE``.
- postgres_exporter custom queries: ours, ``components/timescaledb/exporter_queries.py`` (the catalog
  takes their names from that module, so a renamed column cannot leave a rule behind).
- Patroni: ``patroni/api.py`` ``do_GET_metrics`` (REST API ``/metrics``), labels ``scope`` and ``name``.
- kubelet: volume stats of mounted PVCs (``namespace``, ``persistentvolumeclaim`` labels), scraped by
  kube-prometheus-stack's kubelet ServiceMonitor.
- kube-state-metrics v2: ``kube_horizontalpodautoscaler_*`` (``namespace``, ``horizontalpodautoscaler``).
- Prometheus itself: ``up`` for every scrape target.
- pgbouncer_exporter: prometheus-community/pgbouncer_exporter ``collector.go`` (v0.12), namespace
  ``pgbouncer``; the pooler's exporter sidecar.
- tsflow (our workloads): ``workloads/tsflow/metrics.py``; the tests compare this list with the real
  ``/metrics`` output of ``GeneratorMetrics`` and ``ConsumerMetrics``.
- backup agent: ``components/timescaledb/backup_agent.py`` (``METRICS``); the backup tests compare this
  list with its rendered ``/metrics``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import Enum

import promql_parser

from components.timescaledb.exporter_queries import exported_metrics

POSTGRES_EXPORTER_REFERENCE = "quay.io/prometheuscommunity/postgres-exporter:v0.17.1"
"""The exporter version the names were checked against (any v0.15+ exports them unchanged)."""


class Source(str, Enum):
    """The program that exports a metric."""

    POSTGRES_EXPORTER = "postgres_exporter"
    TIMESCALEDB_QUERIES = "postgres_exporter TimescaleDB queries"
    PATRONI = "patroni"
    KUBELET = "kubelet"
    KUBE_STATE_METRICS = "kube-state-metrics"
    PROMETHEUS = "prometheus"
    TSFLOW_GENERATOR = "tsflow generator"
    TSFLOW_CONSUMER = "tsflow consumer"
    PGBOUNCER_EXPORTER = "pgbouncer_exporter"
    BACKUP_AGENT = "backup agent"


class Kind(str, Enum):
    """Prometheus metric type; histograms expose ``_bucket``, ``_sum`` and ``_count`` series."""

    COUNTER = "counter"
    GAUGE = "gauge"
    HISTOGRAM = "histogram"


@dataclass(frozen=True)
class Metric:
    """One exported metric family."""

    name: str
    kind: Kind
    source: Source


def _family(source: Source, kind: Kind, *names: str) -> list[Metric]:
    return [Metric(name, kind, source) for name in names]


CATALOG: tuple[Metric, ...] = (
    *_family(Source.PROMETHEUS, Kind.GAUGE, "up"),
    *_family(
        Source.POSTGRES_EXPORTER, Kind.GAUGE,
        "pg_up", "pg_stat_activity_count", "pg_stat_activity_max_tx_duration", "pg_settings_max_connections",
        "pg_replication_lag_seconds", "pg_replication_is_replica", "pg_database_size_bytes",
        "pg_stat_database_numbackends", "pg_wal_size_bytes", "pg_wal_segments",
    ),
    *_family(
        Source.POSTGRES_EXPORTER, Kind.COUNTER,
        "pg_stat_database_xact_commit", "pg_stat_database_xact_rollback", "pg_stat_database_blks_hit",
        "pg_stat_database_blks_read", "pg_stat_database_deadlocks", "pg_stat_database_tup_inserted",
    ),
    *(Metric(name, Kind.COUNTER if usage == "COUNTER" else Kind.GAUGE, Source.TIMESCALEDB_QUERIES)
      for name, usage in exported_metrics().items()),
    *_family(
        Source.PATRONI, Kind.GAUGE,
        "patroni_primary", "patroni_replica", "patroni_postgres_running", "patroni_cluster_unlocked",
        "patroni_postgres_streaming", "patroni_xlog_replayed_timestamp", "patroni_dcs_last_seen",
        "patroni_pending_restart", "patroni_is_paused", "patroni_sync_standby", "patroni_standby_leader",
        "patroni_xlog_paused",
    ),
    *_family(
        Source.PATRONI, Kind.COUNTER,
        "patroni_xlog_location", "patroni_xlog_received_location", "patroni_xlog_replayed_location",
        "patroni_postgres_timeline",
    ),
    *_family(
        Source.KUBELET, Kind.GAUGE,
        "kubelet_volume_stats_available_bytes", "kubelet_volume_stats_capacity_bytes",
        "kubelet_volume_stats_used_bytes",
    ),
    *_family(
        Source.KUBE_STATE_METRICS, Kind.GAUGE,
        "kube_horizontalpodautoscaler_status_current_replicas",
        "kube_horizontalpodautoscaler_status_desired_replicas",
        "kube_horizontalpodautoscaler_spec_max_replicas", "kube_horizontalpodautoscaler_spec_min_replicas",
    ),
    *_family(
        Source.TSFLOW_GENERATOR, Kind.COUNTER,
        "tsflow_generator_rows_written_total", "tsflow_generator_batches_written_total",
        "tsflow_generator_batches_duplicate_total", "tsflow_generator_retries_total",
        "tsflow_generator_rows_rejected_total",
    ),
    *_family(
        Source.TSFLOW_GENERATOR, Kind.GAUGE,
        "tsflow_generator_buffer_batches", "tsflow_generator_buffer_capacity_batches",
        "tsflow_generator_last_flush_timestamp_seconds",
    ),
    *_family(Source.TSFLOW_GENERATOR, Kind.HISTOGRAM, "tsflow_generator_flush_seconds"),
    *_family(
        Source.TSFLOW_CONSUMER, Kind.COUNTER,
        "tsflow_consumer_anomalies_found_total", "tsflow_consumer_rows_scanned_total",
        "tsflow_consumer_runs_total", "tsflow_consumer_errors_total",
    ),
    *_family(
        Source.TSFLOW_CONSUMER, Kind.GAUGE,
        "tsflow_consumer_data_freshness_seconds", "tsflow_consumer_last_success_timestamp_seconds",
    ),
    *_family(Source.TSFLOW_CONSUMER, Kind.HISTOGRAM, "tsflow_consumer_analysis_seconds"),
    # prometheus-community/pgbouncer_exporter v0.12 (collector.go: SHOW POOLS, SHOW DATABASES, SHOW STATS_TOTALS).
    *_family(
        Source.PGBOUNCER_EXPORTER, Kind.GAUGE,
        "pgbouncer_up", "pgbouncer_pools_client_active_connections", "pgbouncer_pools_client_waiting_connections",
        "pgbouncer_pools_server_active_connections", "pgbouncer_pools_server_idle_connections",
        "pgbouncer_pools_client_maxwait_seconds", "pgbouncer_databases_current_connections",
        "pgbouncer_databases_max_connections", "pgbouncer_databases_pool_size",
    ),
    *_family(
        Source.PGBOUNCER_EXPORTER, Kind.COUNTER,
        "pgbouncer_stats_client_wait_seconds_total", "pgbouncer_stats_sql_transactions_pooled_total",
        "pgbouncer_stats_queries_pooled_total",
    ),
    *_family(
        Source.BACKUP_AGENT, Kind.GAUGE,
        "pgbackrest_repo_up", "pgbackrest_backup_last_completed_timestamp_seconds",
        "pgbackrest_backup_last_duration_seconds", "pgbackrest_backup_last_size_bytes", "pgbackrest_backup_running",
        "pgbackrest_backup_last_run_success", "pgbackrest_agent_leader",
        "pg_stat_archiver_last_archived_timestamp_seconds", "pg_stat_archiver_last_failed_timestamp_seconds",
        "pg_stat_archiver_ready_segments",
    ),
    *_family(
        Source.BACKUP_AGENT, Kind.COUNTER,
        "pgbackrest_backup_runs_total", "pg_stat_archiver_archived_count", "pg_stat_archiver_failed_count",
    ),
)

_HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")


def series_names(metric: Metric) -> tuple[str, ...]:
    """The series names a metric family shows up as in PromQL."""
    if metric.kind is Kind.HISTOGRAM:
        return tuple(metric.name + suffix for suffix in _HISTOGRAM_SUFFIXES)
    return (metric.name,)


def known_series(sources: Iterable[Source] | None = None) -> dict[str, Source]:
    """Series name -> exporting program, optionally only for some sources."""
    wanted = set(sources) if sources is not None else set(Source)
    return {name: m.source for m in CATALOG if m.source in wanted for name in series_names(m)}


def metric_names(expr: str) -> set[str]:
    """Names of every series selector in a PromQL expression (raises ``ValueError`` if it does not parse)."""
    tree = promql_parser.parse(expr)
    names: set[str] = set()

    def visit(node: object) -> None:
        if isinstance(node, promql_parser.VectorSelector) and node.name:
            names.add(node.name)

    promql_parser.walk(tree, visit)
    return names


def unknown_metrics(expressions: Iterable[str], extra: Mapping[str, object] | Iterable[str] = ()) -> dict[str, set[str]]:
    """Expression -> names it uses that neither the catalog nor ``extra`` (e.g. recording rules) know."""
    known = set(known_series()) | set(extra)
    problems: dict[str, set[str]] = {}
    for expr in expressions:
        missing = metric_names(expr) - known
        if missing:
            problems[expr] = missing
    return problems
