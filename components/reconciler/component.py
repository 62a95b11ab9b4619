"""The Reconciler component: a Job, run on every ``pulumi up`` whose declaration changed, that makes the
running database match it (see ``tsreconcile`` for what a run does and ``job`` for when it runs).

Ordering: the Job depends on the database's StatefulSet, which pulumi-kubernetes awaits until its
rollout is complete, so the reconciler meets members that already run the declared image; pulumi then
awaits the Job itself and fails the update if the reconciler fails (``kubectl logs job/<name>`` has its
report, the pod's termination message its summary).

Access, least privilege: the Job changes the cluster only through Patroni's authenticated REST API and
reads members' settings as the monitoring role (``pg_monitor``), with ``verify-full`` against the
database's CA when TLS is on. It never holds the superuser's or an application role's password: role
passwords and extension updates are the role agent's, inside the member pods (``tsreconcile.agent``).
Its own NetworkPolicy admits the reconciler's pods to the members' PostgreSQL and Patroni ports
(NetworkPolicies add up, so the database's own policy stays as it is). The pod runs as the image's
``postgres`` uid with the restricted security context, no service account token (it needs no Kubernetes
API), a read-only root filesystem and the passwords as files from the Secrets.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import pulumi
import pulumi_kubernetes as k8s

from . import job as rj
from .tsreconcile.desired import DESIRED_ENV
from ..shared.images import check_timescaledb_image, image_version
from ..shared.labels import recommended_labels, selector_labels
from ..shared.network import dns_egress, ingress_policy, tcp_ports
from ..shared.pod_spec import disruptions_ignored
from ..shared.security import container_security_context, pod_security_context
from ..shared.types import ReconcileTarget, Resources
from ..shared.validate import check_range

APP_NAME = "timescaledb"
COMPONENT = "reconciler"
AWAIT_MARGIN_SECONDS = 120
PROGRAM_VOLUME = "program"
SECRETS_VOLUME = "secrets"
TMP_VOLUME = "tmp"
CA_VOLUME = "tls-ca"


@dataclass(frozen=True, kw_only=True)
class ReconcilerArgs:
    """Inputs of :class:`Reconciler`."""

    target: ReconcileTarget
    """The database to reconcile (``TimescaleDB.reconcile_target``); required."""
    resources: Resources = field(
        default_factory=lambda: Resources(cpu_request="50m", memory_request="128Mi", memory_limit="256Mi")
    )
    """Container resources; default 50m / 128Mi (limit 256Mi)."""
    step_timeout_seconds: int = 600
    """Longest wait for one step (a member applying settings, a restart, a switchover), 30-3600; default 600."""
    active_deadline_seconds: int = 3600
    """Wall-clock limit of the Job, retries included (>= step timeout); default 3600."""
    backoff_limit: int = 2
    """Failed pods before the Job fails (a run is idempotent, so a retry is safe), 0-10; default 2."""


def check_args(args: ReconcilerArgs) -> None:
    """Raise ``ValueError`` naming ``reconciler.<field>`` and the bad value."""
    check_timescaledb_image(args.target.image, field="reconciler.target.image")
    args.resources.check("reconciler.resources")
    check_range("reconciler.step_timeout_seconds", args.step_timeout_seconds, 30, 3600)
    check_range("reconciler.active_deadline_seconds", args.active_deadline_seconds, args.step_timeout_seconds)
    check_range("reconciler.backoff_limit", args.backoff_limit, 0, 10)


class Reconciler(pulumi.ComponentResource):
    """Runs ``tsreconcile`` against a TimescaleDB cluster whenever its declaration changes."""

    job: k8s.batch.v1.Job
    job_name: pulumi.Output[str]
    revision: pulumi.Output[str]

    def __init__(self, name: str, args: ReconcilerArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        check_args(args)
        super().__init__("timescale-k8s:index:Reconciler", name, None, opts)
        target = args.target
        self._labels = recommended_labels(app=APP_NAME, instance=target.name, component=COMPONENT,
                                          version=image_version(target.image))
        pod_selector = selector_labels(app=APP_NAME, instance=target.name, component=COMPONENT)
        program = k8s.core.v1.ConfigMap(
            f"{name}-program",
            metadata=self._metadata(target),
            data={f.key: f.text for f in rj.program_files()},
            opts=pulumi.ResourceOptions(parent=self),
        )
        access = self._network_policy(name, target, pod_selector)
        self._egress_policy(name, target, pod_selector)

        desired_json = target.patroni_url.apply(
            lambda url: rj.desired_state(target, patroni_url=url, timeout_seconds=args.step_timeout_seconds).to_json()
        )
        secrets = rj.mounted_secrets(target)
        job_settings = {
            "image": target.image,
            "resources": json.dumps(vars(args.resources), sort_keys=True),
            "active_deadline_seconds": args.active_deadline_seconds,
            "backoff_limit": args.backoff_limit,
            "ca_secret": target.ca_secret_name,
        }
        self.revision = pulumi.Output.all(desired_json, *[s.secret_name for s, _ in secrets]).apply(
            lambda values: rj.revision(desired_json=values[0], secret_names=list(values[1:]), job_settings=job_settings)
        )
        self.job = k8s.batch.v1.Job(
            f"{name}-job",
            metadata=k8s.meta.v1.ObjectMetaArgs(
                name=pulumi.Output.concat(target.name, "-reconcile-", self.revision),
                namespace=target.namespace,
                labels=dict(self._labels),
            ),
            spec=k8s.batch.v1.JobSpecArgs(
                backoff_limit=args.backoff_limit,
                active_deadline_seconds=args.active_deadline_seconds,
                pod_failure_policy=disruptions_ignored(),
                template=self._pod_template(target, args, program.metadata.name, desired_json),
            ),
            opts=pulumi.ResourceOptions(
                parent=self,
                depends_on=[target.ready, access],
                replace_on_changes=["spec"],
                delete_before_replace=True,  # the name is fixed per revision; the old Job has finished
                custom_timeouts=pulumi.CustomTimeouts(
                    create=f"{args.active_deadline_seconds + AWAIT_MARGIN_SECONDS}s",
                    update=f"{args.active_deadline_seconds + AWAIT_MARGIN_SECONDS}s",
                ),
            ),
        )
        self.job_name = self.job.metadata.name
        self.register_outputs({"job": self.job, "job_name": self.job_name, "revision": self.revision})

    def _metadata(self, target: ReconcileTarget) -> k8s.meta.v1.ObjectMetaArgs:
        return k8s.meta.v1.ObjectMetaArgs(namespace=target.namespace, labels=dict(self._labels))

    def _egress_policy(self, name: str, target: ReconcileTarget, pod_selector: dict[str, str]) -> k8s.networking.v1.NetworkPolicy:
        """The reconciler's own pods: no ingress; egress only to the members' PostgreSQL and Patroni ports, and DNS."""
        members = k8s.networking.v1.NetworkPolicyPeerArgs(
            pod_selector=k8s.meta.v1.LabelSelectorArgs(match_labels=dict(target.pod_labels))
        )
        return k8s.networking.v1.NetworkPolicy(
            f"{name}-egress",
            metadata=self._metadata(target),
            spec=k8s.networking.v1.NetworkPolicySpecArgs(
                pod_selector=k8s.meta.v1.LabelSelectorArgs(match_labels=pod_selector),
                policy_types=["Ingress", "Egress"],
                egress=[
                    k8s.networking.v1.NetworkPolicyEgressRuleArgs(
                        to=[members], ports=tcp_ports(target.postgres_port, target.patroni_port)
                    ),
                    dns_egress(),
                ],
            ),
            opts=pulumi.ResourceOptions(parent=self),
        )

    def _network_policy(self, name: str, target: ReconcileTarget, pod_selector: dict[str, str]) -> k8s.networking.v1.NetworkPolicy:
        """Admit the reconciler's pods to the members' PostgreSQL and Patroni REST ports."""
        job_pods = k8s.networking.v1.NetworkPolicyPeerArgs(pod_selector=k8s.meta.v1.LabelSelectorArgs(match_labels=pod_selector))
        return ingress_policy(
            f"{name}-netpol",
            metadata=self._metadata(target),
            pod_labels=target.pod_labels,
            rules=[([job_pods], [target.postgres_port, target.patroni_port])],
            opts=pulumi.ResourceOptions(parent=self),
        )

    @staticmethod
    def _ca_volume(tls_secret: str) -> k8s.core.v1.VolumeArgs:
        """Only the CA certificate of the database's TLS Secret (never its private key)."""
        return k8s.core.v1.VolumeArgs(
            name=CA_VOLUME,
            secret=k8s.core.v1.SecretVolumeSourceArgs(
                secret_name=tls_secret, default_mode=0o444, items=[k8s.core.v1.KeyToPathArgs(key=rj.CA_KEY, path=rj.CA_KEY)]
            ),
        )

    def _pod_template(
        self, target: ReconcileTarget, args: ReconcilerArgs, program: pulumi.Input[str], desired_json: pulumi.Output[str]
    ) -> k8s.core.v1.PodTemplateSpecArgs:
        files = rj.program_files()
        container = k8s.core.v1.ContainerArgs(
            name=COMPONENT,
            image=target.image,
            image_pull_policy="IfNotPresent",
            command=["python3", "-m", rj.MODULE],
            env=[
                k8s.core.v1.EnvVarArgs(name=DESIRED_ENV, value=desired_json),
                k8s.core.v1.EnvVarArgs(name="PYTHONPATH", value=rj.PROGRAM_DIR),
                k8s.core.v1.EnvVarArgs(name="PYTHONDONTWRITEBYTECODE", value="1"),
                k8s.core.v1.EnvVarArgs(name="PYTHONUNBUFFERED", value="1"),
                k8s.core.v1.EnvVarArgs(name="HOME", value="/tmp"),
            ],
            resources=args.resources.to_args(),
            security_context=container_security_context(),
            volume_mounts=[
                k8s.core.v1.VolumeMountArgs(name=PROGRAM_VOLUME, mount_path=rj.PROGRAM_DIR, read_only=True),
                k8s.core.v1.VolumeMountArgs(name=SECRETS_VOLUME, mount_path=rj.SECRETS_DIR, read_only=True),
                k8s.core.v1.VolumeMountArgs(name=TMP_VOLUME, mount_path="/tmp"),
                *([k8s.core.v1.VolumeMountArgs(name=CA_VOLUME, mount_path=rj.CA_DIR, read_only=True)]
                  if target.ca_secret_name else []),
            ],
        )
        secret_sources = [
            k8s.core.v1.VolumeProjectionArgs(
                secret=k8s.core.v1.SecretProjectionArgs(
                    name=secret.secret_name,
                    items=[k8s.core.v1.KeyToPathArgs(key=secret.key, path=path.removeprefix(rj.SECRETS_DIR + "/"))],
                )
            )
            for secret, path in rj.mounted_secrets(target)
        ]
        return k8s.core.v1.PodTemplateSpecArgs(
            metadata=k8s.meta.v1.ObjectMetaArgs(labels=dict(self._labels)),
            spec=k8s.core.v1.PodSpecArgs(
                containers=[container],
                restart_policy="Never",  # required by podFailurePolicy; failed pods stay for their logs
                termination_grace_period_seconds=30,
                security_context=pod_security_context(run_as_user=target.run_as_user, fs_group=target.run_as_user),
                automount_service_account_token=False,
                enable_service_links=False,
                volumes=[
                    k8s.core.v1.VolumeArgs(
                        name=PROGRAM_VOLUME,
                        config_map=k8s.core.v1.ConfigMapVolumeSourceArgs(
                            name=program,
                            default_mode=0o444,
                            items=[k8s.core.v1.KeyToPathArgs(key=f.key, path=f.path) for f in files],
                        ),
                    ),
                    k8s.core.v1.VolumeArgs(
                        name=SECRETS_VOLUME,
                        projected=k8s.core.v1.ProjectedVolumeSourceArgs(default_mode=0o440, sources=secret_sources),
                    ),
                    k8s.core.v1.VolumeArgs(name=TMP_VOLUME, empty_dir=k8s.core.v1.EmptyDirVolumeSourceArgs(size_limit="16Mi")),
                    *([self._ca_volume(target.ca_secret_name)] if target.ca_secret_name else []),
                ],
            ),
        )
