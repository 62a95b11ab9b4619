"""The role agent sidecar of every member: the reconciler's database half (``tsreconcile.agent``).

It is why the superuser needs no network login: role passwords (as SCRAM verifiers) and extension updates
run here, as the image's ``postgres`` user over the pod's Unix socket (``local all postgres peer``), and only
on the primary. What it gets, and nothing more:

* its program (the ``tsreconcile`` package and ``components.shared.scram``) and its declaration, as keys of
  the Patroni ConfigMap, mounted as one directory;
* the passwords of the roles it manages (application, reader, monitoring, replication), with a pooler the
  lookup role's SCRAM verifier, and with TLS the certificate (``tls.crt``, never the key) and the REST API
  password (to ask its own Patroni to reload a renewed certificate), as files of their own projected
  volume (not the superuser's or rewind's);
* the socket directory and ``/tmp`` (its heartbeat), shared with the Patroni container.

None of these files is in the pod checksum: the kubelet refreshes mounted ConfigMaps and Secrets in place,
and the agent re-reads its declaration and the passwords every round, so a rotation needs no pod restart.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s

from ..reconciler import job as rj
from ..reconciler.tsreconcile import agent
from ..pooler import auth as pooler_auth
from ..reconciler.tsreconcile.desired import LOOKUP_ROLE_OPTIONS, DatabaseDesired, LookupSpec, RoleSpec, TlsReload
from ..shared.security import container_security_context
from ..shared.types import Resources, SecretFile
from . import patroni_config as pc

CONTAINER = "role-agent"
PROGRAM_VOLUME = "role-agent-program"
SECRETS_VOLUME = "role-agent-secrets"
SECRETS_DIR = "/etc/tsreconcile/roles"
DECLARATION_KEY = "role-agent-declaration"
DECLARATION_FILE = f"{rj.PROGRAM_DIR}/{DECLARATION_KEY}"
HEARTBEAT_FILE = agent.DEFAULT_HEARTBEAT
STALE_MINUTES = 10
"""A heartbeat older than this fails the probes: a round (an extension update included) is far shorter."""
DEFAULT_RESOURCES = Resources(cpu_request="10m", memory_request="64Mi", memory_limit="128Mi")


@dataclass(frozen=True)
class ManagedRole:
    """A login role the agent keeps, and the Secret key holding its password."""

    role: str
    password: SecretFile
    create_options: str = "LOGIN"


@dataclass(frozen=True)
class PoolerLookup:
    """The pooler's lookup role the agent keeps: the Secret key with its verifier, and where its function lives."""

    verifier: SecretFile
    database: str
    excluded_roles: tuple[str, ...]
    """Roles the lookup function never returns (besides superusers and replication roles)."""


LOOKUP_VERIFIER_FILE = f"{SECRETS_DIR}/{pooler_auth.VERIFIER_FILE}"
CERTIFICATE_NAME = "tls.crt"
CERTIFICATE_FILE = f"{SECRETS_DIR}/{CERTIFICATE_NAME}"
"""With TLS: the served certificate, compared with what PostgreSQL and the REST API present (never the key)."""
RESTAPI_PASSWORD_NAME = "restapi-password"
RESTAPI_PASSWORD_FILE = f"{SECRETS_DIR}/{RESTAPI_PASSWORD_NAME}"


@dataclass(frozen=True)
class ServerTls:
    """With server TLS: the Secret whose ``tls.crt`` the members serve, and the REST API user's password (the
    agent asks its own Patroni to reload after a renewal)."""

    tls_secret: str
    restapi_password: SecretFile


def lookup_specs(lookup: PoolerLookup) -> tuple[RoleSpec, LookupSpec]:
    """The declaration's half for the pooler: its role (the verifier file) and the statements of ``pooler.auth``."""
    role = RoleSpec(role=pooler_auth.LOOKUP_ROLE, password_file=LOOKUP_VERIFIER_FILE,
                    create_options=LOOKUP_ROLE_OPTIONS, verifier_in_file=True)
    function = LookupSpec(
        database=lookup.database,
        schema=pooler_auth.LOOKUP_SCHEMA,
        statements=tuple(pooler_auth.lookup_objects_sql(database=lookup.database, excluded_roles=lookup.excluded_roles)),
    )
    return role, function


def password_path(role: str) -> str:
    """Where ``role``'s password is mounted in the agent's container."""
    return f"{SECRETS_DIR}/{role}"


def declaration(roles: Sequence[ManagedRole], *, postgres_major: int, lookup: PoolerLookup | None = None,
                tls: ServerTls | None = None) -> DatabaseDesired:
    """What the agent keeps true on the primary (passwords as mounted file paths, never values)."""
    specs = [RoleSpec(role=r.role, password_file=password_path(r.role), create_options=r.create_options)
             for r in sorted(roles, key=lambda r: r.role)]
    function = None
    if lookup is not None:
        lookup_role, function = lookup_specs(lookup)
        specs.append(lookup_role)
    return DatabaseDesired(
        superuser=pc.SUPERUSER,
        socket_dir=pc.SOCKET_DIR,
        roles=tuple(specs),
        extensions=pc.EXTENSIONS,
        postgres_major=postgres_major,
        lookup=function,
        tls=TlsReload(cert_file=CERTIFICATE_FILE, restapi_user=pc.RESTAPI_USER, restapi_password_file=RESTAPI_PASSWORD_FILE,
                      postgres_port=pc.POSTGRES_PORT, patroni_port=pc.PATRONI_PORT) if tls is not None else None,
    )


def config_map_data(desired: DatabaseDesired) -> dict[str, str]:
    """The Patroni ConfigMap's keys for the agent: its program files and its declaration."""
    return {**{f.key: f.text for f in rj.program_files()}, DECLARATION_KEY: desired.to_json()}


def secret_files(roles: Sequence[ManagedRole], lookup: PoolerLookup | None = None,
                 tls: ServerTls | None = None) -> list[tuple[pulumi.Input[str], str, str]]:
    """(Secret, key, file name) of each managed role's password (and the lookup role's verifier; with TLS, the
    certificate and the REST API password), for a projected volume."""
    files = [(r.password.secret_name, r.password.key, r.role) for r in sorted(roles, key=lambda r: r.role)]
    if lookup is not None:
        files.append((lookup.verifier.secret_name, lookup.verifier.key, pooler_auth.VERIFIER_FILE))
    if tls is not None:
        files.append((tls.tls_secret, CERTIFICATE_NAME, CERTIFICATE_NAME))
        files.append((tls.restapi_password.secret_name, tls.restapi_password.key, RESTAPI_PASSWORD_NAME))
    return files


def program_volume(config_map: pulumi.Input[str]) -> k8s.core.v1.VolumeArgs:
    """The program's files at their repository paths, and the declaration beside them."""
    items = [k8s.core.v1.KeyToPathArgs(key=f.key, path=f.path) for f in rj.program_files()]
    items.append(k8s.core.v1.KeyToPathArgs(key=DECLARATION_KEY, path=DECLARATION_KEY))
    return k8s.core.v1.VolumeArgs(
        name=PROGRAM_VOLUME,
        config_map=k8s.core.v1.ConfigMapVolumeSourceArgs(name=config_map, default_mode=0o444, items=items),
    )


def _heartbeat_probe(period: int) -> k8s.core.v1.ProbeArgs:
    """Fails when the heartbeat is missing or older than ``STALE_MINUTES`` (a wedged loop)."""
    fresh = f'test -n "$(find {HEARTBEAT_FILE} -mmin -{STALE_MINUTES})"'
    return k8s.core.v1.ProbeArgs(
        exec_=k8s.core.v1.ExecActionArgs(command=["/bin/sh", "-c", fresh]),
        period_seconds=period, failure_threshold=3, timeout_seconds=5,
    )


def container(*, image: str, resources: Resources, socket_volume: str, tmp_volume: str) -> k8s.core.v1.ContainerArgs:
    """The agent on the database image (its Python and driver), as the pod's ``postgres`` uid."""
    def env(name: str, value: str) -> k8s.core.v1.EnvVarArgs:
        return k8s.core.v1.EnvVarArgs(name=name, value=value)

    return k8s.core.v1.ContainerArgs(
        name=CONTAINER,
        image=image,
        image_pull_policy="IfNotPresent",
        command=["python3", "-m", rj.AGENT_MODULE],
        env=[
            env(agent.DECLARATION_ENV, DECLARATION_FILE),
            env(agent.HEARTBEAT_ENV, HEARTBEAT_FILE),
            env("PYTHONPATH", rj.PROGRAM_DIR),
            env("PYTHONDONTWRITEBYTECODE", "1"),
            env("PYTHONUNBUFFERED", "1"),
            env("HOME", "/tmp"),
        ],
        volume_mounts=[
            k8s.core.v1.VolumeMountArgs(name=PROGRAM_VOLUME, mount_path=rj.PROGRAM_DIR, read_only=True),
            k8s.core.v1.VolumeMountArgs(name=SECRETS_VOLUME, mount_path=SECRETS_DIR, read_only=True),
            k8s.core.v1.VolumeMountArgs(name=socket_volume, mount_path=pc.SOCKET_DIR),
            k8s.core.v1.VolumeMountArgs(name=tmp_volume, mount_path="/tmp"),
        ],
        liveness_probe=_heartbeat_probe(60),
        readiness_probe=_heartbeat_probe(20),
        resources=resources.to_args(),
        security_context=container_security_context(read_only_root_filesystem=True),
        termination_message_policy="FallbackToLogsOnError",
    )
