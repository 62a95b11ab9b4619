"""The TimescaleDB pod: the Patroni container, the postgres_exporter and role agent sidecars, volumes and
scheduling.

Image facts (timescale/timescaledb-docker-ha Dockerfile and timescaledb_entrypoint.sh, Timescale's
timescaledb-single chart): the ``postgres`` user is uid/gid 1000; PGDATA is /home/postgres/pgdata/data;
the entrypoint only creates PGDATA (mode 0700) and then ``exec patroni <config>``, which is what the
container command does here.

Secrets are mounted files, never ``secretKeyRef`` env. Patroni takes its own passwords (superuser,
replication, rewind, REST API) only from its config file or ``PATRONI_*`` variables, so the start command
exports them from the mounted files just before ``exec patroni``: they exist only in Patroni's process
environment (not in the pod spec), and Patroni strips ``PATRONI_*`` variables before starting PostgreSQL.
pgBackRest's S3 key pair goes the same way, in the Patroni and backup agent containers (``backup.py``
says why, and why pgBackRest, under PostgreSQL, still gets it). postgres_exporter reads its password file
itself (``DATA_SOURCE_PASS_FILE``).

Probes (Patroni's REST API, ``patroni/api.py``):

* Startup ``/liveness`` every second, 300 tries: the same 5-minute budget for a slow crash recovery as
  before, without adding up to a period (formerly 10 s) to every start.
* Readiness ``/read-only?lag=<MAXIMUM_LAG_BYTES>``: 200 on the leader, and on a replica whose PostgreSQL
  runs and whose replay position is within 32MiB of the last position the leader published. It does
  not require a live replication stream (Patroni's ``/readiness`` does, so every replica turned NotReady
  10-15 s after the primary died): replicas keep serving reads, frozen at the primary's last WAL, while
  a new leader is elected; a replica that falls behind while the primary is alive leaves the read-only
  Service. Readiness no longer gates writes at all: the read-write Service follows the leader lock
  (see ``component.py``).
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

import pulumi
import pulumi_kubernetes as k8s

from ..pooler import auth as pooler_auth
from . import backup as br
from . import patroni_config as pc
from . import role_agent
from .exporter_queries import QUERIES_FILE
from ..shared.security import container_security_context, pod_security_context
from ..shared.types import ConnectionSecretKeys, Resources

POSTGRES_UID = 1000
"""uid and gid of ``postgres`` in the timescaledb-ha image."""

PATRONI_CONTAINER = "timescaledb"
EXPORTER_CONTAINER = "postgres-exporter"
DATA_VOLUME = "data"
WAL_VOLUME = "wal"
CONFIG_VOLUME = "patroni-config"
SCRIPTS_VOLUME = "bootstrap-scripts"
SECRETS_VOLUME = "bootstrap-secrets"
PATRONI_SECRETS_VOLUME = "patroni-secrets"
EXPORTER_SECRETS_VOLUME = "exporter-secrets"
TLS_VOLUME = "tls"
EXPORTER_QUERIES_VOLUME = "exporter-queries"
EXPORTER_QUERIES_DIR = "/etc/postgres-exporter/queries"
TLS_CA_VOLUME = "tls-ca"
PATRONI_SECRETS_DIR = "/etc/timescaledb/patroni-secrets"
EXPORTER_SECRETS_DIR = "/etc/postgres-exporter/secrets"
EXPORTER_PASSWORD_FILE = f"{EXPORTER_SECRETS_DIR}/{pc.password_file(pc.MONITOR_USER)}"
CA_KEY = "ca.crt"
BACKUP_CONFIG_VOLUME = "pgbackrest-config"
BACKUP_AGENT_VOLUME = "backup-agent"
BACKUP_CONTAINER = "backup-agent"
BACKUP_AGENT_DIR = "/etc/timescaledb/backup"
BACKUP_SECRETS_VOLUME = "pgbackrest-secrets"
BACKUP_SECRETS_DIR = "/etc/timescaledb/pgbackrest-secrets"
"""The S3 key pair of each repository, one file per pgBackRest option (``br.credential_options``)."""

SUPERUSER_KEY = ConnectionSecretKeys.PASSWORD
REPLICATION_KEY = "replication-password"
RESTAPI_KEY = "restapi-password"
REWIND_KEY = "rewind-password"
MONITOR_KEY = "monitor-password"
"""Keys of the internal credentials Secret (the superuser Secret uses the connection keys)."""

CONFIG_KEY = pc.CONFIG_FILE
POST_INIT_KEY = pc.POST_INIT_FILE
EXPORTER_QUERIES_KEY = f"exporter-{QUERIES_FILE}"
SCRAM_KEY = pc.SCRAM_FILE
"""Keys of the Patroni ConfigMap."""

CONFIG_CHECKSUM_ANNOTATION = "timescale-k8s.io/patroni-config-sha256"


@dataclass(frozen=True, kw_only=True)
class PodRefs:
    """Names of the objects the pod reads, taken from those objects' outputs."""

    service_account: pulumi.Input[str]
    config_map: pulumi.Input[str]
    superuser_secret: pulumi.Input[str]
    internal_secret: pulumi.Input[str]
    app_secret: pulumi.Input[str]
    reader_secret: pulumi.Input[str]
    pooler_lookup_secret: pulumi.Input[str] | None = None
    """The pooler lookup role's Secret, when the bootstrap creates that role."""


@dataclass(frozen=True, kw_only=True)
class PodSpecInput:
    """Everything that shapes the pod template."""

    scope: str
    pod_labels: Mapping[str, str]
    selector_labels: Mapping[str, str]
    patroni_labels: Mapping[str, str]
    image: str
    exporter_image: str
    resources: Resources
    exporter_resources: Resources
    anti_affinity: Literal["preferred", "required"]
    termination_grace_seconds: int
    separate_wal: bool
    app_user: str
    reader_user: str
    config_checksum: str
    refs: PodRefs
    database: str
    """The application database: the exporter connects to it (its TimescaleDB queries need the extension)."""
    tls_secret: str | None = None
    headless_service: str | None = None
    """Fixed name of the governing headless Service (with TLS: members are addressed by their DNS names)."""
    backup: BackupPod | None = None
    """pgBackRest configuration, credentials and agent; default None (no backups)."""
    managed_roles: tuple[role_agent.ManagedRole, ...] = ()
    """Roles whose passwords the role agent keeps (their Secrets are mounted in its container only)."""
    pooler_lookup: role_agent.PoolerLookup | None = None
    """The pooler's lookup role, when the role agent keeps it (its verifier is mounted for the agent)."""
    role_agent_tls: role_agent.ServerTls | None = None
    """With TLS: what the role agent needs to keep a renewed certificate served."""
    role_agent_resources: Resources = role_agent.DEFAULT_RESOURCES


PATRONI_PASSWORDS = (
    ("PATRONI_SUPERUSER_PASSWORD", "superuser"),
    ("PATRONI_REPLICATION_PASSWORD", "replication"),
    ("PATRONI_REWIND_PASSWORD", "rewind"),
    ("PATRONI_RESTAPI_PASSWORD", "restapi"),
)
"""Patroni's password variables and the file (in PATRONI_SECRETS_DIR) each is exported from at start."""


def member_host(spec: PodSpecInput, name_var: str, namespace_var: str) -> str:
    """A member's stable DNS name (``$(VAR)`` references the kubelet expands); it is in the certificate."""
    return f"$({name_var}).{spec.headless_service}.$({namespace_var}).svc.cluster.local"


@dataclass(frozen=True, kw_only=True)
class BackupPod:
    """pgBackRest in the pod: its config (in the Patroni ConfigMap), S3 credentials, and the agent sidecar."""

    credentials_secrets: tuple[str, ...]
    """Per repository (``repo1``, ``repo2``), the user's Secret with ``AWS_ACCESS_KEY_ID`` and ``AWS_SECRET_ACCESS_KEY``."""
    agent_command: list[str]
    agent_resources: Resources


def backup_env() -> list[k8s.core.v1.EnvVarArgs]:
    """Where pgBackRest's config is; the S3 key pair is exported from files (:func:`backup_credentials`)."""
    return [_value("PGBACKREST_CONFIG", f"{br.CONFIG_DIR}/{br.CONFIG_FILE}")]


def backup_credentials(repositories: int = 1) -> list[tuple[str, str]]:
    """(variable, file) of each repository's S3 key pair, which the Patroni and agent start commands export."""
    return [(br.option_env(option), f"{BACKUP_SECRETS_DIR}/{option}") for option in br.credential_options(repositories)]


def shell_exports(variables: Iterable[tuple[str, str]], dollar: str = "$") -> str:
    """``export VAR="$(< file)" ...``: bash reads each file (dropping trailing newlines), so a secret is never in
    argv or a manifest. ``dollar`` is how ``$`` is written (``$$`` in a container command, the kubelet's escape)."""
    return "export " + " ".join(f'{variable}="{dollar}(< {shlex.quote(path)})"' for variable, path in variables)


def _exports(variables: Iterable[tuple[str, str]]) -> str:
    """:func:`shell_exports` in a container command: bash, not the kubelet, reads each file at container start."""
    return shell_exports(variables, dollar="$$")


def _backup_mounts(spec: PodSpecInput) -> list[k8s.core.v1.VolumeMountArgs]:
    if spec.backup is None:
        return []
    return [
        _mount(BACKUP_CONFIG_VOLUME, br.CONFIG_DIR, read_only=True),
        _mount(BACKUP_SECRETS_VOLUME, BACKUP_SECRETS_DIR, read_only=True),
    ]


def backup_container(spec: PodSpecInput, backup: BackupPod) -> k8s.core.v1.ContainerArgs:
    """The backup agent (``backup_agent.py``): backs up on the Patroni leader, serves metrics on every member.

    It needs the data (and WAL) volume and the socket, as ``pgbackrest backup`` copies files locally and
    talks to PostgreSQL, and the shared /tmp so its pgBackRest locks meet the archiver's. bash exports the
    S3 key pair from its files, then execs the agent, whose pgBackRest runs inherit them.
    """
    agent = shlex.join(backup.agent_command).replace("$", "$$")
    mounts = [
        _mount(DATA_VOLUME, pc.DATA_MOUNT),
        *([_mount(WAL_VOLUME, pc.WAL_MOUNT)] if spec.separate_wal else []),
        _mount(BACKUP_AGENT_VOLUME, BACKUP_AGENT_DIR, read_only=True),
        _mount("tmp", "/tmp"),
        _mount("run", pc.SOCKET_DIR),
        *_backup_mounts(spec),
        *([_mount(TLS_CA_VOLUME, pc.TLS_DIR, read_only=True)] if spec.tls_secret else []),  # Patroni's HTTPS
    ]
    return k8s.core.v1.ContainerArgs(
        name=BACKUP_CONTAINER,
        image=spec.image,
        image_pull_policy="IfNotPresent",
        command=["/bin/bash", "-c", f"{_exports(backup_credentials(len(backup.credentials_secrets)))} && exec {agent}"],
        env=[*backup_env(), _value("PGHOST", pc.SOCKET_DIR), _value("HOME", "/tmp")],
        ports=[k8s.core.v1.ContainerPortArgs(name=br.AGENT_PORT_NAME, container_port=br.AGENT_PORT, protocol="TCP")],
        liveness_probe=_http_probe("/", br.AGENT_PORT_NAME, period=20, failures=3),
        readiness_probe=_http_probe("/", br.AGENT_PORT_NAME, period=10, failures=3),
        resources=backup.agent_resources.to_args(),
        security_context=container_security_context(read_only_root_filesystem=True),
        volume_mounts=mounts,
    )


def _backup_volumes(spec: PodSpecInput) -> list[k8s.core.v1.VolumeArgs]:
    if spec.backup is None:
        return []
    return [
        _secret_files_volume(BACKUP_SECRETS_VOLUME, list(br.credential_files(spec.backup.credentials_secrets))),
        k8s.core.v1.VolumeArgs(
            name=BACKUP_CONFIG_VOLUME,
            config_map=k8s.core.v1.ConfigMapVolumeSourceArgs(
                name=spec.refs.config_map, items=[k8s.core.v1.KeyToPathArgs(key=br.CONFIG_KEY, path=br.CONFIG_FILE)]
            ),
        ),
        k8s.core.v1.VolumeArgs(
            name=BACKUP_AGENT_VOLUME,
            config_map=k8s.core.v1.ConfigMapVolumeSourceArgs(
                name=spec.refs.config_map,
                items=[k8s.core.v1.KeyToPathArgs(key=br.AGENT_KEY, path=br.AGENT_FILE, mode=0o440)],
            ),
        ),
    ]


def _field(name: str, path: str) -> k8s.core.v1.EnvVarArgs:
    return k8s.core.v1.EnvVarArgs(
        name=name, value_from=k8s.core.v1.EnvVarSourceArgs(field_ref=k8s.core.v1.ObjectFieldSelectorArgs(field_path=path))
    )


def _value(name: str, value: str) -> k8s.core.v1.EnvVarArgs:
    return k8s.core.v1.EnvVarArgs(name=name, value=value)


def patroni_env(spec: PodSpecInput) -> list[k8s.core.v1.EnvVarArgs]:
    """Patroni's documented env vars (docs/ENVIRONMENT.rst); pod identity from the downward API.

    With TLS, members advertise their DNS name for PostgreSQL and the REST API (the certificate names it, so
    replication and REST clients verify it); without, their IP."""
    connect_host = (
        member_host(spec, "PATRONI_NAME", "PATRONI_KUBERNETES_NAMESPACE") if spec.tls_secret else "$(POD_IP)"
    )
    return [
        _field("POD_IP", "status.podIP"),
        _field("PATRONI_NAME", "metadata.name"),
        _field("PATRONI_KUBERNETES_NAMESPACE", "metadata.namespace"),
        _field("PATRONI_KUBERNETES_POD_IP", "status.podIP"),
        _value("PATRONI_SCOPE", spec.scope),
        _value("PATRONI_KUBERNETES_LABELS", json.dumps(dict(spec.patroni_labels), sort_keys=True)),
        _value("PATRONI_KUBERNETES_USE_ENDPOINTS", "true"),
        _value("PATRONI_SUPERUSER_USERNAME", pc.SUPERUSER),
        _value("PATRONI_REPLICATION_USERNAME", pc.REPLICATION_USER),
        _value("PATRONI_REWIND_USERNAME", pc.REWIND_USER),
        _value("PATRONI_RESTAPI_USERNAME", pc.RESTAPI_USER),
        _value("PATRONI_POSTGRESQL_DATA_DIR", pc.DATA_DIR),
        _value("PATRONI_POSTGRESQL_PGPASS", pc.PGPASS_FILE),
        _value("PATRONI_POSTGRESQL_LISTEN", f"0.0.0.0:{pc.POSTGRES_PORT}"),
        _value("PATRONI_POSTGRESQL_CONNECT_ADDRESS", f"{connect_host}:{pc.POSTGRES_PORT}"),
        _value("PATRONI_RESTAPI_LISTEN", f"0.0.0.0:{pc.PATRONI_PORT}"),
        _value("PATRONI_RESTAPI_CONNECT_ADDRESS", f"{connect_host}:{pc.PATRONI_PORT}"),
        _value("PATRONICTL_CONFIG_FILE", f"{pc.CONFIG_DIR}/{pc.CONFIG_FILE}"),
        _value("PGDATA", pc.DATA_DIR),
        _value("PGHOST", pc.SOCKET_DIR),
        _value("HOME", "/tmp"),
    ]


READINESS_PATH = f"/read-only?lag={pc.MAXIMUM_LAG_BYTES}"
"""Ready: the leader, or a running replica within ``MAXIMUM_LAG_BYTES`` of the leader's last published WAL."""


def _http_probe(path: str, port: str, *, period: int, failures: int, timeout: int = 5,
                https: bool = False) -> k8s.core.v1.ProbeArgs:
    """An HTTP(S) GET probe (the kubelet never verifies a certificate)."""
    return k8s.core.v1.ProbeArgs(
        http_get=k8s.core.v1.HTTPGetActionArgs(path=path, port=port, scheme="HTTPS" if https else None),
        period_seconds=period,
        failure_threshold=failures,
        timeout_seconds=timeout,
    )


def _mount(name: str, path: str, *, read_only: bool = False) -> k8s.core.v1.VolumeMountArgs:
    return k8s.core.v1.VolumeMountArgs(name=name, mount_path=path, read_only=read_only or None)


def _start_command(separate_wal: bool, backup: BackupPod | None) -> list[str]:
    """Create PGDATA (and pg_wal), export Patroni's passwords (and pgBackRest's S3 key pair) from their
    files, exec Patroni."""
    directories = " ".join([pc.DATA_DIR, *([pc.WAL_DIR] if separate_wal else [])])
    passwords = [(variable, f"{PATRONI_SECRETS_DIR}/{name}") for variable, name in PATRONI_PASSWORDS]
    exports = _exports([*passwords, *(backup_credentials(len(backup.credentials_secrets)) if backup else [])])
    return [
        "/bin/bash",
        "-c",
        f"install -d -m 0700 {directories} && {exports} && exec patroni {pc.CONFIG_DIR}/{pc.CONFIG_FILE}",
    ]


def patroni_container(spec: PodSpecInput) -> k8s.core.v1.ContainerArgs:
    """PostgreSQL under Patroni: REST API probes (HTTPS with TLS), a CHECKPOINT before stop so shutdown is fast."""
    tls = spec.tls_secret is not None
    mounts = [
        _mount(DATA_VOLUME, pc.DATA_MOUNT),
        *([_mount(WAL_VOLUME, pc.WAL_MOUNT)] if spec.separate_wal else []),
        _mount(CONFIG_VOLUME, pc.CONFIG_DIR, read_only=True),
        _mount(SCRIPTS_VOLUME, pc.SCRIPTS_DIR, read_only=True),
        _mount(SECRETS_VOLUME, pc.SECRETS_DIR, read_only=True),
        _mount(PATRONI_SECRETS_VOLUME, PATRONI_SECRETS_DIR, read_only=True),
        _mount("tmp", "/tmp"),
        _mount("run", pc.SOCKET_DIR),
        _mount("shm", "/dev/shm"),
        *([_mount(TLS_VOLUME, pc.TLS_DIR, read_only=True)] if spec.tls_secret else []),
        *_backup_mounts(spec),
    ]
    return k8s.core.v1.ContainerArgs(
        name=PATRONI_CONTAINER,
        image=spec.image,
        image_pull_policy="IfNotPresent",
        command=_start_command(spec.separate_wal, backup=spec.backup),
        env=[*patroni_env(spec), *(backup_env() if spec.backup else [])],
        ports=[
            k8s.core.v1.ContainerPortArgs(name="postgresql", container_port=pc.POSTGRES_PORT, protocol="TCP"),
            k8s.core.v1.ContainerPortArgs(name="patroni", container_port=pc.PATRONI_PORT, protocol="TCP"),
        ],
        startup_probe=_http_probe("/liveness", "patroni", period=1, failures=300, timeout=1, https=tls),
        liveness_probe=_http_probe("/liveness", "patroni", period=10, failures=6, https=tls),
        readiness_probe=_http_probe(READINESS_PATH, "patroni", period=2, failures=3, timeout=2, https=tls),
        lifecycle=k8s.core.v1.LifecycleArgs(
            pre_stop=k8s.core.v1.LifecycleHandlerArgs(
                exec_=k8s.core.v1.ExecActionArgs(
                    command=["psql", "-X", "-h", pc.SOCKET_DIR, "-U", pc.SUPERUSER, "-d", "postgres", "-c", "CHECKPOINT"]
                )
            )
        ),
        resources=spec.resources.to_args(),
        security_context=container_security_context(read_only_root_filesystem=True),
        volume_mounts=mounts,
        termination_message_policy="FallbackToLogsOnError",
    )


def exporter_data_source(spec: PodSpecInput) -> list[k8s.core.v1.EnvVarArgs]:
    """Where the exporter connects: its own member, over loopback, or with TLS to the member's DNS name,
    verifying the certificate against the CA (the exporter mounts ``ca.crt`` only, never the key)."""
    if spec.tls_secret is None:
        return [_value("DATA_SOURCE_URI", f"127.0.0.1:{pc.POSTGRES_PORT}/{spec.database}?sslmode=disable")]
    host = member_host(spec, "POD_NAME", "POD_NAMESPACE")
    return [
        _field("POD_NAME", "metadata.name"),
        _field("POD_NAMESPACE", "metadata.namespace"),
        _value("DATA_SOURCE_URI", f"{host}:{pc.POSTGRES_PORT}/{spec.database}?sslmode=verify-full&sslrootcert={pc.CA_FILE}"),
    ]


def exporter_container(spec: PodSpecInput) -> k8s.core.v1.ContainerArgs:
    """postgres_exporter (v0.17+) reading the local member's application database as the pg_monitor role,
    with the TimescaleDB health queries of ``exporter_queries``; password from a file."""
    mounts = [
        _mount(EXPORTER_SECRETS_VOLUME, EXPORTER_SECRETS_DIR, read_only=True),
        _mount(EXPORTER_QUERIES_VOLUME, EXPORTER_QUERIES_DIR, read_only=True),
    ]
    if spec.tls_secret:
        mounts.append(_mount(TLS_CA_VOLUME, pc.TLS_DIR, read_only=True))
    return k8s.core.v1.ContainerArgs(
        name=EXPORTER_CONTAINER,
        image=spec.exporter_image,
        image_pull_policy="IfNotPresent",
        args=[f"--web.listen-address=:{pc.EXPORTER_PORT}",
              f"--extend.query-path={EXPORTER_QUERIES_DIR}/{QUERIES_FILE}"],
        env=[
            *exporter_data_source(spec),
            _value("DATA_SOURCE_USER", pc.MONITOR_USER),
            _value("DATA_SOURCE_PASS_FILE", EXPORTER_PASSWORD_FILE),
        ],
        volume_mounts=mounts,
        ports=[k8s.core.v1.ContainerPortArgs(name="exporter", container_port=pc.EXPORTER_PORT, protocol="TCP")],
        liveness_probe=_http_probe("/", "exporter", period=20, failures=3),
        readiness_probe=_http_probe("/", "exporter", period=10, failures=3),
        resources=spec.exporter_resources.to_args(),
        security_context=container_security_context(read_only_root_filesystem=True),
    )


def _volumes(spec: PodSpecInput) -> list[k8s.core.v1.VolumeArgs]:
    refs = spec.refs
    secret_files = [
        (refs.app_secret, ConnectionSecretKeys.PASSWORD, pc.password_file(spec.app_user)),
        (refs.reader_secret, ConnectionSecretKeys.PASSWORD, pc.password_file(spec.reader_user)),
        (refs.internal_secret, MONITOR_KEY, pc.password_file(pc.MONITOR_USER)),
    ]
    if refs.pooler_lookup_secret is not None:
        secret_files.append((refs.pooler_lookup_secret, pooler_auth.VERIFIER_KEY, pooler_auth.VERIFIER_FILE))
    shm_limit = f"{max(64, spec.resources.memory_bytes // (4 * 2**20))}Mi"
    tls = [
        k8s.core.v1.VolumeArgs(
            name=TLS_VOLUME,
            secret=k8s.core.v1.SecretVolumeSourceArgs(secret_name=spec.tls_secret, default_mode=0o440),
        ),
        _secret_files_volume(TLS_CA_VOLUME, [(spec.tls_secret, CA_KEY, CA_KEY)]),
    ] if spec.tls_secret else []
    patroni_files = [
        (refs.superuser_secret, SUPERUSER_KEY, "superuser"),
        (refs.internal_secret, REPLICATION_KEY, "replication"),
        (refs.internal_secret, REWIND_KEY, "rewind"),
        (refs.internal_secret, RESTAPI_KEY, "restapi"),
    ]
    return [
        *tls,
        k8s.core.v1.VolumeArgs(
            name=CONFIG_VOLUME,
            config_map=k8s.core.v1.ConfigMapVolumeSourceArgs(
                name=refs.config_map, items=[k8s.core.v1.KeyToPathArgs(key=CONFIG_KEY, path=pc.CONFIG_FILE)]
            ),
        ),
        k8s.core.v1.VolumeArgs(
            name=EXPORTER_QUERIES_VOLUME,
            config_map=k8s.core.v1.ConfigMapVolumeSourceArgs(
                name=refs.config_map, items=[k8s.core.v1.KeyToPathArgs(key=EXPORTER_QUERIES_KEY, path=QUERIES_FILE)]
            ),
        ),
        k8s.core.v1.VolumeArgs(
            name=SCRIPTS_VOLUME,
            config_map=k8s.core.v1.ConfigMapVolumeSourceArgs(
                name=refs.config_map,
                items=[
                    k8s.core.v1.KeyToPathArgs(key=POST_INIT_KEY, path=pc.POST_INIT_FILE, mode=0o550),
                    k8s.core.v1.KeyToPathArgs(key=SCRAM_KEY, path=pc.SCRAM_FILE, mode=0o440),
                ],
            ),
        ),
        _secret_files_volume(SECRETS_VOLUME, secret_files),
        _secret_files_volume(PATRONI_SECRETS_VOLUME, patroni_files),
        _secret_files_volume(
            EXPORTER_SECRETS_VOLUME, [(refs.internal_secret, MONITOR_KEY, pc.password_file(pc.MONITOR_USER))]
        ),
        role_agent.program_volume(refs.config_map),
        _secret_files_volume(role_agent.SECRETS_VOLUME, role_agent.secret_files(spec.managed_roles, spec.pooler_lookup,
                                                                                spec.role_agent_tls)),
        k8s.core.v1.VolumeArgs(name="tmp", empty_dir=k8s.core.v1.EmptyDirVolumeSourceArgs(size_limit="256Mi")),
        k8s.core.v1.VolumeArgs(name="run", empty_dir=k8s.core.v1.EmptyDirVolumeSourceArgs(size_limit="16Mi")),
        k8s.core.v1.VolumeArgs(
            name="shm", empty_dir=k8s.core.v1.EmptyDirVolumeSourceArgs(medium="Memory", size_limit=shm_limit)
        ),
    ]


def _secret_files_volume(
    name: str, files: list[tuple[pulumi.Input[str], str, str]]
) -> k8s.core.v1.VolumeArgs:
    """A projected volume of single Secret keys (secret, key, file name), readable by the pod's group only."""
    return k8s.core.v1.VolumeArgs(
        name=name,
        projected=k8s.core.v1.ProjectedVolumeSourceArgs(
            default_mode=0o440,
            sources=[
                k8s.core.v1.VolumeProjectionArgs(
                    secret=k8s.core.v1.SecretProjectionArgs(name=secret, items=[k8s.core.v1.KeyToPathArgs(key=key, path=path)])
                )
                for secret, key, path in files
            ],
        ),
    )


def _affinity(spec: PodSpecInput) -> k8s.core.v1.AffinityArgs:
    term = k8s.core.v1.PodAffinityTermArgs(
        label_selector=k8s.meta.v1.LabelSelectorArgs(match_labels=dict(spec.selector_labels)),
        topology_key="kubernetes.io/hostname",
    )
    if spec.anti_affinity == "required":
        anti = k8s.core.v1.PodAntiAffinityArgs(required_during_scheduling_ignored_during_execution=[term])
    else:
        anti = k8s.core.v1.PodAntiAffinityArgs(
            preferred_during_scheduling_ignored_during_execution=[
                k8s.core.v1.WeightedPodAffinityTermArgs(weight=100, pod_affinity_term=term)
            ]
        )
    return k8s.core.v1.AffinityArgs(pod_anti_affinity=anti)


def _topology_spread(spec: PodSpecInput) -> list[k8s.core.v1.TopologySpreadConstraintArgs]:
    """Spread over zones, best effort: clusters without zone labels must still schedule every member."""
    return [
        k8s.core.v1.TopologySpreadConstraintArgs(
            max_skew=1,
            topology_key="topology.kubernetes.io/zone",
            when_unsatisfiable="ScheduleAnyway",
            label_selector=k8s.meta.v1.LabelSelectorArgs(match_labels=dict(spec.selector_labels)),
        )
    ]


def pod_template(spec: PodSpecInput) -> k8s.core.v1.PodTemplateSpecArgs:
    """The member pod: Patroni, the exporter and the role agent (plus the backup agent), token mounted
    (Patroni talks to the API server)."""
    return k8s.core.v1.PodTemplateSpecArgs(
        metadata=k8s.meta.v1.ObjectMetaArgs(
            labels=dict(spec.pod_labels),
            annotations={CONFIG_CHECKSUM_ANNOTATION: spec.config_checksum},
        ),
        spec=k8s.core.v1.PodSpecArgs(
            service_account_name=spec.refs.service_account,
            automount_service_account_token=True,
            enable_service_links=False,
            security_context=pod_security_context(run_as_user=POSTGRES_UID, fs_group=POSTGRES_UID),
            termination_grace_period_seconds=spec.termination_grace_seconds,
            affinity=_affinity(spec),
            topology_spread_constraints=_topology_spread(spec),
            containers=[
                patroni_container(spec), exporter_container(spec),
                role_agent.container(image=spec.image, resources=spec.role_agent_resources,
                                     socket_volume="run", tmp_volume="tmp"),
                *([backup_container(spec, spec.backup)] if spec.backup else []),
            ],
            volumes=[*_volumes(spec), *_backup_volumes(spec)],
        ),
    )


def volume_claim_template(
    name: str, *, size: str, storage_class: str | None, labels: Mapping[str, str]
) -> k8s.core.v1.PersistentVolumeClaimArgs:
    """A ReadWriteOnce claim template (PVCs are named ``<name>-<statefulset>-<ordinal>``)."""
    return k8s.core.v1.PersistentVolumeClaimArgs(
        metadata=k8s.meta.v1.ObjectMetaArgs(name=name, labels=dict(labels)),
        spec=k8s.core.v1.PersistentVolumeClaimSpecArgs(
            access_modes=["ReadWriteOnce"],
            storage_class_name=storage_class,
            resources=k8s.core.v1.VolumeResourceRequirementsArgs(requests={"storage": size}),
        ),
    )
