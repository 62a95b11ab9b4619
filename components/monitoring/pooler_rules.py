"""Alerts and recording rules for the PgBouncer pooler, as their own rule group.

Included in the PrometheusRule (``rules.rule_groups``) when a scrape target with the pooler's job
exists. Metric names are those of prometheus-community/pgbouncer_exporter (``SHOW POOLS``, ``SHOW
DATABASES``); every selector is scoped to our namespaces and the pooler's job.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any

from ..pooler import SCRAPE_JOB

POOLER_JOB = SCRAPE_JOB
SATURATION_RATIO = "timescale_k8s:pgbouncer_server_connections:usage_ratio"


@dataclass(frozen=True, kw_only=True)
class PoolerThresholds:
    """Where the pooler alerts fire."""

    client_wait_seconds: float = 1.0
    """Age of the oldest client waiting for a server connection that alerts (whole seconds); default 1."""
    pool_saturation_ratio: float = 0.9
    """Share of a database's server connections (``max_db_connections``) in use that, with clients
    queueing, alerts; default 0.9."""

    def check(self, field: str = "pooler_thresholds") -> PoolerThresholds:
        """Raise ``ValueError`` naming ``field.<name>`` for a value outside its range."""
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"{field}.{f.name} ({value!r}) must be a finite number")
        if not 0 < self.client_wait_seconds <= 3600:
            raise ValueError(f"{field}.client_wait_seconds ({self.client_wait_seconds}) must be > 0 and <= 3600")
        if not 0 < self.pool_saturation_ratio <= 1:
            raise ValueError(f"{field}.pool_saturation_ratio ({self.pool_saturation_ratio}) must be > 0 and <= 1")
        return self


def pooler_rule_group(namespace_matcher: str, thresholds: PoolerThresholds = PoolerThresholds()) -> dict[str, Any]:
    """The pooler's group: one recording rule, then its alerts (same group, so they see this evaluation)."""
    thresholds.check()
    sel = f'{namespace_matcher}, job="{POOLER_JOB}"'
    by = "namespace, pod, name"
    wait = f"{thresholds.client_wait_seconds:g}"
    ratio = f"{thresholds.pool_saturation_ratio:g}"
    rules: list[dict[str, Any]] = [
        {
            "record": SATURATION_RATIO,
            "expr": f"max by ({by}) (pgbouncer_databases_current_connections{{{sel}}})"
                    f" / max by ({by}) (pgbouncer_databases_max_connections{{{sel}}} > 0)",
        },
        _alert(
            "PgBouncerDown", f"pgbouncer_up{{{sel}}} == 0", "2m", "critical",
            "PgBouncer exporter on {{ $labels.namespace }}/{{ $labels.pod }} cannot reach PgBouncer",
            "The exporter sidecar of pooler pod {{ $labels.namespace }}/{{ $labels.pod }} gets no answer from"
            " PgBouncer's admin console (pgbouncer_up == 0); the pod's clients are probably failing too.",
        ),
        _alert(
            "PgBouncerClientWaitHigh",
            f"max by (namespace, pod, database) (pgbouncer_pools_client_maxwait_seconds{{{sel}}}) >= {wait}",
            "5m", "warning",
            "Clients of {{ $labels.namespace }}/{{ $labels.pod }} wait {{ $value }}s for a server connection",
            "The oldest client of database {{ $labels.database }} on pooler pod {{ $labels.namespace }}/"
            "{{ $labels.pod }} has waited {{ $value }}s for a server connection"
            f" (threshold {wait}s) for 5 minutes: the pool is too small for the load, or the database is slow.",
        ),
        _alert(
            "PgBouncerPoolSaturated",
            f"{SATURATION_RATIO}{{{namespace_matcher}}} >= {ratio}"
            f" and on (namespace, pod) sum by (namespace, pod) (pgbouncer_pools_client_waiting_connections{{{sel}}}) > 0",
            "10m", "warning",
            "Pool {{ $labels.name }} on {{ $labels.namespace }}/{{ $labels.pod }} uses"
            " {{ $value | humanizePercentage }} of its server connections",
            "Pool {{ $labels.name }} on pooler pod {{ $labels.namespace }}/{{ $labels.pod }} has"
            f" {{{{ $value | humanizePercentage }}}} of its server connections in use (threshold {ratio}) and"
            " clients are queueing: raise poolSize (within max_connections) or add pooler pods.",
        ),
    ]
    return {"name": "timescale_k8s.pooler.rules", "interval": "30s", "rules": rules}


def _alert(name: str, expr: str, for_: str, severity: str, summary: str, description: str) -> dict[str, Any]:
    return {
        "alert": name,
        "expr": expr,
        "for": for_,
        "labels": {"severity": severity, "part_of": "timescale-k8s"},
        "annotations": {"summary": summary, "description": description},
    }
