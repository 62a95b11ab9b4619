"""Settings of the two Monitoring modes and the checks they share (label syntax, durations, names)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from ..shared.names import DNS_LABEL, DNS_SUBDOMAIN
from ..shared.quantity import byte_size
from ..shared.types import Resources

KUBE_PROMETHEUS_STACK_VERSION = "79.10.0"
"""kube-prometheus-stack release of 2025-11-25 (prometheus-community/helm-charts tag kube-prometheus-stack-79.10.0)."""

KUBE_PROMETHEUS_STACK_REPO = "https://prometheus-community.github.io/helm-charts"

_LABEL_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9]$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9])?$")
_PROMETHEUS_DURATION = re.compile(r"^(?:[0-9]+y)?(?:[0-9]+w)?(?:[0-9]+d)?(?:[0-9]+h)?(?:[0-9]+m)?(?:[0-9]+s)?(?:[0-9]+ms)?$")
_EXACT_VERSION = re.compile(r"^[0-9]+\.[0-9]+\.[0-9]+$")


def check_dns_label(value: object, *, field: str) -> str:
    """A Kubernetes object name that must be a DNS-1123 label (namespaces, job names)."""
    if not isinstance(value, str) or not DNS_LABEL.match(value):
        raise ValueError(f"{field} ({value!r}) must be a DNS label: lowercase letters, digits and '-', at most 63")
    return value


def check_label_key(key: object, *, field: str) -> str:
    """A Kubernetes label key: optional DNS-subdomain prefix, '/', and a name of at most 63 characters."""
    if not isinstance(key, str) or not key:
        raise ValueError(f"{field} key ({key!r}) must be a non-empty string")
    prefix, _, name = key.rpartition("/")
    if (prefix and not DNS_SUBDOMAIN.match(prefix)) or not _LABEL_NAME.match(name):
        raise ValueError(f"{field} key ({key!r}) is not a valid Kubernetes label key")
    return key


def check_labels(labels: Mapping[str, str], *, field: str, allow_empty: bool = True) -> dict[str, str]:
    """Kubernetes labels as a plain dict, or ``ValueError`` naming ``field`` and the bad pair."""
    if not isinstance(labels, Mapping):
        raise ValueError(f"{field} ({labels!r}) must be a mapping of label key to value")
    if not labels and not allow_empty:
        raise ValueError(f"{field} must not be empty")
    for key, value in labels.items():
        check_label_key(key, field=field)
        if not isinstance(value, str) or not _LABEL_VALUE.match(value):
            raise ValueError(f"{field}[{key!r}] ({value!r}) is not a valid label value (63 chars, alphanumerics, -_.)")
    return dict(labels)


def _check_label_pair(pair: object, *, field: str) -> tuple[str, str]:
    if not isinstance(pair, tuple) or len(pair) != 2:
        raise ValueError(f"{field} ({pair!r}) must be a (key, value) tuple")
    key, value = pair
    check_labels({key: value}, field=field)
    return key, value


@dataclass(frozen=True, kw_only=True)
class InstallSettings:
    """How to install kube-prometheus-stack when ``mode="install"``."""

    chart_version: str = KUBE_PROMETHEUS_STACK_VERSION
    """Exact kube-prometheus-stack chart version; default ``KUBE_PROMETHEUS_STACK_VERSION`` (79.10.0)."""
    monitoring_namespace: str = "monitoring"
    """Namespace of Prometheus, Grafana and the operator; default ``monitoring``."""
    create_namespace: bool = True
    """Create ``monitoring_namespace`` (labelled for node-exporter's host access); default True."""
    prometheus_retention: str = "7d"
    """How long Prometheus keeps samples (Prometheus duration); default ``7d``."""
    prometheus_storage_size: str = "20Gi"
    """Size of Prometheus' PersistentVolumeClaim; default ``20Gi``."""
    storage_class: str | None = None
    """StorageClass of that claim; default none (the cluster's default class)."""
    prometheus_resources: Resources = Resources(cpu_request="500m", memory_request="2Gi", memory_limit="2Gi")
    """Prometheus container resources; default 500m CPU, 2Gi memory."""
    grafana_resources: Resources = Resources(cpu_request="100m", memory_request="256Mi", memory_limit="512Mi")
    """Grafana container resources; default 100m CPU, 256Mi memory (512Mi limit)."""

    def check(self, field: str = "install") -> InstallSettings:
        """Raise ``ValueError`` naming the first bad field."""
        if not isinstance(self.chart_version, str) or not _EXACT_VERSION.match(self.chart_version):
            raise ValueError(
                f"{field}.chart_version ({self.chart_version!r}) must be an exact chart version like '79.10.0'"
            )
        check_dns_label(self.monitoring_namespace, field=f"{field}.monitoring_namespace")
        if not isinstance(self.prometheus_retention, str) or self.prometheus_retention in ("", "0") \
                or not _PROMETHEUS_DURATION.match(self.prometheus_retention):
            raise ValueError(
                f"{field}.prometheus_retention ({self.prometheus_retention!r}) must be a Prometheus duration like '7d'"
            )
        byte_size(self.prometheus_storage_size, field=f"{field}.prometheus_storage_size")
        if self.storage_class is not None and not DNS_SUBDOMAIN.match(str(self.storage_class)):
            raise ValueError(f"{field}.storage_class ({self.storage_class!r}) is not a valid StorageClass name")
        self.prometheus_resources.check(f"{field}.prometheus_resources")
        self.grafana_resources.check(f"{field}.grafana_resources")
        return self


@dataclass(frozen=True, kw_only=True)
class ExistingSettings:
    """How to plug into a Prometheus Operator and Grafana the cluster already runs (``mode="existing"``)."""

    monitor_labels: Mapping[str, str] = field(default_factory=dict)
    """Labels the existing Prometheus' pod-monitor and rule selectors require, e.g. ``{"release": "kps"}``; default none."""
    dashboard_label: tuple[str, str] = ("grafana_dashboard", "1")
    """Label the Grafana dashboard sidecar watches for; default ``grafana_dashboard=1``."""
    datasource_label: tuple[str, str] = ("grafana_datasource", "1")
    """Label the Grafana data source sidecar watches for; default ``grafana_datasource=1``."""
    grafana_namespace: str | None = None
    """Namespace Grafana runs in: its sidecars search their own namespace unless told otherwise, so our
    dashboards and data source go there; default none (the Monitoring ``namespace``)."""

    def check(self, field: str = "existing") -> ExistingSettings:
        """Raise ``ValueError`` naming the first bad field."""
        check_labels(self.monitor_labels, field=f"{field}.monitor_labels")
        _check_label_pair(self.dashboard_label, field=f"{field}.dashboard_label")
        _check_label_pair(self.datasource_label, field=f"{field}.datasource_label")
        if self.grafana_namespace is not None:
            check_dns_label(self.grafana_namespace, field=f"{field}.grafana_namespace")
        return self


INSTALL_DASHBOARD_LABEL = ExistingSettings().dashboard_label
INSTALL_DATASOURCE_LABEL = ExistingSettings().datasource_label
"""The sidecar labels we configure on the Grafana we install (the chart's own defaults)."""
