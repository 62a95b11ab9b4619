"""Recording rules and alerts for TimescaleDB, Patroni and the tsflow workloads, as plain data.

``rule_groups`` returns the ``spec.groups`` of a PrometheusRule; the same data renders to a Prometheus
rules file so ``promtool check rules`` / ``promtool test rules`` can run on exactly what we deploy.
Every selector is scoped to the namespaces (and, for ``up``, the jobs) of our own scrape targets so a
shared Prometheus does not alert on other teams' databases.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any

import yaml

from .pooler_rules import POOLER_JOB, pooler_rule_group
from ..shared.names import DNS_LABEL

RULE_PREFIX = "timescale_k8s"

CONNECTIONS_RATIO = f"{RULE_PREFIX}:pg_connections:usage_ratio"
REPLICATION_LAG_BYTES = f"{RULE_PREFIX}:patroni_replication_lag:bytes"
CACHE_HIT_RATIO = f"{RULE_PREFIX}:pg_cache_hit:ratio_rate5m"
COMMITS_RATE = f"{RULE_PREFIX}:pg_xact_commit:rate5m"
VOLUME_FREE_RATIO = f"{RULE_PREFIX}:volume_free:ratio"
ROWS_WRITTEN_RATE = f"{RULE_PREFIX}:generator_rows_written:rate5m"
FLUSH_P95 = f"{RULE_PREFIX}:generator_flush_seconds:p95_5m"



@dataclass(frozen=True, kw_only=True)
class AlertThresholds:
    """Where alerts fire; every field is validated against the sane range in ``THRESHOLD_RANGES``."""

    replication_lag_seconds: float = 30.0
    """A replica this many seconds behind the primary alerts; default 30."""
    connection_usage_ratio: float = 0.8
    """Share of ``max_connections`` in use that alerts; default 0.8."""
    volume_free_ratio: float = 0.15
    """Free share of a PVC below which it is 'nearly full'; default 0.15."""
    freshness_seconds: float = 300.0
    """Age of the newest data the consumer sees that alerts; default 300."""
    ingest_stall_minutes: float = 5.0
    """Minutes without a successful generator flush that count as a stall; default 5."""
    retry_rate_per_second: float = 0.05
    """Generator write retries per second (per pod, 5m average) that alert; default 0.05."""
    buffer_usage_ratio: float = 0.9
    """Share of the generator's batch buffer in use that alerts; default 0.9."""
    consumer_error_ratio: float = 0.5
    """Share of failed consumer runs over 15 minutes that alerts; default 0.5."""
    autoscaler_at_max_minutes: float = 15.0
    """Minutes an autoscaler may sit at max_replicas before alerting; default 15."""
    job_consecutive_failures: float = 1.0
    """Failed runs in a row of a TimescaleDB job (compression, retention, refresh) that alert; default 1."""
    job_missed_runs: float = 3.0
    """Schedule intervals a scheduled job may go without a successful run before alerting; default 3."""
    compression_backlog_minutes: float = 60.0
    """Minutes chunks may stay overdue for compression (past compress_after plus a policy run) before
    alerting; default 60."""
    rollup_lag_grace_minutes: float = 60.0
    """Minutes a continuous aggregate's watermark may trail beyond what its refresh policy allows
    (end_offset + bucket width + schedule interval) before alerting; default 60."""
    standby_replay_stall_minutes: float = 15.0
    """Minutes a standby cluster's leader may replay nothing (no WAL position change, or replay paused)
    before alerting; default 15. A time-series primary writes WAL all the time, so silence means the feed
    from the primary's archive or stream stopped."""
    standby_behind_seconds: float = 600.0
    """Age of the newest transaction a standby cluster's leader has replayed that alerts (the data a
    promotion would lose, when the primary writes continuously); default 600."""

    def check(self, field: str = "alert_thresholds") -> AlertThresholds:
        """Raise ``ValueError`` naming ``field.<name>`` if a threshold is not a number in its range."""
        for f in fields(self):
            value = getattr(self, f.name)
            low, high = THRESHOLD_RANGES[f.name]
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"{field}.{f.name} ({value!r}) must be a finite number")
            if not low < value <= high:
                raise ValueError(f"{field}.{f.name} ({value}) must be > {low} and <= {high}")
        return self


THRESHOLD_RANGES: dict[str, tuple[float, float]] = {
    "replication_lag_seconds": (0, 3600),
    "connection_usage_ratio": (0, 1),
    "volume_free_ratio": (0, 0.9),
    "freshness_seconds": (0, 86400),
    "ingest_stall_minutes": (0, 1440),
    "retry_rate_per_second": (0, 1000),
    "buffer_usage_ratio": (0, 1),
    "consumer_error_ratio": (0, 1),
    "autoscaler_at_max_minutes": (0, 1440),
    "job_consecutive_failures": (0, 1000),
    "job_missed_runs": (0, 1000),
    "compression_backlog_minutes": (0, 10080),
    "rollup_lag_grace_minutes": (0, 10080),
    "standby_replay_stall_minutes": (0, 1440),
    "standby_behind_seconds": (0, 86400),
}
"""Exclusive lower and inclusive upper bound of each threshold."""


@dataclass(frozen=True)
class RuleScope:
    """The namespaces our targets run in and the scrape jobs we created (plain strings, resolved)."""

    namespaces: tuple[str, ...]
    jobs: tuple[str, ...]

    def __post_init__(self) -> None:
        for kind, values in (("namespace", self.namespaces), ("job", self.jobs)):
            if not values:
                raise ValueError(f"RuleScope needs at least one {kind}")
            bad = [v for v in values if not DNS_LABEL.match(v)]
            if bad:
                raise ValueError(f"RuleScope {kind}s {bad} must be DNS labels (lowercase letters, digits, '-')")

    @property
    def ns(self) -> str:
        """Matcher for our namespaces (names are DNS labels, so they need no regex escaping)."""
        return f'namespace=~"{_alternatives(self.namespaces)}"'

    @property
    def job(self) -> str:
        """Matcher for our scrape jobs."""
        return f'job=~"{_alternatives(self.jobs)}"'


def _alternatives(values: Sequence[str]) -> str:
    return "|".join(sorted(set(values)))


def _num(value: float) -> str:
    """A PromQL number literal without float noise (``0.05``, ``300``)."""
    return f"{value:g}"


def _minutes(value: float) -> str:
    """A Prometheus duration for ``value`` minutes (``15m``, or whole seconds like ``450s``)."""
    return f"{int(value)}m" if float(value).is_integer() else f"{max(1, round(value * 60))}s"


@dataclass(frozen=True)
class Record:
    """A recording rule."""

    name: str
    expr: str

    def to_rule(self) -> dict[str, Any]:
        return {"record": self.name, "expr": self.expr}


@dataclass(frozen=True)
class Alert:
    """An alerting rule; ``summary``/``description`` name the labels that locate the problem."""

    name: str
    expr: str
    for_: str
    severity: str
    summary: str
    description: str

    def to_rule(self) -> dict[str, Any]:
        return {
            "alert": self.name,
            "expr": self.expr,
            "for": self.for_,
            "labels": {"severity": self.severity, "part_of": "timescale-k8s"},
            "annotations": {"summary": self.summary, "description": self.description},
        }


def recording_rules(scope: RuleScope) -> list[Record]:
    """Aggregates the alerts and dashboards share."""
    ns = scope.ns
    return [
        Record(
            CONNECTIONS_RATIO,
            f"sum by (namespace, pod) (pg_stat_activity_count{{{ns}}})"
            f" / on (namespace, pod) max by (namespace, pod) (pg_settings_max_connections{{{ns}}})",
        ),
        Record(
            REPLICATION_LAG_BYTES,
            f"clamp_min(max by (namespace, scope) (patroni_xlog_location{{{ns}}})"
            f" - on (namespace, scope) group_right ()"
            f" (patroni_xlog_replayed_location{{{ns}}} and on (namespace, pod) patroni_replica{{{ns}}} == 1), 0)",
        ),
        Record(
            CACHE_HIT_RATIO,
            f"sum by (namespace, pod) (rate(pg_stat_database_blks_hit{{{ns}}}[5m]))"
            f" / (sum by (namespace, pod) (rate(pg_stat_database_blks_hit{{{ns}}}[5m]))"
            f" + sum by (namespace, pod) (rate(pg_stat_database_blks_read{{{ns}}}[5m])))",
        ),
        Record(COMMITS_RATE, f"sum by (namespace, pod) (rate(pg_stat_database_xact_commit{{{ns}}}[5m]))"),
        Record(
            VOLUME_FREE_RATIO,
            f"max by (namespace, persistentvolumeclaim) (kubelet_volume_stats_available_bytes{{{ns}}})"
            f" / max by (namespace, persistentvolumeclaim) (kubelet_volume_stats_capacity_bytes{{{ns}}})",
        ),
        Record(ROWS_WRITTEN_RATE, f"sum by (namespace) (rate(tsflow_generator_rows_written_total{{{ns}}}[5m]))"),
        Record(
            FLUSH_P95,
            f"histogram_quantile(0.95, sum by (namespace, le) (rate(tsflow_generator_flush_seconds_bucket{{{ns}}}[5m])))",
        ),
    ]


def alerts(scope: RuleScope, t: AlertThresholds) -> list[Alert]:
    """Every alert, scoped to our namespaces and jobs."""
    ns = scope.ns
    hpa = "namespace, horizontalpodautoscaler"
    return [
        Alert(
            "TimescaleK8sTargetDown",
            f"up{{{ns}, {scope.job}}} == 0",
            "5m", "warning",
            "Scrape target {{ $labels.job }} {{ $labels.namespace }}/{{ $labels.pod }} is down",
            "Prometheus cannot scrape {{ $labels.job }} on pod {{ $labels.namespace }}/{{ $labels.pod }}"
            " ({{ $labels.instance }}); its metrics and alerts are blind.",
        ),
        Alert(
            "TimescaleDBPostgresDown",
            f"pg_up{{{ns}}} == 0",
            "1m", "critical",
            "PostgreSQL on {{ $labels.namespace }}/{{ $labels.pod }} is not answering",
            "postgres_exporter on {{ $labels.namespace }}/{{ $labels.pod }} cannot connect to its PostgreSQL"
            " (pg_up == 0).",
        ),
        Alert(
            # The lock holder is the primary, or in a standby cluster (DR) its standby leader.
            "TimescaleDBNoPrimary",
            f'(sum by (namespace, scope) ({{__name__=~"patroni_primary|patroni_standby_leader", {ns}}}) < 1)'
            f" or (max by (namespace, scope) (patroni_cluster_unlocked{{{ns}}}) == 1)",
            "1m", "critical",
            "Patroni cluster {{ $labels.namespace }}/{{ $labels.scope }} has no primary",
            "No member of Patroni cluster {{ $labels.scope }} in namespace {{ $labels.namespace }} holds the"
            " leader lock (neither a primary nor, in a standby cluster, a standby leader); writes are failing.",
        ),
        Alert(
            "TimescaleDBStandbyNotReplaying",
            f"(patroni_standby_leader{{{ns}}} == 1) and on (namespace, pod) ("
            f"(changes(patroni_xlog_replayed_location{{{ns}}}[{_minutes(t.standby_replay_stall_minutes)}]) == 0)"
            f" or (patroni_xlog_paused{{{ns}}} == 1))",
            "5m", "critical",
            "Standby cluster {{ $labels.namespace }}/{{ $labels.scope }} stopped replaying",
            "The standby leader {{ $labels.namespace }}/{{ $labels.pod }} has replayed no WAL for "
            f"{_num(t.standby_replay_stall_minutes)} minutes, or its replay is paused: the disaster-recovery copy "
            "falls further behind the primary with every commit. Check its restore_command (pgBackRest archive-get) "
            "or its replication connection.",
        ),
        Alert(
            "TimescaleDBStandbyBehind",
            f"(time() - patroni_xlog_replayed_timestamp{{{ns}}}) > {_num(t.standby_behind_seconds)}"
            f" and on (namespace, pod) patroni_standby_leader{{{ns}}} == 1",
            "5m", "warning",
            "Standby cluster {{ $labels.namespace }}/{{ $labels.scope }} is {{ $value | humanizeDuration }} behind",
            "The newest transaction the standby leader {{ $labels.namespace }}/{{ $labels.pod }} has replayed"
            " committed {{ $value | humanizeDuration }} ago (threshold "
            f"{_num(t.standby_behind_seconds)}s): a promotion now would lose what the primary committed since.",
        ),
        Alert(
            "TimescaleDBMultiplePrimaries",
            f"sum by (namespace, scope) (patroni_primary{{{ns}}}) > 1",
            "1m", "critical",
            "Patroni cluster {{ $labels.namespace }}/{{ $labels.scope }} reports {{ $value }} primaries",
            "{{ $value }} members of Patroni cluster {{ $labels.scope }} in namespace {{ $labels.namespace }}"
            " claim to be primary (split brain); stop writes and check the DCS.",
        ),
        Alert(
            "TimescaleDBReplicationLagHigh",
            # A standby cluster's leader replays archived WAL (no WAL receiver, so the exporter reports the age of
            # its newest replayed commit, up to archive_timeout and more): TimescaleDBStandbyBehind watches it.
            f"pg_replication_lag_seconds{{{ns}}} > {_num(t.replication_lag_seconds)}"
            f" and on (namespace, pod) pg_replication_is_replica{{{ns}}} == 1"
            f" unless on (namespace, pod) patroni_standby_leader{{{ns}}} == 1",
            "5m", "warning",
            "Replica {{ $labels.namespace }}/{{ $labels.pod }} lags {{ $value | humanizeDuration }}",
            "Replica {{ $labels.namespace }}/{{ $labels.pod }} replayed its last transaction"
            " {{ $value | humanizeDuration }} ago (threshold "
            f"{_num(t.replication_lag_seconds)}s); reads from the replica service are stale.",
        ),
        Alert(
            "TimescaleDBConnectionsNearMax",
            f"{CONNECTIONS_RATIO}{{{ns}}} > {_num(t.connection_usage_ratio)}",
            "5m", "warning",
            "{{ $labels.namespace }}/{{ $labels.pod }} uses {{ $value | humanizePercentage }} of max_connections",
            "PostgreSQL on {{ $labels.namespace }}/{{ $labels.pod }} has {{ $value | humanizePercentage }} of"
            f" max_connections in use (threshold {_num(t.connection_usage_ratio)}); new clients will be refused.",
        ),
        Alert(
            "TimescaleK8sVolumeNearlyFull",
            f"{VOLUME_FREE_RATIO}{{{ns}}} < {_num(t.volume_free_ratio)}",
            "5m", "critical",
            "PVC {{ $labels.namespace }}/{{ $labels.persistentvolumeclaim }} has"
            " {{ $value | humanizePercentage }} free",
            "Volume {{ $labels.persistentvolumeclaim }} in namespace {{ $labels.namespace }} has only"
            f" {{{{ $value | humanizePercentage }}}} free (threshold {_num(t.volume_free_ratio)}); PostgreSQL stops"
            " when its volume is full.",
        ),
        Alert(
            "TimescaleK8sVolumeFillingUp",
            f"{VOLUME_FREE_RATIO}{{{ns}}} < 0.5 and on (namespace, persistentvolumeclaim)"
            f" predict_linear(kubelet_volume_stats_available_bytes{{{ns}}}[6h], 24 * 3600) < 0",
            "1h", "warning",
            "PVC {{ $labels.namespace }}/{{ $labels.persistentvolumeclaim }} will fill within 24h",
            "At the growth rate of the last 6 hours volume {{ $labels.persistentvolumeclaim }} in namespace"
            " {{ $labels.namespace }} ({{ $value | humanizePercentage }} free) runs out of space within a day.",
        ),
        Alert(
            "TsflowGeneratorIngestStalled",
            f"time() - max by (namespace) (tsflow_generator_last_flush_timestamp_seconds{{{ns}}})"
            f" > {_num(t.ingest_stall_minutes * 60)}",
            "1m", "critical",
            "No generator in {{ $labels.namespace }} has written for {{ $value | humanizeDuration }}",
            "The newest successful batch flush of any tsflow generator in namespace {{ $labels.namespace }} is"
            f" {{{{ $value | humanizeDuration }}}} old (threshold {_num(t.ingest_stall_minutes)}m); ingest is stalled.",
        ),
        Alert(
            "TsflowGeneratorRetrying",
            f"sum by (namespace, pod) (rate(tsflow_generator_retries_total{{{ns}}}[5m]))"
            f" > {_num(t.retry_rate_per_second)}",
            "10m", "warning",
            "Generator {{ $labels.namespace }}/{{ $labels.pod }} retries {{ $value | humanize }} writes/s",
            "Generator {{ $labels.namespace }}/{{ $labels.pod }} has retried {{ $value | humanize }} batch writes"
            f" per second for 10 minutes (threshold {_num(t.retry_rate_per_second)}/s); the database is"
            " refusing or timing out writes.",
        ),
        Alert(
            "TsflowGeneratorRowsRejected",
            f"sum by (namespace, pod) (increase(tsflow_generator_rows_rejected_total{{{ns}}}[15m])) > 0",
            "0m", "warning",
            "Generator {{ $labels.namespace }}/{{ $labels.pod }} refused {{ $value | humanize }} late rows",
            "Generator {{ $labels.namespace }}/{{ $labels.pod }} refused {{ $value | humanize }} rows in the last 15"
            " minutes: they were older than the database's late-data window (tsflow_late_data_window()), so raw"
            " retention would drop them before every rollup took them. Backfill closer to now, or migrate with a"
            " longer --retention first.",
        ),
        Alert(
            "TsflowGeneratorBufferNearlyFull",
            f"max by (namespace, pod) (tsflow_generator_buffer_batches{{{ns}}})"
            f" / max by (namespace, pod) (tsflow_generator_buffer_capacity_batches{{{ns}}} > 0)"
            f" > {_num(t.buffer_usage_ratio)}",
            "5m", "warning",
            "Generator {{ $labels.namespace }}/{{ $labels.pod }} buffer is {{ $value | humanizePercentage }} full",
            "The batch buffer of generator {{ $labels.namespace }}/{{ $labels.pod }} is"
            f" {{{{ $value | humanizePercentage }}}} full (threshold {_num(t.buffer_usage_ratio)}); it will start"
            " dropping or blocking soon.",
        ),
        Alert(
            "TsflowConsumerDataStale",
            f"max by (namespace, pod) (tsflow_consumer_data_freshness_seconds{{{ns}}}) > {_num(t.freshness_seconds)}",
            "5m", "warning",
            "Consumer {{ $labels.namespace }}/{{ $labels.pod }} sees data {{ $value | humanizeDuration }} old",
            "The newest data consumer {{ $labels.namespace }}/{{ $labels.pod }} can read is"
            f" {{{{ $value | humanizeDuration }}}} old (threshold {_num(t.freshness_seconds)}s); analysis runs on"
            " stale data (check ingest and replica lag).",
        ),
        Alert(
            "TsflowConsumerRunsFailing",
            f"sum by (namespace, pod) (increase(tsflow_consumer_errors_total{{{ns}}}[15m]))"
            f" / sum by (namespace, pod) (increase(tsflow_consumer_runs_total{{{ns}}}[15m]))"
            f" > {_num(t.consumer_error_ratio)}",
            "15m", "warning",
            "Consumer {{ $labels.namespace }}/{{ $labels.pod }} fails {{ $value | humanizePercentage }} of runs",
            "{{ $value | humanizePercentage }} of analysis runs of consumer {{ $labels.namespace }}/{{ $labels.pod }}"
            f" failed in the last 15 minutes (threshold {_num(t.consumer_error_ratio)}).",
        ),
        Alert(
            "TimescaleK8sAutoscalerAtMax",
            f"(max by ({hpa}) (kube_horizontalpodautoscaler_status_current_replicas{{{ns}}})"
            f" >= max by ({hpa}) (kube_horizontalpodautoscaler_spec_max_replicas{{{ns}}}))"
            f" and (max by ({hpa}) (kube_horizontalpodautoscaler_spec_max_replicas{{{ns}}})"
            f" > max by ({hpa}) (kube_horizontalpodautoscaler_spec_min_replicas{{{ns}}}))",
            _minutes(t.autoscaler_at_max_minutes), "warning",
            "Autoscaler {{ $labels.namespace }}/{{ $labels.horizontalpodautoscaler }} is pinned at max replicas",
            "HorizontalPodAutoscaler {{ $labels.horizontalpodautoscaler }} in namespace {{ $labels.namespace }}"
            f" has run at max_replicas for {_num(t.autoscaler_at_max_minutes)} minutes; raise max_replicas or"
            " add capacity.",
        ),
    ]


def timescaledb_job_alerts(scope: RuleScope, t: AlertThresholds) -> list[Alert]:
    """Silent TimescaleDB failures, from the exporter's custom queries (``components/timescaledb/
    exporter_queries.py``). Every member reports the same (replicated) catalog; only the primary's
    series count, so a lagging replica neither duplicates nor delays an alert."""
    ns = scope.ns
    primary = f"and on (namespace, pod) (pg_replication_is_replica{{{ns}}} == 0)"
    job = "namespace, job_id, proc_name, hypertable"
    where = "job {{ $labels.job_id }} ({{ $labels.proc_name }} on {{ $labels.hypertable }}) in {{ $labels.namespace }}"
    return [
        Alert(
            "TimescaleDBJobFailing",
            f"max by ({job}) (timescaledb_job_consecutive_failures{{{ns}}} {primary})"
            f" >= {_num(t.job_consecutive_failures)}",
            "10m", "warning",
            f"TimescaleDB {where} failed {{{{ $value }}}} times in a row",
            f"The last {{{{ $value }}}} runs of TimescaleDB {where} failed (threshold"
            f" {_num(t.job_consecutive_failures)}); a failing compression or retention policy lets the disk"
            " fill, a failing refresh leaves rollups stale. See timescaledb_information.job_errors.",
        ),
        Alert(
            "TimescaleDBJobNotSucceeding",
            f"max by ({job}) ((time() - timescaledb_job_last_success_timestamp_seconds{{{ns}}})"
            f" > {_num(t.job_missed_runs)} * timescaledb_job_schedule_interval_seconds{{{ns}}}"
            f" and on (namespace, pod, job_id) (timescaledb_job_scheduled{{{ns}}} == 1) {primary})",
            "10m", "warning",
            f"TimescaleDB {where} last succeeded {{{{ $value | humanizeDuration }}}} ago",
            f"Scheduled TimescaleDB {where} has not finished a run successfully for"
            f" {{{{ $value | humanizeDuration }}}}, more than {_num(t.job_missed_runs)} schedule intervals;"
            " check that the job scheduler runs (timescaledb.max_background_workers) and the job's errors.",
        ),
        Alert(
            "TimescaleDBCompressionBacklog",
            f"max by (namespace, hypertable) (timescaledb_compression_overdue_chunks{{{ns}}} {primary}) > 0",
            _minutes(t.compression_backlog_minutes), "warning",
            "{{ $value }} chunks of {{ $labels.namespace }}/{{ $labels.hypertable }} are overdue for compression",
            "Hypertable {{ $labels.hypertable }} in namespace {{ $labels.namespace }} has {{ $value }}"
            " uncompressed chunks older than its compression policy's compress_after plus one schedule"
            f" interval, for {_num(t.compression_backlog_minutes)} minutes; the disk fills at the uncompressed"
            " rate. Check the policy job's runs.",
        ),
        Alert(
            "TimescaleDBRollupLagging",
            f"max by (namespace, view) ((timescaledb_continuous_aggregate_watermark_lag_seconds{{{ns}}}"
            f" - timescaledb_continuous_aggregate_expected_lag_seconds{{{ns}}}) {primary})"
            f" > {_num(t.rollup_lag_grace_minutes * 60)}",
            "15m", "warning",
            "Rollup {{ $labels.namespace }}/{{ $labels.view }} lags {{ $value | humanizeDuration }}"
            " behind its refresh job",
            "The materialization watermark of continuous aggregate {{ $labels.view }} in namespace"
            " {{ $labels.namespace }} trails now by {{ $value | humanizeDuration }} more than its refresh job"
            f" allows (grace {_num(t.rollup_lag_grace_minutes)}m): the job fails or no new data arrives.",
        ),
    ]


def rule_groups(scope: RuleScope, thresholds: AlertThresholds) -> list[dict[str, Any]]:
    """The ``spec.groups`` of our PrometheusRule.

    One group, recording rules first: Prometheus evaluates a group's rules in order at the same instant,
    so an alert built on a recorded series sees this evaluation's value, not the previous interval's
    (with two groups the lag made alert values, and promtool's unit tests, depend on group timing).
    """
    return [
        {
            "name": f"{RULE_PREFIX}.rules",
            "interval": "30s",
            "rules": [*(r.to_rule() for r in recording_rules(scope)), *(a.to_rule() for a in alerts(scope, thresholds)),
                      *(a.to_rule() for a in timescaledb_job_alerts(scope, thresholds))],
        },
        # The pooler's own group (components/monitoring/pooler_rules.py), only when a pooler is scraped.
        *([pooler_rule_group(scope.ns)] if POOLER_JOB in scope.jobs else []),
    ]


def expressions(groups: Sequence[dict[str, Any]]) -> list[str]:
    """Every PromQL expression in some rule groups."""
    return [rule["expr"] for group in groups for rule in group["rules"]]


def recorded_names(groups: Sequence[dict[str, Any]]) -> set[str]:
    """Series names our recording rules create."""
    return {rule["record"] for group in groups for rule in group["rules"] if "record" in rule}


def render_rules_file(groups: Sequence[dict[str, Any]]) -> str:
    """The groups as a Prometheus rules file (what the operator writes for Prometheus)."""
    return yaml.safe_dump({"groups": list(groups)}, sort_keys=False, width=1000)
