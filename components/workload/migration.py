"""The schema migration as a one-shot Job that the workloads wait for.

Ordering: pulumi-kubernetes awaits a batch/v1 Job until its ``Complete`` condition is true (and fails
the update on ``Failed``), so a Deployment that lists the Job in ``depends_on`` (``WorkloadArgs.after``)
is only created or updated after the migration succeeded.

Re-runs: a Job's pod template is immutable, and the provider already replaces a Job whose
``spec.template`` changed; ``replace_on_changes`` states that here. The Job is auto-named, so the
replacement is create-before-delete: the new Job (new image, new name) runs and must succeed before the
old one is deleted and before dependents roll. ``migrate`` is idempotent, so a re-run is harmless.
No ``ttlSecondsAfterFinished``: a Job deleted by the TTL controller would look like drift and be
re-created on every ``pulumi up``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pulumi
import pulumi_kubernetes as k8s

from ..shared.images import check_digest_pinned_image
from ..shared.labels import recommended_labels, selector_labels
from ..shared.pod_spec import (
    app_container,
    app_env,
    app_pod_template,
    check_app_args,
    disruptions_ignored,
    image_version,
    merge_pod_labels,
)
from ..shared.types import DatabaseConnection, Resources
from ..shared.validate import check_range
from .network import app_network_policy

AWAIT_MARGIN_SECONDS = 120
"""How much longer than ``active_deadline_seconds`` Pulumi waits (image pull, scheduling)."""


@dataclass(frozen=True, kw_only=True)
class MigrationJobArgs:
    """Inputs of a ``MigrationJob``."""

    namespace: pulumi.Input[str]
    """Namespace of the Job; required."""
    image: str
    """tsflow image pinned by digest, the same one the workloads run; required."""
    database: DatabaseConnection
    """Database to migrate and the Secret with its credentials; required."""
    resources: Resources
    """Container requests and limits; required."""
    backoff_limit: int = 6
    """Failed pods (retries) before the Job fails (0-100); default 6."""
    active_deadline_seconds: int = 600
    """Wall-clock limit of the whole Job, retries included (>= 30); default 600."""
    command_args: Sequence[str] = ("migrate",)
    """Arguments to the ``python -m tsflow`` entrypoint; default ``["migrate"]``."""
    env: Mapping[str, str] = field(default_factory=dict)
    """Non-secret ``TSFLOW_*`` settings, e.g. ``{"TSFLOW_RETENTION": "30d"}``; default none."""
    app_name: str = "tsflow"
    """app.kubernetes.io/name value; default ``tsflow``."""


class MigrationJob(pulumi.ComponentResource):
    """Runs ``tsflow migrate`` once per image (and per settings), before the workloads start."""

    job: k8s.batch.v1.Job
    network_policy: k8s.networking.v1.NetworkPolicy

    def __init__(self, name: str, args: MigrationJobArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        _check(args)
        super().__init__("timescale-k8s:index:MigrationJob", name, None, opts)
        labels = recommended_labels(app=args.app_name, instance=name, component="migration", version=image_version(args.image))
        container = app_container(
            name="migrate",
            image=args.image,
            args=args.command_args,
            env=app_env(args.database, dict(args.env)),
            resources=args.resources,
        )
        self.job = k8s.batch.v1.Job(
            f"{name}-job",
            metadata=k8s.meta.v1.ObjectMetaArgs(namespace=args.namespace, labels=labels),
            spec=k8s.batch.v1.JobSpecArgs(
                backoff_limit=args.backoff_limit,
                active_deadline_seconds=args.active_deadline_seconds,
                pod_failure_policy=disruptions_ignored(),
                template=app_pod_template(
                    labels=merge_pod_labels("migration", labels, args.database.client_labels),
                    container=container,
                    database=args.database,
                    restart_policy="Never",  # required by podFailurePolicy; failed pods stay for their logs
                    termination_grace_seconds=30,
                ),
            ),
            opts=pulumi.ResourceOptions(
                parent=self,
                replace_on_changes=["spec.template"],
                custom_timeouts=pulumi.CustomTimeouts(create=await_timeout(args), update=await_timeout(args)),
            ),
        )
        self.network_policy = app_network_policy(
            f"{name}-netpol",
            metadata=k8s.meta.v1.ObjectMetaArgs(namespace=args.namespace, labels=labels),
            pod_selector=selector_labels(app=args.app_name, instance=name, component="migration"),
            database=args.database,
            metrics_port=None,
            metrics_namespace=None,
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.register_outputs({"job": self.job, "network_policy": self.network_policy})


def await_timeout(args: MigrationJobArgs) -> str:
    """How long Pulumi waits for the Job: its own deadline plus a margin, so Kubernetes gives up first."""
    return f"{args.active_deadline_seconds + AWAIT_MARGIN_SECONDS}s"


def _check(args: MigrationJobArgs) -> None:
    """Raise ``ValueError`` naming ``migration.<field>`` and the bad value."""
    check_digest_pinned_image(args.image, field="migration.image")
    check_app_args("migration", image=args.image, command_args=args.command_args, resources=args.resources, env=args.env)
    check_range("migration.backoff_limit", args.backoff_limit, 0, 100)
    check_range("migration.active_deadline_seconds", args.active_deadline_seconds, 30)
