"""Pod-building pieces shared by the tsflow Deployment (``Workload``) and the migration Job.

The tsflow image runs as USER 10001 with ENTRYPOINT ``python -m tsflow``; it reads its database
connection from libpq's standard variables (PGHOST, PGPORT, PGDATABASE, PGUSER; with TLS PGSSLMODE and
PGSSLROOTCERT), its password from the file ``TSFLOW_PASSWORD_FILE`` names (the connection Secret's
``password`` key, mounted: never an environment variable), and its settings from ``TSFLOW_*`` variables.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import pulumi
import pulumi_kubernetes as k8s

from .images import check_pinned_image, image_version  # noqa: F401 - image_version re-exported
from .security import container_security_context, pod_security_context
from .types import ConnectionSecretKeys, DatabaseConnection, Resources

APP_USER = 10001
"""UID (and GID) of the image's USER; the pod runs as it, never as root."""
TMP_VOLUME = "tmp"
TMP_SIZE_LIMIT = "64Mi"
"""/tmp is the only writable path (the root filesystem is read-only)."""

LIBPQ_ENV = ("PGHOST", "PGPORT", "PGDATABASE", "PGUSER", "PGPASSWORD", "PGSSLMODE", "PGSSLROOTCERT")
"""libpq variables the component sets (or, for PGPASSWORD, deliberately leaves out); reserved."""
PASSWORD_FILE_ENV = "TSFLOW_PASSWORD_FILE"
CREDENTIALS_VOLUME = "db-credentials"
CREDENTIALS_DIR = "/etc/tsflow/db"
PASSWORD_FILE = f"{CREDENTIALS_DIR}/{ConnectionSecretKeys.PASSWORD}"
CA_FILE = f"{CREDENTIALS_DIR}/ca.crt"
DSN_ENV = "TSFLOW_DSN"
"""tsflow's inline connection string; reserved, because it would bypass (and could inline) the Secret."""

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def check_app_args(
    path: str,
    *,
    image: str,
    command_args: Sequence[str],
    resources: Resources,
    env: Mapping[str, str],
    reserved_env: Sequence[str] = (),
) -> None:
    """Raise ``ValueError`` naming ``path.<field>`` for an unpinned image, no command, bad resources or settings."""
    check_pinned_image(image, field=f"{path}.image")
    if isinstance(command_args, str) or not command_args or not all(isinstance(a, str) and a for a in command_args):
        raise ValueError(f"{path}.command_args ({command_args!r}) must be a non-empty list of strings, e.g. ['migrate']")
    resources.check(f"{path}.resources")
    taken = {*LIBPQ_ENV, DSN_ENV, PASSWORD_FILE_ENV, *reserved_env}
    for key, value in env.items():
        if not isinstance(key, str) or not _ENV_NAME.match(key):
            raise ValueError(f"{path}.env key {key!r} is not a valid environment variable name")
        if key in taken:
            raise ValueError(f"{path}.env key {key!r} is set by the component itself (reserved: {sorted(taken)})")
        if not isinstance(value, str):
            raise ValueError(f"{path}.env[{key!r}] ({value!r}) must be a string")


def check_dns_label(path: str, value: str) -> None:
    """Raise unless ``value`` is an RFC 1123 label (it names a container and is a label value)."""
    if not isinstance(value, str) or len(value) > 63 or not _DNS_LABEL.match(value):
        raise ValueError(f"{path} ({value!r}) must be a lowercase RFC 1123 label (a-z, 0-9, '-', at most 63 characters)")


def merge_pod_labels(path: str, labels: Mapping[str, str], client_labels: Mapping[str, str]) -> dict[str, str]:
    """Recommended labels plus the database's client labels; a client label may not override one."""
    clashes = {k: (labels[k], v) for k, v in client_labels.items() if k in labels and labels[k] != v}
    if clashes:
        raise ValueError(f"{path}.database.client_labels override recommended labels: {clashes}")
    return {**labels, **client_labels}


def app_env(
    database: DatabaseConnection,
    settings: Mapping[str, pulumi.Input[str]],
) -> list[k8s.core.v1.EnvVarArgs]:
    """Plain settings (sorted, for stable diffs), then where the database is (not secret: from the
    connection object), the password file, and with TLS ``verify-full`` against the mounted CA."""
    connection: dict[str, pulumi.Input[str]] = {
        "PGHOST": database.read_write_host,
        "PGPORT": str(database.port),
        "PGDATABASE": database.database,
        "PGUSER": database.user,
        PASSWORD_FILE_ENV: PASSWORD_FILE,
    }
    if database.ca_secret_name is not None:
        connection.update({"PGSSLMODE": "verify-full", "PGSSLROOTCERT": CA_FILE})
    values = {**{key: settings[key] for key in sorted(settings)}, **connection}
    return [k8s.core.v1.EnvVarArgs(name=key, value=value) for key, value in values.items()]


def credentials_volume(database: DatabaseConnection) -> k8s.core.v1.VolumeArgs:
    """The connection Secret's password (and with TLS the server CA, never its key) as files for APP_USER."""
    sources = [k8s.core.v1.VolumeProjectionArgs(secret=k8s.core.v1.SecretProjectionArgs(
        name=database.secret_name,
        items=[k8s.core.v1.KeyToPathArgs(key=ConnectionSecretKeys.PASSWORD, path=ConnectionSecretKeys.PASSWORD)],
    ))]
    if database.ca_secret_name is not None:
        sources.append(k8s.core.v1.VolumeProjectionArgs(secret=k8s.core.v1.SecretProjectionArgs(
            name=database.ca_secret_name, items=[k8s.core.v1.KeyToPathArgs(key="ca.crt", path="ca.crt")],
        )))
    return k8s.core.v1.VolumeArgs(
        name=CREDENTIALS_VOLUME,
        projected=k8s.core.v1.ProjectedVolumeSourceArgs(default_mode=0o440, sources=sources),
    )


def app_container(
    *,
    name: str,
    image: str,
    args: Sequence[str],
    env: list[k8s.core.v1.EnvVarArgs],
    resources: Resources,
    ports: Sequence[k8s.core.v1.ContainerPortArgs] = (),
    probes: Mapping[str, k8s.core.v1.ProbeArgs] | None = None,
) -> k8s.core.v1.ContainerArgs:
    """The tsflow container: restricted security context, read-only root, writable /tmp.

    ``probes`` maps ``liveness``/``readiness``/``startup`` to probes; default none (a Job needs none).
    """
    probes = probes or {}
    return k8s.core.v1.ContainerArgs(
        name=name,
        image=image,
        image_pull_policy="IfNotPresent",
        args=list(args),
        env=env,
        ports=list(ports) or None,
        resources=resources.to_args(),
        liveness_probe=probes.get("liveness"),
        readiness_probe=probes.get("readiness"),
        startup_probe=probes.get("startup"),
        security_context=container_security_context(),
        volume_mounts=[
            k8s.core.v1.VolumeMountArgs(name=TMP_VOLUME, mount_path="/tmp"),
            k8s.core.v1.VolumeMountArgs(name=CREDENTIALS_VOLUME, mount_path=CREDENTIALS_DIR, read_only=True),
        ],
        termination_message_policy="FallbackToLogsOnError",
    )


def app_pod_template(
    *,
    labels: Mapping[str, str],
    container: k8s.core.v1.ContainerArgs,
    database: DatabaseConnection,
    restart_policy: str,
    termination_grace_seconds: int,
    topology_spread: Sequence[k8s.core.v1.TopologySpreadConstraintArgs] = (),
) -> k8s.core.v1.PodTemplateSpecArgs:
    """A pod that runs ``container`` as APP_USER (the credentials files' group), without an API token or
    service-link variables."""
    return k8s.core.v1.PodTemplateSpecArgs(
        metadata=k8s.meta.v1.ObjectMetaArgs(labels=dict(labels)),
        spec=k8s.core.v1.PodSpecArgs(
            containers=[container],
            restart_policy=restart_policy,
            termination_grace_period_seconds=termination_grace_seconds,
            security_context=pod_security_context(run_as_user=APP_USER, fs_group=APP_USER),
            automount_service_account_token=False,
            enable_service_links=False,
            topology_spread_constraints=list(topology_spread) or None,
            volumes=[
                k8s.core.v1.VolumeArgs(
                    name=TMP_VOLUME,
                    empty_dir=k8s.core.v1.EmptyDirVolumeSourceArgs(size_limit=TMP_SIZE_LIMIT),
                ),
                credentials_volume(database),
            ],
        ),
    )


def disruptions_ignored() -> k8s.batch.v1.PodFailurePolicyArgs:
    """A Job's podFailurePolicy: pods evicted by a node drain or preemption do not count against backoffLimit
    (requires ``restartPolicy: Never``)."""
    return k8s.batch.v1.PodFailurePolicyArgs(
        rules=[
            k8s.batch.v1.PodFailurePolicyRuleArgs(
                action="Ignore",
                on_pod_conditions=[k8s.batch.v1.PodFailurePolicyOnPodConditionsPatternArgs(type="DisruptionTarget", status="True")],
            )
        ]
    )
