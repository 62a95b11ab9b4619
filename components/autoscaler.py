"""A HorizontalPodAutoscaler (autoscaling/v2) for a Deployment or a database StatefulSet.

The target is a ``ScaleTarget`` built from the scaled object's own outputs, so the HPA's
``scaleTargetRef`` can never drift from the object's real apiVersion, kind and name.

Scaling behaviour defaults depend on what is scaled:

* a database (``target.stateful``) clones a replica for minutes (basebackup, WAL catch-up), so it
  scales up one pod per 2 minutes after a 2-minute window, and down one pod per 5 minutes after a
  10-minute window: never several replicas at once, never on a short dip;
* a stateless workload scales up fast (the larger of 100 % or 4 pods per minute, no window) and down
  after the Kubernetes default 5-minute window, at most half the pods (or 2) per minute.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from .shared.labels import recommended_labels
from .shared.quantity import QuantityError, parse_quantity
from .shared.types import ScaleTarget
from .shared.validate import check_range

MAX_STABILIZATION_WINDOW_SECONDS = 3600
"""API limit of ``behavior.*.stabilizationWindowSeconds``."""
MAX_PERIOD_SECONDS = 1800
"""API limit of ``behavior.*.policies[].periodSeconds``."""
MAX_UTILIZATION = 100
"""Highest accepted utilisation target (percent of the request) for CPU and memory.

Above 100 % a pod uses more than it requested. For memory that is never reachable with the package's
``Resources`` (the memory limit defaults to the request, and the OOM killer acts before the HPA), and
a CPU target above the request hides that the request is too small; both are rejected.
"""


@dataclass(frozen=True, kw_only=True)
class ScalingPolicy:
    """How fast one direction (up or down) may scale: a stabilization window plus rate limits."""

    stabilization_window_seconds: int
    """Seconds of recommendations the HPA considers before acting (0-3600); required."""
    max_pods_per_period: int
    """At most this many pods added or removed per period (>= 1); required."""
    period_seconds: int
    """Length of the rate-limit period in seconds (1-1800); required."""
    max_percent_per_period: int | None = None
    """Also allow this percentage of current pods per period, whichever allows more; default none."""

    def check(self, path: str) -> ScalingPolicy:
        """Raise ``ValueError`` naming ``path`` when a value is outside the API's limits."""
        check_range(f"{path}.stabilization_window_seconds", self.stabilization_window_seconds, 0, MAX_STABILIZATION_WINDOW_SECONDS)
        check_range(f"{path}.max_pods_per_period", self.max_pods_per_period, 1)
        check_range(f"{path}.period_seconds", self.period_seconds, 1, MAX_PERIOD_SECONDS)
        if self.max_percent_per_period is not None:
            check_range(f"{path}.max_percent_per_period", self.max_percent_per_period, 1)
        return self

    def to_args(self) -> k8s.autoscaling.v2.HPAScalingRulesArgs:
        """The ``behavior.scaleUp`` / ``behavior.scaleDown`` block."""
        policies = [k8s.autoscaling.v2.HPAScalingPolicyArgs(type="Pods", value=self.max_pods_per_period, period_seconds=self.period_seconds)]
        if self.max_percent_per_period is not None:
            policies.append(
                k8s.autoscaling.v2.HPAScalingPolicyArgs(type="Percent", value=self.max_percent_per_period, period_seconds=self.period_seconds)
            )
        return k8s.autoscaling.v2.HPAScalingRulesArgs(
            stabilization_window_seconds=self.stabilization_window_seconds,
            select_policy="Max",
            policies=policies,
        )


DATABASE_SCALE_UP = ScalingPolicy(stabilization_window_seconds=120, max_pods_per_period=1, period_seconds=120)
"""Default for a database: one new replica per 2 minutes (a clone takes minutes)."""
DATABASE_SCALE_DOWN = ScalingPolicy(stabilization_window_seconds=600, max_pods_per_period=1, period_seconds=300)
"""Default for a database: one replica per 5 minutes after 10 minutes of lower load."""
STATELESS_SCALE_UP = ScalingPolicy(stabilization_window_seconds=0, max_pods_per_period=4, max_percent_per_period=100, period_seconds=60)
"""Default for a stateless workload: double or add 4 pods per minute, whichever is more."""
STATELESS_SCALE_DOWN = ScalingPolicy(stabilization_window_seconds=300, max_pods_per_period=2, max_percent_per_period=50, period_seconds=60)
"""Default for a stateless workload: after 5 minutes, remove half the pods or 2 per minute."""


@dataclass(frozen=True, kw_only=True)
class PodsMetric:
    """A per-pod custom metric (``type: Pods``), averaged over the target's pods."""

    metric_name: str
    """Metric name as the custom metrics API serves it, e.g. ``tsflow_buffer_rows``; required."""
    target_average_value: str
    """Target average per pod, a Kubernetes quantity such as ``500`` or ``250m``; required."""

    def check(self, path: str) -> PodsMetric:
        """Raise ``ValueError`` naming ``path`` when the name is empty or the target is not a quantity."""
        _check_metric_name(f"{path}.metric_name", self.metric_name)
        _check_quantity(f"{path}.target_average_value", self.target_average_value)
        return self

    def to_args(self) -> k8s.autoscaling.v2.MetricSpecArgs:
        return k8s.autoscaling.v2.MetricSpecArgs(
            type="Pods",
            pods=k8s.autoscaling.v2.PodsMetricSourceArgs(
                metric=k8s.autoscaling.v2.MetricIdentifierArgs(name=self.metric_name),
                target=k8s.autoscaling.v2.MetricTargetArgs(type="AverageValue", average_value=self.target_average_value),
            ),
        )


@dataclass(frozen=True, kw_only=True)
class ExternalMetric:
    """A metric from outside the cluster's pods (``type: External``), e.g. a queue length."""

    metric_name: str
    """Metric name as the external metrics API serves it; required."""
    target_value: str | None = None
    """Target for the metric's total value (quantity); set exactly one of this and ``target_average_value``."""
    target_average_value: str | None = None
    """Target for the value divided by the pod count (quantity); default none."""
    selector: Mapping[str, str] = field(default_factory=dict)
    """Labels that pick the metric's series; default none (all series)."""

    def check(self, path: str) -> ExternalMetric:
        """Raise ``ValueError`` naming ``path`` unless exactly one well-formed target is set."""
        _check_metric_name(f"{path}.metric_name", self.metric_name)
        targets = {"target_value": self.target_value, "target_average_value": self.target_average_value}
        chosen = {k: v for k, v in targets.items() if v is not None}
        if len(chosen) != 1:
            raise ValueError(f"{path} must set exactly one of target_value and target_average_value (got {chosen or 'neither'})")
        for key, value in chosen.items():
            _check_quantity(f"{path}.{key}", value)
        return self

    def to_args(self) -> k8s.autoscaling.v2.MetricSpecArgs:
        if self.target_value is not None:
            target = k8s.autoscaling.v2.MetricTargetArgs(type="Value", value=self.target_value)
        else:
            target = k8s.autoscaling.v2.MetricTargetArgs(type="AverageValue", average_value=self.target_average_value)
        selector = k8s.meta.v1.LabelSelectorArgs(match_labels=dict(self.selector)) if self.selector else None
        return k8s.autoscaling.v2.MetricSpecArgs(
            type="External",
            external=k8s.autoscaling.v2.ExternalMetricSourceArgs(
                metric=k8s.autoscaling.v2.MetricIdentifierArgs(name=self.metric_name, selector=selector),
                target=target,
            ),
        )


@dataclass(frozen=True, kw_only=True)
class AutoscalingSpec:
    """What to scale on and how far: everything an autoscaler needs except the target itself."""

    min_replicas: int = 1
    """Fewest replicas (>= 1, and for a database >= the target's ``min_replicas_floor``); default 1."""
    max_replicas: int
    """Most replicas (>= min_replicas); required."""
    cpu_utilization: int | None = 70
    """Target average CPU use in percent of the request (1-100), None to not scale on CPU; default 70."""
    memory_utilization: int | None = None
    """Target average memory use in percent of the request (1-100); default none."""
    pods_metrics: Sequence[PodsMetric] = ()
    """Per-pod custom metrics (needs a custom metrics adapter); default none."""
    external_metrics: Sequence[ExternalMetric] = ()
    """External metrics (needs an external metrics adapter); default none."""
    scale_up: ScalingPolicy | None = None
    """Scale-up rate; default ``DATABASE_SCALE_UP`` for a database, ``STATELESS_SCALE_UP`` otherwise."""
    scale_down: ScalingPolicy | None = None
    """Scale-down rate; default ``DATABASE_SCALE_DOWN`` for a database, ``STATELESS_SCALE_DOWN`` otherwise."""

    def check(self, path: str, *, requested_resources: frozenset[str], min_replicas_floor: int, stateful: bool) -> AutoscalingSpec:
        """Raise ``ValueError`` naming ``path.<field>`` and the bad values; return ``self`` when sound."""
        check_range(f"{path}.min_replicas", self.min_replicas, 1)
        check_range(f"{path}.max_replicas", self.max_replicas, 1)
        if self.max_replicas < self.min_replicas:
            raise ValueError(f"{path}.max_replicas ({self.max_replicas}) must be >= min_replicas ({self.min_replicas})")
        if stateful and self.min_replicas < min_replicas_floor:
            raise ValueError(
                f"{path}.min_replicas ({self.min_replicas}) must be >= the database's configured replicas "
                f"({min_replicas_floor}); scaling a database below them would drop replicas it was built with"
            )
        for resource, target in (("cpu", self.cpu_utilization), ("memory", self.memory_utilization)):
            if target is None:
                continue
            check_range(f"{path}.{resource}_utilization", target, 1, MAX_UTILIZATION)
            if resource not in requested_resources:
                raise ValueError(
                    f"{path}.{resource}_utilization ({target}) needs {resource} requests on every container of the target "
                    f"(it requests {sorted(requested_resources) or 'nothing'}); utilisation is measured against the request"
                )
        self._check_custom_metrics(path)
        self._check_behavior(path, stateful=stateful)
        return self

    def _check_custom_metrics(self, path: str) -> None:
        if self.cpu_utilization is None and self.memory_utilization is None and not self.pods_metrics and not self.external_metrics:
            raise ValueError(f"{path} has no metric; set cpu_utilization, memory_utilization, pods_metrics or external_metrics")
        for index, pods_metric in enumerate(self.pods_metrics):
            pods_metric.check(f"{path}.pods_metrics[{index}]")
        for index, external_metric in enumerate(self.external_metrics):
            external_metric.check(f"{path}.external_metrics[{index}]")

    def _check_behavior(self, path: str, *, stateful: bool) -> None:
        if self.scale_up is not None:
            self.scale_up.check(f"{path}.scale_up")
        if self.scale_down is not None:
            self.scale_down.check(f"{path}.scale_down")
            if stateful and (self.scale_down.max_pods_per_period != 1 or self.scale_down.max_percent_per_period is not None):
                raise ValueError(
                    f"{path}.scale_down of a database must remove one pod per period "
                    f"(max_pods_per_period {self.scale_down.max_pods_per_period}, max_percent_per_period "
                    f"{self.scale_down.max_percent_per_period}); set max_pods_per_period=1 and no percentage"
                )

    def metrics(self) -> list[k8s.autoscaling.v2.MetricSpecArgs]:
        """The HPA's ``metrics`` list."""
        resource_metrics = [
            k8s.autoscaling.v2.MetricSpecArgs(
                type="Resource",
                resource=k8s.autoscaling.v2.ResourceMetricSourceArgs(
                    name=resource,
                    target=k8s.autoscaling.v2.MetricTargetArgs(type="Utilization", average_utilization=target),
                ),
            )
            for resource, target in (("cpu", self.cpu_utilization), ("memory", self.memory_utilization))
            if target is not None
        ]
        return [*resource_metrics, *(m.to_args() for m in self.pods_metrics), *(m.to_args() for m in self.external_metrics)]

    def behavior(self, *, stateful: bool) -> k8s.autoscaling.v2.HorizontalPodAutoscalerBehaviorArgs:
        """The HPA's ``behavior``, with the defaults for a database or a stateless workload."""
        default_up, default_down = (DATABASE_SCALE_UP, DATABASE_SCALE_DOWN) if stateful else (STATELESS_SCALE_UP, STATELESS_SCALE_DOWN)
        return k8s.autoscaling.v2.HorizontalPodAutoscalerBehaviorArgs(
            scale_up=(self.scale_up or default_up).to_args(),
            scale_down=(self.scale_down or default_down).to_args(),
        )

    def spec_fields(self) -> dict[str, Any]:
        """This spec's fields, to build an ``AutoscalerArgs`` for a given target from it."""
        return {f.name: getattr(self, f.name) for f in fields(AutoscalingSpec)}


@dataclass(frozen=True, kw_only=True)
class AutoscalerArgs(AutoscalingSpec):
    """An ``AutoscalingSpec`` plus where the HPA lives and what it scales."""

    namespace: pulumi.Input[str]
    """Namespace of the HPA and its target; required."""
    target: ScaleTarget
    """The scaled object, from ``ScaleTarget.of(...)``; required."""
    app_name: str = "timescale-k8s"
    """app.kubernetes.io/name label of the HPA (the scaled application's name); default ``timescale-k8s``."""

    def check_target(self) -> AutoscalerArgs:
        """Validate the spec against this target (requests, floor, statefulness)."""
        self.check(
            "autoscaler",
            requested_resources=self.target.requested_resources,
            min_replicas_floor=self.target.min_replicas_floor,
            stateful=self.target.stateful,
        )
        return self


class Autoscaler(pulumi.ComponentResource):
    """A HorizontalPodAutoscaler aimed at a ``ScaleTarget`` with safe, target-aware scaling rates."""

    hpa: k8s.autoscaling.v2.HorizontalPodAutoscaler
    name: pulumi.Output[str]
    max_replicas: int

    def __init__(self, name: str, args: AutoscalerArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        args.check_target()
        super().__init__("timescale-k8s:index:Autoscaler", name, None, opts)
        target = args.target
        self.hpa = k8s.autoscaling.v2.HorizontalPodAutoscaler(
            f"{name}-hpa",
            metadata=k8s.meta.v1.ObjectMetaArgs(
                namespace=args.namespace,
                labels=recommended_labels(app=args.app_name, instance=name, component="autoscaler"),
            ),
            spec=k8s.autoscaling.v2.HorizontalPodAutoscalerSpecArgs(
                scale_target_ref=k8s.autoscaling.v2.CrossVersionObjectReferenceArgs(
                    api_version=target.api_version, kind=target.kind, name=target.name
                ),
                min_replicas=args.min_replicas,
                max_replicas=args.max_replicas,
                metrics=args.metrics(),
                behavior=args.behavior(stateful=target.stateful),
            ),
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.name = self.hpa.metadata.name
        self.max_replicas = args.max_replicas
        self.register_outputs({"hpa": self.hpa, "name": self.name, "max_replicas": self.max_replicas})


def _check_metric_name(path: str, name: str) -> None:
    if not isinstance(name, str) or not name.strip() or any(ch.isspace() for ch in name):
        raise ValueError(f"{path} ({name!r}) must be a non-empty metric name without spaces")


def _check_quantity(path: str, value: str) -> None:
    try:
        amount = parse_quantity(value, field=path)
    except QuantityError as error:
        raise ValueError(str(error)) from None
    if amount <= 0:
        raise ValueError(f"{path} ({value!r}) must be a positive quantity")
