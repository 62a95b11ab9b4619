"""A tsflow workload (data generator or analysis consumer): Deployment, metrics Service, PDB, autoscaler."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pulumi
import pulumi_kubernetes as k8s

from ..autoscaler import Autoscaler, AutoscalerArgs, AutoscalingSpec
from ..shared.images import check_digest_pinned_image
from ..shared.labels import recommended_labels, selector_labels
from ..shared.pod_spec import (
    app_container,
    app_env,
    app_pod_template,
    check_app_args,
    check_dns_label,
    image_version,
    merge_pod_labels,
)
from ..shared.types import DatabaseConnection, Resources, ScaleTarget, ScrapeTarget, registrable
from ..shared.validate import check_range
from .network import app_network_policy

METRICS_PORT_NAME = "metrics"
METRICS_PORT_ENV = "TSFLOW_METRICS_PORT"
"""tsflow's setting for the port of /metrics, /healthz and /readyz."""
READ_DSN_ENV = "TSFLOW_READ_DSN"
"""tsflow's setting for a separate read connection; unset parameters come from the PG* variables."""
HOSTNAME_TOPOLOGY_KEY = "kubernetes.io/hostname"
MAX_REPLICAS = 1000
"""More pods than this is a typo (10**30 used to render), not a plan."""


@dataclass(frozen=True, kw_only=True)
class WorkloadArgs:
    """Inputs of a ``Workload``."""

    namespace: pulumi.Input[str]
    """Namespace of every object; required."""
    image: str
    """tsflow image pinned by digest (``repo/tsflow:0.1.0@sha256:...``, the tag optional); required."""
    command_args: Sequence[str]
    """Arguments to the image's ``python -m tsflow`` entrypoint, e.g. ``["generate"]``; required."""
    component: str
    """app.kubernetes.io/component value and container name, e.g. ``generator``; required."""
    database: DatabaseConnection
    """Where the database is and which Secret holds the credentials; required."""
    resources: Resources
    """Container requests and limits; required."""
    env: Mapping[str, str] = field(default_factory=dict)
    """Non-secret ``TSFLOW_*`` settings, e.g. ``{"TSFLOW_BATCH_ROWS": "5000"}``; default none."""
    read_only: bool = False
    """True to read through the read-only Service (``TSFLOW_READ_DSN``); writes still go to the primary; default False."""
    replicas: int = 1
    """Replicas (>= 1); when autoscaled, the starting count, raised to ``autoscaling.min_replicas``; default 1."""
    metrics_port: int = 8000
    """Port of /metrics, /healthz and /readyz (1024-65535: the pod cannot bind privileged ports); default 8000."""
    termination_grace_seconds: int = 30
    """Seconds between SIGTERM and SIGKILL; keep it above the app's flush timeout (25 s); default 30."""
    autoscaling: AutoscalingSpec | None = None
    """Scale with an HPA between these bounds; default none (fixed ``replicas``)."""
    after: Sequence[pulumi.Resource] = ()
    """Resources that must be ready before the Deployment is created, e.g. the migration Job; default none."""
    app_name: str = "tsflow"
    """app.kubernetes.io/name value; default ``tsflow``."""
    metrics_namespace: str | None = None
    """Namespace whose pods may scrape the metrics port (the NetworkPolicy admits nothing else); default None:
    the workload's own namespace."""


class Workload(pulumi.ComponentResource):
    """One tsflow command as a hardened Deployment with metrics, disruption budget and optional HPA."""

    deployment: k8s.apps.v1.Deployment
    service: k8s.core.v1.Service
    disruption_budget: k8s.policy.v1.PodDisruptionBudget | None
    network_policy: k8s.networking.v1.NetworkPolicy
    scrape_target: ScrapeTarget
    scale_target: ScaleTarget
    autoscaler: Autoscaler | None

    def __init__(self, name: str, args: WorkloadArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        _check(args)
        super().__init__("timescale-k8s:index:Workload", name, None, opts)
        selector = selector_labels(app=args.app_name, instance=name, component=args.component)
        labels = recommended_labels(app=args.app_name, instance=name, component=args.component, version=image_version(args.image))
        spec = args.autoscaling
        min_pods = spec.min_replicas if spec else args.replicas
        max_pods = spec.max_replicas if spec else args.replicas
        metadata = k8s.meta.v1.ObjectMetaArgs(namespace=args.namespace, labels=labels)

        self.deployment = k8s.apps.v1.Deployment(
            f"{name}-deployment",
            metadata=metadata,
            spec=k8s.apps.v1.DeploymentSpecArgs(
                replicas=max(args.replicas, min_pods),
                selector=k8s.meta.v1.LabelSelectorArgs(match_labels=selector),
                strategy=k8s.apps.v1.DeploymentStrategyArgs(
                    type="RollingUpdate",
                    rolling_update=k8s.apps.v1.RollingUpdateDeploymentArgs(max_unavailable=0, max_surge=1),
                ),
                revision_history_limit=5,
                template=_pod_template(args, merge_pod_labels("workload", labels, args.database.client_labels), selector, max_pods),
            ),
            opts=pulumi.ResourceOptions(
                parent=self,
                depends_on=list(args.after),
                # The HPA owns spec.replicas once it exists; re-applying ours would undo its scaling.
                ignore_changes=["spec.replicas"] if spec else None,
            ),
        )
        self.service = k8s.core.v1.Service(
            f"{name}-metrics",
            metadata=metadata,
            spec=k8s.core.v1.ServiceSpecArgs(
                type="ClusterIP",
                selector=selector,
                ports=[
                    k8s.core.v1.ServicePortArgs(
                        name=METRICS_PORT_NAME, port=args.metrics_port, target_port=METRICS_PORT_NAME, protocol="TCP"
                    )
                ],
            ),
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.disruption_budget = (
            k8s.policy.v1.PodDisruptionBudget(
                f"{name}-pdb",
                metadata=metadata,
                spec=k8s.policy.v1.PodDisruptionBudgetSpecArgs(
                    max_unavailable=1,
                    selector=k8s.meta.v1.LabelSelectorArgs(match_labels=selector),
                    # A crash-looping pod must not block node drains.
                    unhealthy_pod_eviction_policy="AlwaysAllow",
                ),
                opts=pulumi.ResourceOptions(parent=self),
            )
            if min_pods > 1
            else None
        )
        self.network_policy = app_network_policy(
            f"{name}-netpol",
            metadata=metadata,
            pod_selector=selector,
            database=args.database,
            metrics_port=args.metrics_port,
            metrics_namespace=args.metrics_namespace,
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.scrape_target = ScrapeTarget(
            job=args.component, namespace=args.namespace, pod_labels=selector, port_name=METRICS_PORT_NAME
        )
        self.scale_target = ScaleTarget.of(
            self.deployment, container_resources=[args.resources], min_replicas_floor=1, stateful=False
        )
        self.autoscaler = (
            Autoscaler(
                f"{name}-autoscaler",
                AutoscalerArgs(namespace=args.namespace, target=self.scale_target, app_name=args.app_name, **spec.spec_fields()),
                opts=pulumi.ResourceOptions(parent=self),
            )
            if spec
            else None
        )
        self.register_outputs(
            {
                "deployment": self.deployment,
                "service": self.service,
                "disruption_budget": self.disruption_budget,
                "network_policy": self.network_policy,
                "scrape_target": registrable(self.scrape_target),
                "scale_target": registrable(self.scale_target),
                "autoscaler": self.autoscaler,
            }
        )


def _check(args: WorkloadArgs) -> None:
    """Raise ``ValueError`` naming ``workload.<field>`` and the bad value."""
    check_digest_pinned_image(args.image, field="workload.image")
    check_app_args(
        "workload",
        image=args.image,
        command_args=args.command_args,
        resources=args.resources,
        env=args.env,
        reserved_env=(METRICS_PORT_ENV, READ_DSN_ENV),
    )
    check_dns_label("workload.component", args.component)
    check_dns_label("workload.app_name", args.app_name)
    check_range("workload.replicas", args.replicas, 1, MAX_REPLICAS)
    if args.metrics_namespace is not None:
        check_dns_label("workload.metrics_namespace", args.metrics_namespace)
    check_range("workload.metrics_port", args.metrics_port, 1024, 65535)
    check_range("workload.termination_grace_seconds", args.termination_grace_seconds, 1, 3600)
    for index, resource in enumerate(args.after):
        if not isinstance(resource, pulumi.Resource):
            raise ValueError(f"workload.after[{index}] ({resource!r}) must be a Pulumi resource")
    if args.autoscaling is not None:
        # Resources.check (above) guarantees both a CPU and a memory request on the only container.
        args.autoscaling.check(
            "workload.autoscaling", requested_resources=frozenset({"cpu", "memory"}), min_replicas_floor=1, stateful=False
        )
        if args.replicas > args.autoscaling.max_replicas:
            raise ValueError(
                f"workload.replicas ({args.replicas}) must be <= autoscaling.max_replicas ({args.autoscaling.max_replicas})"
            )


def _pod_template(
    args: WorkloadArgs, pod_labels: Mapping[str, str], selector: Mapping[str, str], max_pods: int
) -> k8s.core.v1.PodTemplateSpecArgs:
    settings: dict[str, pulumi.Input[str]] = {**args.env, METRICS_PORT_ENV: str(args.metrics_port)}
    if args.read_only:
        settings[READ_DSN_ENV] = pulumi.Output.concat("host=", args.database.read_only_host, " port=", str(args.database.port))
    container = app_container(
        name=args.component,
        image=args.image,
        args=args.command_args,
        env=app_env(args.database, settings),
        resources=args.resources,
        ports=[k8s.core.v1.ContainerPortArgs(name=METRICS_PORT_NAME, container_port=args.metrics_port, protocol="TCP")],
        probes=_probes(),
    )
    spread = [
        # Spread each rollout's pods over nodes; a preference, so a one-node cluster still schedules.
        k8s.core.v1.TopologySpreadConstraintArgs(
            max_skew=1,
            topology_key=HOSTNAME_TOPOLOGY_KEY,
            when_unsatisfiable="ScheduleAnyway",
            label_selector=k8s.meta.v1.LabelSelectorArgs(match_labels=dict(selector)),
            match_label_keys=["pod-template-hash"],
        )
    ]
    return app_pod_template(
        labels=pod_labels,
        container=container,
        database=args.database,
        restart_policy="Always",
        termination_grace_seconds=args.termination_grace_seconds,
        topology_spread=spread if max_pods > 1 else (),
    )


def _probes() -> dict[str, k8s.core.v1.ProbeArgs]:
    """Startup allows 60 s to reach the database; liveness restarts a hung process; readiness gates traffic."""

    def http(path: str, *, period: int, failures: int) -> k8s.core.v1.ProbeArgs:
        return k8s.core.v1.ProbeArgs(
            http_get=k8s.core.v1.HTTPGetActionArgs(path=path, port=METRICS_PORT_NAME),
            period_seconds=period,
            timeout_seconds=3,
            failure_threshold=failures,
        )

    return {
        "startup": http("/healthz", period=2, failures=30),
        "liveness": http("/healthz", period=10, failures=3),
        "readiness": http("/readyz", period=5, failures=2),
    }
