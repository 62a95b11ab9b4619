"""The manifest checks themselves must catch what they claim to catch (each is shown failing)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from tests.checks import schema_problems, selects, wiring_problems


def _deployment() -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "ns"},
        "spec": {
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web", "tier": "front"}},
                "spec": {
                    "containers": [
                        {
                            "name": "web",
                            "image": "nginx:1.27.3",
                            "ports": [{"name": "http", "containerPort": 8080}],
                            "env": [{"name": "PW", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "password"}}}],
                        }
                    ]
                },
            },
        },
    }


def _objects() -> list[dict[str, Any]]:
    return [
        _deployment(),
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "creds", "namespace": "ns"}, "stringData": {"password": "x"}},
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "web", "namespace": "ns"},
            "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80, "targetPort": "http"}]},
        },
        {
            "apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "web", "namespace": "ns"},
            "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}, "minReplicas": 1, "maxReplicas": 3},
        },
    ]


def test_valid_objects_have_no_problems() -> None:
    objects = _objects()
    assert schema_problems(objects) == []
    assert wiring_problems(objects) == []


def test_schema_check_rejects_unknown_field_and_wrong_type() -> None:
    broken = _deployment()
    broken["spec"]["replicaz"] = 3
    broken["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = "8080"
    problems = schema_problems([broken])
    assert len(problems) == 1 and "Deployment/web" in problems[0]
    only_type = _deployment()
    only_type["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = "8080"
    assert any("8080" in p for p in schema_problems([only_type]))
    only_unknown = _deployment()
    only_unknown["spec"]["replicaz"] = 3
    assert any("replicaz" in p for p in schema_problems([only_unknown]))


def test_custom_resources_are_skipped_not_failed() -> None:
    monitor = {"apiVersion": "monitoring.coreos.com/v1", "kind": "PodMonitor", "metadata": {"name": "m"}, "spec": {}}
    assert schema_problems([monitor]) == []


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        (("2", "spec", "selector"), {"app": "other"}, "matches no pod template"),
        (("2", "spec", "ports", "0", "targetPort"), "metrics", "does not declare"),
        (("3", "spec", "scaleTargetRef", "name"), "nope", "names no object"),
        (("3", "spec", "scaleTargetRef", "apiVersion"), "extensions/v1beta1", "apiVersion"),
        (("1", "stringData"), {"pass": "x"}, "lacks"),
        (("1", "metadata", "name"), "other", "missing Secret"),
        (("0", "spec", "selector", "matchLabels"), {"app": "api"}, "does not match its pod template"),
    ],
)
def test_wiring_check_catches_each_broken_reference(path: tuple[str, ...], value: Any, expected: str) -> None:
    objects = copy.deepcopy(_objects())
    node: Any = objects
    for step in path[:-1]:
        node = node[int(step)] if isinstance(node, list) else node[step]
    node[path[-1]] = value
    problems = wiring_problems(objects)
    assert any(expected in p for p in problems), problems


def test_selects_supports_expressions() -> None:
    labels = {"app": "db", "role": "replica"}
    assert selects({"matchLabels": {"app": "db"}, "matchExpressions": [{"key": "role", "operator": "In", "values": ["replica"]}]}, labels)
    assert not selects({"matchExpressions": [{"key": "role", "operator": "NotIn", "values": ["replica"]}]}, labels)
    assert not selects({"matchExpressions": [{"key": "zone", "operator": "Exists"}]}, labels)


def _patroni_objects(
    service_role: str, patroni_labels: str = '{"app": "db"}', scope_label_value: str = "db"
) -> list[dict[str, Any]]:
    patroni_yaml = "scope: db\nkubernetes:\n  role_label: role\n  leader_label_value: primary\n  follower_label_value: replica\n"
    return [
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "patroni"}, "data": {"patroni.yaml": patroni_yaml}},
        {
            "apiVersion": "apps/v1",
            "kind": "StatefulSet",
            "metadata": {"name": "db"},
            "spec": {
                "serviceName": "db",
                "selector": {"matchLabels": {"app": "db"}},
                "template": {
                    "metadata": {"labels": {"app": "db", "cluster-name": scope_label_value}},
                    "spec": {
                        "volumes": [{"name": "config", "configMap": {"name": "patroni"}}],
                        "containers": [
                            {
                                "name": "patroni",
                                "image": "timescale/timescaledb-ha:pg17.4-ts2.18.2",
                                "ports": [{"name": "postgresql", "containerPort": 5432}],
                                "env": [{"name": "PATRONI_KUBERNETES_LABELS", "value": patroni_labels}],
                                "volumeMounts": [{"name": "config", "mountPath": "/etc/patroni"}],
                            }
                        ],
                    },
                },
            },
        },
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "db"}, "spec": {"clusterIP": "None", "selector": {"app": "db"}, "ports": [{"port": 5432}]}},
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "db-primary"},
            "spec": {"selector": {"app": "db", "role": service_role}, "ports": [{"port": 5432, "targetPort": "postgresql"}]},
        },
    ]


def test_role_label_that_patroni_sets_at_run_time_is_selectable() -> None:
    assert wiring_problems(_patroni_objects("primary")) == []


def test_pre_patroni_4_master_role_value_selects_nothing() -> None:
    problems = wiring_problems(_patroni_objects("master"))
    assert any("Service/db-primary" in p and "matches no pod template" in p for p in problems), problems


def test_patroni_labels_must_be_pod_labels() -> None:
    problems = wiring_problems(_patroni_objects("primary", patroni_labels='{"app": "database"}'))
    assert any("PATRONI_KUBERNETES_LABELS" in p for p in problems), problems


def test_patroni_pods_must_carry_the_scope_label() -> None:
    problems = wiring_problems(_patroni_objects("primary", scope_label_value="other"))
    assert any("cluster-name=db" in p for p in problems), problems
