"""Whole program, per stack and mode: the data source and dashboards land where that Grafana looks, and
the database NetworkPolicy lets that Grafana connect.

"Where it looks" is computed from kube-prometheus-stack 79.10.0's pinned values (grafana_chart.py): in
install mode with our release values, in existing mode with the chart's defaults (prod's Grafana is a
default kube-prometheus-stack release beside its Prometheus).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import pytest

from tests.checks import selects
from tests.harness import Recording
from tests.monitoring.grafana_chart import Grafana, grafana_of
from tests.stacks import run_main, stack_file_config

RELEASE = "kubernetes:helm.sh/v3:Release"
NETWORK_POLICY = "kubernetes:networking.k8s.io/v1:NetworkPolicy"
POSTGRES_PORT = 5432


def admits(policy: Mapping[str, Any], *, namespace: str, labels: Mapping[str, str], port: int) -> bool:
    """Whether a NetworkPolicy (in its own namespace) lets a pod with ``labels`` in ``namespace`` reach ``port``."""
    own = policy["metadata"]["namespace"]
    for rule in policy["spec"].get("ingress", []):
        if not any(p.get("port") == port for p in rule.get("ports", [])):
            continue
        for peer in rule.get("from", []):
            ns_selector = peer.get("namespaceSelector")
            in_namespace = (namespace == own) if ns_selector is None else selects(
                ns_selector, {"kubernetes.io/metadata.name": namespace})
            if in_namespace and selects(peer.get("podSelector", {}), labels):
                return True
    return False


def _config(stack: str, monitoring: dict[str, Any] | None = None, render_dir: str | None = None) -> dict[str, Any]:
    config = copy.deepcopy(stack_file_config(stack))
    if monitoring is not None:
        config["timescale-k8s:monitoring"] = monitoring
    if render_dir is not None:
        config["timescale-k8s:cluster"]["renderDir"] = render_dir
    return config


CASES: dict[str, tuple[str, dict[str, Any] | None, str | None, str | None]] = {
    # name: (stack file, monitoring config override, renderDir, namespace the existing Grafana runs in)
    "dev-install": ("dev", None, None, None),
    # Pulumi.prod.yaml: a default kube-prometheus-stack release in 'monitoring' (Grafana beside Prometheus).
    "prod-existing": ("prod", None, None, "monitoring"),
    "prod-rendered": ("prod", None, "rendered/prod", "monitoring"),
    "existing-own-grafana-namespace": ("prod", {"mode": "existing", "existing": {
        "monitorLabels": {"release": "kps"}, "prometheusNamespace": "prometheus", "grafanaNamespace": "grafana"}},
        None, "grafana"),
}


@pytest.fixture(scope="module", params=sorted(CASES))
def case(request: pytest.FixtureRequest) -> tuple[Recording, Grafana, dict[str, str]]:
    """The recording, the Grafana this stack feeds and the labels its pods carry."""
    stack, monitoring, render_dir, existing_grafana = CASES[request.param]
    recording = run_main(stack, _config(stack, monitoring, render_dir))
    releases = recording.of_type(RELEASE)
    if existing_grafana is None:
        (release,) = releases
        values = release.inputs["values"]
        return recording, grafana_of(values, release.inputs["namespace"]), values["grafana"]["podLabels"]
    assert not releases
    # Existing mode: the operator gives Grafana's pods the client labels (README); chart defaults otherwise.
    return recording, grafana_of({}, existing_grafana), recording.outputs["clientLabels"]


def test_datasource_and_dashboards_are_where_grafana_looks(case: tuple[Recording, Grafana, dict[str, str]]) -> None:
    recording, grafana, _ = case
    manifests = recording.manifests()
    datasources = [m for m in manifests if m["kind"] == "Secret" and "timescaledb-datasource.yaml" in m.get("stringData", {})]
    dashboards = [m for m in manifests if m["kind"] == "ConfigMap" and any(k.endswith(".json") for k in m.get("data", {}))]
    pooled = any(r.type == "timescale-k8s:index:Pooler" for r in recording.resources)  # adds the PgBouncer dashboard
    # Render mode keeps the data source and the SQL dashboard.
    assert len(datasources) == 1 and len(dashboards) == 3 + pooled
    assert grafana.datasources.loads(datasources[0])
    assert all(grafana.dashboards.loads(board) for board in dashboards)
    assert grafana.may_list(grafana.datasources.namespaces) and grafana.may_list(grafana.dashboards.namespaces)


def test_database_network_policy_admits_grafana(case: tuple[Recording, Grafana, dict[str, str]]) -> None:
    recording, grafana, pod_labels = case
    (policy,) = [r.manifest() for r in recording.of_type(NETWORK_POLICY) if r.name == "timescaledb-netpol"]
    assert pod_labels
    assert admits(policy, namespace=grafana.namespace, labels=pod_labels, port=POSTGRES_PORT)
    assert not admits(policy, namespace=grafana.namespace, labels={"app": "grafana"}, port=POSTGRES_PORT)
    assert not admits(policy, namespace="elsewhere", labels=pod_labels, port=POSTGRES_PORT)
