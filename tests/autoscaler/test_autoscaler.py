"""Autoscaler under mocks: the HPA targets the real object, metrics render, defaults fit the target type."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pulumi
import pulumi_kubernetes as k8s
import pytest

from components.autoscaler import (
    DATABASE_SCALE_DOWN,
    DATABASE_SCALE_UP,
    Autoscaler,
    AutoscalerArgs,
    ExternalMetric,
    PodsMetric,
    ScalingPolicy,
)
from components.shared.security import container_security_context
from components.shared.types import Resources, ScaleTarget
from tests.checks import schema_problems, wiring_problems
from tests.harness import Recording, run_program

NAMESPACE = "data"
HPA = "kubernetes:autoscaling/v2:HorizontalPodAutoscaler"
RESOURCES = Resources(cpu_request="250m", memory_request="256Mi")
LABELS = {"app.kubernetes.io/name": "target"}


def _pod_template(name: str) -> k8s.core.v1.PodTemplateSpecArgs:
    return k8s.core.v1.PodTemplateSpecArgs(
        metadata=k8s.meta.v1.ObjectMetaArgs(labels=LABELS),
        spec=k8s.core.v1.PodSpecArgs(
            containers=[
                k8s.core.v1.ContainerArgs(
                    name=name,
                    image="registry.example/app:1.0.0",
                    ports=[k8s.core.v1.ContainerPortArgs(name="main", container_port=5432)],
                    resources=RESOURCES.to_args(),
                    security_context=container_security_context(),
                )
            ]
        ),
    )


def deployment_target(container_resources: Sequence[Resources] = (RESOURCES,)) -> ScaleTarget:
    deployment = k8s.apps.v1.Deployment(
        "web",
        metadata=k8s.meta.v1.ObjectMetaArgs(namespace=NAMESPACE),
        spec=k8s.apps.v1.DeploymentSpecArgs(selector=k8s.meta.v1.LabelSelectorArgs(match_labels=LABELS), template=_pod_template("web")),
    )
    return ScaleTarget.of(deployment, container_resources=container_resources, min_replicas_floor=1, stateful=False)


def database_target(floor: int = 2) -> ScaleTarget:
    headless = k8s.core.v1.Service(
        "tsdb-headless",
        metadata=k8s.meta.v1.ObjectMetaArgs(namespace=NAMESPACE),
        spec=k8s.core.v1.ServiceSpecArgs(cluster_ip="None", selector=LABELS, ports=[k8s.core.v1.ServicePortArgs(name="pg", port=5432, target_port="main")]),
    )
    statefulset = k8s.apps.v1.StatefulSet(
        "tsdb",
        metadata=k8s.meta.v1.ObjectMetaArgs(namespace=NAMESPACE),
        spec=k8s.apps.v1.StatefulSetSpecArgs(
            replicas=floor,
            service_name=headless.metadata.name,
            selector=k8s.meta.v1.LabelSelectorArgs(match_labels=LABELS),
            template=_pod_template("postgres"),
        ),
    )
    return ScaleTarget.of(statefulset, container_resources=[RESOURCES], min_replicas_floor=floor, stateful=True)


def run_autoscaler(make_target: Any = deployment_target, **fields: Any) -> tuple[Recording, dict[str, Autoscaler]]:
    made: dict[str, Autoscaler] = {}

    def program() -> None:
        made["autoscaler"] = Autoscaler("scaler", AutoscalerArgs(namespace=NAMESPACE, target=make_target(), **{"max_replicas": 5, **fields}))
        pulumi.export("hpa_name", made["autoscaler"].name)

    return run_program(program), made


def hpa_spec(recording: Recording) -> dict[str, Any]:
    return recording.one(HPA, "scaler").manifest()["spec"]


@pytest.mark.parametrize(
    ("make_target", "type_token", "api_version", "kind"),
    [
        (deployment_target, "kubernetes:apps/v1:Deployment", "apps/v1", "Deployment"),
        (database_target, "kubernetes:apps/v1:StatefulSet", "apps/v1", "StatefulSet"),
    ],
)
def test_hpa_targets_the_object_it_was_given(make_target: Any, type_token: str, api_version: str, kind: str) -> None:
    recording, made = run_autoscaler(make_target, min_replicas=2)
    target = recording.one(type_token).manifest()
    ref = hpa_spec(recording)["scaleTargetRef"]
    assert ref == {"apiVersion": api_version, "kind": kind, "name": target["metadata"]["name"]}
    hpa = recording.one(HPA, "scaler")
    assert recording.by_urn(hpa.parent).type == "timescale-k8s:index:Autoscaler"
    assert hpa.manifest()["metadata"]["namespace"] == NAMESPACE
    assert hpa.manifest()["metadata"]["labels"]["app.kubernetes.io/component"] == "autoscaler"
    assert hpa.manifest()["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "pulumi"
    assert schema_problems(recording.manifests()) == []
    assert wiring_problems(recording.manifests()) == []
    assert made["autoscaler"].max_replicas == 5


def test_name_output_is_the_hpa_name() -> None:
    recording, _ = run_autoscaler()
    assert recording.outputs["hpa_name"] == recording.one(HPA, "scaler").manifest()["metadata"]["name"]


def test_default_metric_is_cpu_at_70_percent() -> None:
    recording, _ = run_autoscaler()
    spec = hpa_spec(recording)
    assert (spec["minReplicas"], spec["maxReplicas"]) == (1, 5)
    assert spec["metrics"] == [{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}}}]


def test_memory_pods_and_external_metrics_render() -> None:
    recording, _ = run_autoscaler(
        cpu_utilization=None,
        memory_utilization=80,
        pods_metrics=[PodsMetric(metric_name="tsflow_buffer_rows", target_average_value="2k")],
        external_metrics=[
            ExternalMetric(metric_name="queue_depth", target_value="100", selector={"queue": "ingest"}),
            ExternalMetric(metric_name="lag_seconds", target_average_value="500m"),
        ],
    )
    metrics = hpa_spec(recording)["metrics"]
    assert metrics[0] == {"type": "Resource", "resource": {"name": "memory", "target": {"type": "Utilization", "averageUtilization": 80}}}
    assert metrics[1] == {
        "type": "Pods",
        "pods": {"metric": {"name": "tsflow_buffer_rows"}, "target": {"type": "AverageValue", "averageValue": "2k"}},
    }
    assert metrics[2]["external"] == {
        "metric": {"name": "queue_depth", "selector": {"matchLabels": {"queue": "ingest"}}},
        "target": {"type": "Value", "value": "100"},
    }
    assert metrics[3]["external"]["target"] == {"type": "AverageValue", "averageValue": "500m"}
    assert schema_problems(recording.manifests()) == []


def test_database_defaults_scale_slowly_one_pod_at_a_time() -> None:
    recording, _ = run_autoscaler(database_target, min_replicas=2)
    behavior = hpa_spec(recording)["behavior"]
    assert behavior["scaleDown"] == {
        "stabilizationWindowSeconds": 600,
        "selectPolicy": "Max",
        "policies": [{"type": "Pods", "value": 1, "periodSeconds": 300}],
    }
    assert behavior["scaleUp"] == {
        "stabilizationWindowSeconds": 120,
        "selectPolicy": "Max",
        "policies": [{"type": "Pods", "value": 1, "periodSeconds": 120}],
    }
    assert DATABASE_SCALE_DOWN.max_pods_per_period == DATABASE_SCALE_UP.max_pods_per_period == 1


def test_stateless_defaults_scale_up_fast() -> None:
    recording, _ = run_autoscaler()
    behavior = hpa_spec(recording)["behavior"]
    assert behavior["scaleUp"]["stabilizationWindowSeconds"] == 0
    assert {(p["type"], p["value"], p["periodSeconds"]) for p in behavior["scaleUp"]["policies"]} == {("Pods", 4, 60), ("Percent", 100, 60)}
    assert behavior["scaleDown"]["stabilizationWindowSeconds"] == 300


def test_explicit_policy_overrides_the_default() -> None:
    recording, _ = run_autoscaler(scale_up=ScalingPolicy(stabilization_window_seconds=30, max_pods_per_period=2, period_seconds=30))
    assert hpa_spec(recording)["behavior"]["scaleUp"] == {
        "stabilizationWindowSeconds": 30,
        "selectPolicy": "Max",
        "policies": [{"type": "Pods", "value": 2, "periodSeconds": 30}],
    }


def _policy(**overrides: int) -> ScalingPolicy:
    return ScalingPolicy(**{"stabilization_window_seconds": 60, "max_pods_per_period": 1, "period_seconds": 60, **overrides})


BAD_ARGS = [
    (deployment_target, {"min_replicas": 0}, r"autoscaler.min_replicas \(0\) must be >= 1"),
    (deployment_target, {"min_replicas": 3, "max_replicas": 2}, r"autoscaler.max_replicas \(2\) must be >= min_replicas \(3\)"),
    (deployment_target, {"cpu_utilization": 0}, r"autoscaler.cpu_utilization \(0\) must be between 1 and 100"),
    (deployment_target, {"cpu_utilization": 150}, r"autoscaler.cpu_utilization \(150\) must be between 1 and 100"),
    (deployment_target, {"memory_utilization": 101}, r"autoscaler.memory_utilization \(101\)"),
    (deployment_target, {"cpu_utilization": None}, "autoscaler has no metric"),
    (database_target, {"min_replicas": 1}, r"autoscaler.min_replicas \(1\) must be >= the database's configured replicas \(2\)"),
    (lambda: deployment_target(()), {}, r"autoscaler.cpu_utilization \(70\) needs cpu requests"),
    (deployment_target, {"pods_metrics": [PodsMetric(metric_name="", target_average_value="1")]}, r"autoscaler.pods_metrics\[0\].metric_name"),
    (deployment_target, {"pods_metrics": [PodsMetric(metric_name="rows", target_average_value="lots")]}, r"pods_metrics\[0\].target_average_value"),
    (deployment_target, {"external_metrics": [ExternalMetric(metric_name="q")]}, r"external_metrics\[0\] must set exactly one"),
    (
        deployment_target,
        {"external_metrics": [ExternalMetric(metric_name="q", target_value="1", target_average_value="1")]},
        r"external_metrics\[0\] must set exactly one",
    ),
    (deployment_target, {"scale_up": _policy(period_seconds=0)}, r"autoscaler.scale_up.period_seconds \(0\) must be between 1 and 1800"),
    (deployment_target, {"scale_down": _policy(stabilization_window_seconds=4000)}, r"scale_down.stabilization_window_seconds \(4000\)"),
    (deployment_target, {"scale_up": _policy(max_pods_per_period=0)}, r"scale_up.max_pods_per_period \(0\) must be >= 1"),
    (database_target, {"min_replicas": 2, "scale_down": _policy(max_pods_per_period=2)}, "scale_down of a database must remove one pod"),
]


@pytest.mark.parametrize(("make_target", "fields", "message"), BAD_ARGS)
def test_bad_args_are_rejected_before_the_hpa_exists(make_target: Any, fields: dict[str, Any], message: str) -> None:
    created: list[str] = []

    def program() -> None:
        target = make_target()
        Autoscaler("scaler", AutoscalerArgs(namespace=NAMESPACE, target=target, **{"max_replicas": 5, **fields}))
        created.append("autoscaler")

    with pytest.raises(ValueError, match=message):
        run_program(program)
    assert created == []
