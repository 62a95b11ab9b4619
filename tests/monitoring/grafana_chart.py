"""What a kube-prometheus-stack Grafana watches, computed from the chart's pinned values (data, not assumptions).

``grafana_of(release_values, namespace)`` merges the grafana subchart's defaults, kube-prometheus-stack's
``grafana:`` block and a release's own ``grafana:`` values (in Helm's order) from
``chart_values/kube-prometheus-stack-<version>.yaml`` and answers: would its dashboard / data source
sidecar load this object, and may its RBAC read that namespace at all?
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from components.monitoring.settings import KUBE_PROMETHEUS_STACK_VERSION

CHART_VALUES = Path(__file__).parent / "chart_values" / f"kube-prometheus-stack-{KUBE_PROMETHEUS_STACK_VERSION}.yaml"
_KINDS = {"both": frozenset({"ConfigMap", "Secret"}), "configmap": frozenset({"ConfigMap"}),
          "secret": frozenset({"Secret"})}


def _merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Helm's value coalescing: maps merge key by key, anything else replaces."""
    merged = dict(base)
    for key, value in override.items():
        merged[key] = _merge(merged[key], value) if isinstance(value, Mapping) and isinstance(
            merged.get(key), Mapping) else value
    return merged


@dataclass(frozen=True)
class Sidecar:
    """One k8s-sidecar container of the Grafana pod."""

    enabled: bool
    label: str
    label_value: str
    namespaces: frozenset[str] | None
    """Namespaces it lists objects in; None: all of them."""
    kinds: frozenset[str]

    def loads(self, manifest: Mapping[str, Any]) -> bool:
        """Whether the sidecar picks up this ConfigMap/Secret."""
        labels = manifest["metadata"].get("labels", {})
        return (
            self.enabled
            and manifest["kind"] in self.kinds
            and (self.namespaces is None or manifest["metadata"]["namespace"] in self.namespaces)
            and self.label in labels
            and (self.label_value == "" or labels[self.label] == self.label_value)
        )


@dataclass(frozen=True)
class Grafana:
    """A Grafana pod of the chart, in ``namespace``."""

    namespace: str
    namespaced_rbac: bool
    dashboards: Sidecar
    datasources: Sidecar

    def may_list(self, namespaces: frozenset[str] | None) -> bool:
        """Whether its ServiceAccount may list Secrets/ConfigMaps there (None: every namespace)."""
        return not self.namespaced_rbac or namespaces == frozenset({self.namespace})

    @property
    def reads_every_secret(self) -> bool:
        return not self.namespaced_rbac


def _sidecar(values: Mapping[str, Any], namespace: str) -> Sidecar:
    search = values.get("searchNamespace")
    if search is None:
        namespaces: frozenset[str] | None = frozenset({namespace})
    else:
        names = search.split(",") if isinstance(search, str) else list(search)
        namespaces = None if "ALL" in names else frozenset(names)
    return Sidecar(
        enabled=bool(values["enabled"]), label=values["label"], label_value=str(values.get("labelValue") or ""),
        namespaces=namespaces, kinds=_KINDS[values["resource"]],
    )


def chart_facts() -> dict[str, Any]:
    """The pinned values file."""
    return yaml.safe_load(CHART_VALUES.read_text())


def grafana_of(release_values: Mapping[str, Any] | None, namespace: str) -> Grafana:
    """The Grafana a kube-prometheus-stack release with ``release_values`` runs in ``namespace``."""
    facts = chart_facts()
    values = _merge(_merge(facts["grafana"], facts["kube-prometheus-stack"]["grafana"]),
                    (release_values or {}).get("grafana", {}))
    return Grafana(
        namespace=namespace,
        namespaced_rbac=bool(values["rbac"]["namespaced"]),
        dashboards=_sidecar(values["sidecar"]["dashboards"], namespace),
        datasources=_sidecar(values["sidecar"]["datasources"], namespace),
    )
