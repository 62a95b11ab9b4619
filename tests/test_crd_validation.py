"""Custom resources (PodMonitor, PrometheusRule) against the prometheus-operator schemas: the validator is
shown catching typos, wrong types and missing fields, then every stack's custom resources must pass it."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from tests.crd_validation import MONITORING_API, crd_validator_available, custom_resource_problems
from tests.stacks import STACKS, run_stack

_UNAVAILABLE = crd_validator_available()
pytestmark = pytest.mark.skipif(_UNAVAILABLE is not None, reason=_UNAVAILABLE or "")


def _pod_monitor() -> dict[str, Any]:
    return {
        "apiVersion": MONITORING_API,
        "kind": "PodMonitor",
        "metadata": {"name": "db", "namespace": "monitoring", "labels": {"release": "kps"}},
        "spec": {
            "selector": {"matchLabels": {"app.kubernetes.io/name": "timescaledb"}},
            "namespaceSelector": {"matchNames": ["app"]},
            "podMetricsEndpoints": [{
                "port": "metrics",
                "path": "/metrics",
                "interval": "30s",
                "relabelings": [{"action": "replace", "targetLabel": "job", "replacement": "timescaledb"}],
            }],
        },
    }


def _prometheus_rule() -> dict[str, Any]:
    return {
        "apiVersion": MONITORING_API,
        "kind": "PrometheusRule",
        "metadata": {"name": "rules", "namespace": "monitoring"},
        "spec": {
            "groups": [{
                "name": "timescaledb",
                "rules": [
                    {"record": "job:up:sum", "expr": "sum by (job) (up)"},
                    {
                        "alert": "TimescaleDBDown",
                        "expr": 'up{job="timescaledb"} == 0',
                        "for": "5m",
                        "labels": {"severity": "critical"},
                        "annotations": {"summary": "TimescaleDB is down"},
                    },
                ],
            }],
        },
    }


def test_accepts_a_correct_pod_monitor_and_prometheus_rule() -> None:
    assert custom_resource_problems([_pod_monitor(), _prometheus_rule()]) == []


def test_ignores_objects_outside_monitoring_coreos_com() -> None:
    config_map = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "dataa": {}}
    assert custom_resource_problems([config_map]) == []


def test_rejects_a_misspelled_field() -> None:
    monitor = _pod_monitor()
    monitor["spec"]["podMetricEndpoints"] = monitor["spec"].pop("podMetricsEndpoints")
    assert custom_resource_problems([monitor]) == [
        'PodMonitor/db: unknown field "podMetricEndpoints" (at spec/podMetricEndpoints)'
    ]


@pytest.mark.parametrize(
    ("section", "typo", "path"),
    [
        ("metadata", "label", "metadata/label"),
        ("endpoint", "scrapeInterval", "spec/podMetricsEndpoints/0/scrapeInterval"),
        ("relabeling", "sourceLabel", "spec/podMetricsEndpoints/0/relabelings/0/sourceLabel"),
    ],
)
def test_rejects_unknown_fields_at_any_depth(section: str, typo: str, path: str) -> None:
    monitor = _pod_monitor()
    endpoint = monitor["spec"]["podMetricsEndpoints"][0]
    target = {"metadata": monitor["metadata"], "endpoint": endpoint, "relabeling": endpoint["relabelings"][0]}[section]
    target[typo] = "x"
    assert custom_resource_problems([monitor]) == [f'PodMonitor/db: unknown field "{typo}" (at {path})']


def test_free_form_maps_accept_any_key() -> None:
    monitor = _pod_monitor()
    monitor["spec"]["selector"]["matchLabels"]["anything.example.com/x"] = "y"
    monitor["metadata"]["annotations"] = {"whatever": "z"}
    assert custom_resource_problems([monitor]) == []


def test_rejects_a_wrong_type() -> None:
    monitor = _pod_monitor()
    monitor["spec"]["podMetricsEndpoints"][0]["interval"] = 30
    assert custom_resource_problems([monitor]) == [
        "PodMonitor/db: must be string (at spec/podMetricsEndpoints/0/interval)"
    ]


def test_rejects_a_rule_without_expr() -> None:
    rule = _prometheus_rule()
    del rule["spec"]["groups"][0]["rules"][1]["expr"]
    assert custom_resource_problems([rule]) == [
        'PrometheusRule/rules: missing required field "expr" (at spec/groups/0/rules/1)'
    ]


def test_reports_kinds_it_cannot_validate() -> None:
    unknown = {"apiVersion": MONITORING_API, "kind": "Probee", "metadata": {"name": "p"}, "spec": {}}
    problems = custom_resource_problems([unknown, _pod_monitor()])
    assert problems == [f"{MONITORING_API}/Probee/p: no schema for this kind, not validated"]


def test_reports_every_bad_object_in_one_call() -> None:
    good, bad = _pod_monitor(), copy.deepcopy(_pod_monitor())
    bad["metadata"]["name"] = "bad"
    bad["spec"]["podMetricsEndpoints"][0]["interval"] = 30
    rule = _prometheus_rule()
    del rule["spec"]["groups"][0]["rules"][0]["expr"]
    problems = custom_resource_problems([good, bad, rule])
    assert [p.split(":")[0] for p in problems] == ["PodMonitor/bad", "PrometheusRule/rules"]


@pytest.mark.parametrize("stack", STACKS)
def test_every_stack_custom_resource_passes(stack: str) -> None:
    custom = [m for m in run_stack(stack).manifests() if m.get("apiVersion") == MONITORING_API]
    kinds = {m["kind"] for m in custom}
    assert kinds >= {"PodMonitor", "PrometheusRule"}, f"{stack}: expected PodMonitors and a PrometheusRule, got {kinds}"
    assert custom_resource_problems(custom) == []
