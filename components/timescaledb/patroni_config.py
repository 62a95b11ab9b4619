"""Patroni configuration and bootstrap script for the TimescaleDB component, built as plain data.

Pure functions: the component renders their results into a ConfigMap; tests read them directly.

Facts this relies on (Patroni 4.x, ``patroni/dcs/kubernetes.py`` and docs/ENVIRONMENT.rst):

* Kubernetes DCS in Endpoints mode (``use_endpoints: true``) keeps its keys in Endpoints objects: the
  leader lock is the Endpoints ``<scope>`` itself, and the member that acquires or renews the lock writes
  its own pod IP and ``kubernetes.ports`` into that object's subsets in the same request (an empty subset
  when it releases the lock). A Service named ``<scope>`` without a selector therefore routes exactly to
  the lock holder: the read-write path is the lock. Dynamic config lives in ``<scope>-config``, which
  needs a Service of that name so the endpoints controller never garbage-collects it, as do the failover and
  sync keys ``<scope>-failover``/``<scope>-sync`` (:data:`KEEPER_SUFFIXES`). Patroni lists pods by ``labels`` plus
  ``scope_label=<scope>`` and PATCHes its own pod's ``role_label`` (informational here: no Service
  routes writes by it); Patroni 4.0 changed the leader value from ``master`` to ``primary``, so both
  values are set explicitly.
* Timing (``patroni/config.py``): Patroni raises ``ttl`` below 20 to 20, ``loop_wait`` below 1 to 1,
  ``retry_timeout`` below 3 to 3, and shrinks ``loop_wait`` when ``loop_wait + 2 * retry_timeout > ttl``;
  :func:`check_timing` rejects such values instead of letting Patroni silently rewrite them.
* ``use_unix_socket_repl``: Patroni's own replication connection to its local PostgreSQL (it reads a
  running replica's timeline and LSN through it) uses the socket, admitted by one ``local replication``
  rule for the replication role; no TCP replication rule is widened for it.
* Parameters that must match on primary and replicas (``max_connections``, ``max_worker_processes``...)
  are read only from the DCS (dynamic configuration), so they go to ``bootstrap.dcs``; Patroni ignores
  them in the local file. They apply at bootstrap; later changes need ``patronictl edit-config``.
  Every other parameter lives in the local file, which wins over the DCS and is re-read on restart.
* ``bootstrap.post_init`` runs once, on the new primary, right after initdb, with a superuser
  connection URL as ``$1`` and ``PGPASSFILE`` set. (``bootstrap.users`` was removed in Patroni 4.0.)
  It sets passwords as SCRAM verifiers computed in the pod, never as cleartext SQL; later changes are the
  role agent's (rotation, extension updates: ``role_agent``) and the reconciler Job's (DCS settings).

The config is emitted as JSON, which is valid YAML, so the runtime needs no YAML library.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..pooler import auth as pooler_auth

POSTGRES_PORT = 5432
PATRONI_PORT = 8008
EXPORTER_PORT = 9187

SUPERUSER = "postgres"
REPLICATION_USER = "standby"
REWIND_USER = "rewind"
"""pg_rewind's role (Patroni creates it with the four function grants it needs): the superuser never
logs in over the network."""
MONITOR_USER = "monitor"
RESTAPI_USER = "patroni"
RESERVED_ROLES = frozenset({SUPERUSER, REPLICATION_USER, REWIND_USER, MONITOR_USER, RESTAPI_USER})

ROLE_LABEL = "role"
LEADER_LABEL_VALUE = "primary"
FOLLOWER_LABEL_VALUE = "replica"
SCOPE_LABEL = "cluster-name"
LEADER_PORT_NAME = "postgresql"
"""Name of the port Patroni writes into the leader Endpoints; the read-write Service's port has this name."""
CONFIG_SUFFIX = "-config"
"""Patroni's dynamic-config Endpoints is ``<scope>-config``; a Service of that name keeps it alive."""
KEEPER_SUFFIXES = (CONFIG_SUFFIX, "-sync", "-failover")
"""Every Endpoints Patroni keeps besides the leader lock ``<scope>``: dynamic config, the synchronous standby
record and the failover/switchover request. kube-controller-manager's endpoints controller deletes Endpoints
that no Service owns whenever it starts; the synchronous-standby record lost that way lets a failover pick an
asynchronous replica, so each has a selector-less Service of its name."""


def endpoints_names(scope: str) -> list[str]:
    """The names of every Endpoints Patroni writes in Endpoints mode: the leader lock and its keepers."""
    return [scope, *(scope + suffix for suffix in KEEPER_SUFFIXES)]

DATA_MOUNT = "/home/postgres/pgdata"
DATA_DIR = f"{DATA_MOUNT}/data"
WAL_MOUNT = "/home/postgres/pgwal"
WAL_DIR = f"{WAL_MOUNT}/pg_wal"
SOCKET_DIR = "/var/run/postgresql"
CONFIG_DIR = "/etc/patroni"
CONFIG_FILE = "patroni.yaml"
SCRIPTS_DIR = "/etc/timescaledb/scripts"
POST_INIT_FILE = "post_init.sh"
SCRAM_FILE = "scram.py"
SECRETS_DIR = "/etc/timescaledb/secrets"
TLS_DIR = "/etc/timescaledb/tls"
CA_FILE = f"{TLS_DIR}/ca.crt"
CERT_FILE = f"{TLS_DIR}/tls.crt"
KEY_FILE = f"{TLS_DIR}/tls.key"
"""The CA that signed the server certificate (key ``ca.crt`` of the TLS Secret): members verify each other."""
PGPASS_FILE = "/tmp/pgpass"

DCS_ONLY_PARAMETERS = frozenset({
    "max_connections",
    "max_locks_per_transaction",
    "max_worker_processes",
    "max_prepared_transactions",
    "max_wal_senders",
    "max_replication_slots",
    "wal_level",
    "wal_log_hints",
    "wal_keep_size",
    "track_commit_timestamp",
})
"""Parameters Patroni takes only from the DCS (identical on every member)."""

PATRONI_MANAGED_PARAMETERS = frozenset({
    "listen_addresses", "port", "data_directory", "config_file", "hba_file", "ident_file",
    "hot_standby", "cluster_name", "primary_conninfo", "primary_slot_name", "restore_command",
    "recovery_target_timeline", "unix_socket_directories",
})
"""Parameters Patroni or this component set themselves; user overrides of these are rejected."""

BASE_PARAMETERS: Mapping[str, str] = {
    "shared_preload_libraries": "timescaledb,pg_stat_statements",
    "password_encryption": "scram-sha-256",
    "wal_level": "replica",
    "wal_log_hints": "on",
    "max_wal_senders": "10",
    "max_replication_slots": "10",
    "hot_standby_feedback": "on",
    "timescaledb.telemetry_level": "off",
    "log_destination": "stderr",
    "logging_collector": "off",
    "log_min_duration_statement": "1s",
    "log_checkpoints": "on",
    "log_lock_waits": "on",
    "log_temp_files": "0",
    "unix_socket_directories": SOCKET_DIR,
}
"""Settings every member needs regardless of size (replication, preload, logging to stderr)."""

TLS_PARAMETERS: Mapping[str, str] = {
    "ssl": "on",
    "ssl_cert_file": CERT_FILE,
    "ssl_key_file": KEY_FILE,
    "ssl_min_protocol_version": "TLSv1.2",
}
"""Server TLS from a mounted ``kubernetes.io/tls`` Secret (root-owned key, mode 0440: PostgreSQL accepts it)."""

MIN_TTL = 20
MIN_LOOP_WAIT = 1
MIN_RETRY_TIMEOUT = 3
MAX_TIMING_SECONDS = 3600


@dataclass(frozen=True, kw_only=True)
class PatroniTiming:
    """Failure detection: how fast a lost primary is replaced versus how much API-server trouble is tolerated.

    A primary whose Patroni stops renewing the lock (node lost, process killed and not restarted) is
    replaced once the lock expires: ``ttl - (seconds since its last renewal)`` plus about a second of
    election, i.e. between ``ttl - loop_wait`` and ``ttl``. A primary that cannot reach the DCS keeps
    retrying for ``retry_timeout`` and demotes itself before its lock can expire (Patroni's rule
    ``loop_wait + 2 * retry_timeout <= ttl``): shorter values fail over faster but turn shorter
    API-server outages into a write outage.
    """

    ttl: int = 20
    """Leader lock lifetime in seconds; default 20 (Patroni's minimum)."""
    loop_wait: int = 5
    """Seconds between HA loop runs (lock renewal, member updates, crash detection); default 5."""
    retry_timeout: int = 7
    """Seconds DCS and PostgreSQL calls are retried before giving up; default 7."""


SYNCHRONOUS_MODES = ("off", "on", "strict")
"""``on``: a commit is acknowledged once a synchronous standby has it (when one is streaming), and Patroni
promotes only that standby, so no acknowledged commit is lost to a failover; with no standby streaming the
primary keeps taking writes. ``strict``: writes wait while no synchronous standby streams. ``off``:
asynchronous. A standby cluster ignores it until it is promoted (Patroni)."""


def synchronous_dcs(mode: str) -> dict[str, bool]:
    """Patroni's dynamic-configuration keys for a synchronous mode."""
    if mode not in SYNCHRONOUS_MODES:
        raise ValueError(f"synchronous_mode ({mode!r}) must be one of {', '.join(SYNCHRONOUS_MODES)}")
    return {"synchronous_mode": mode != "off", "synchronous_mode_strict": mode == "strict"}


def check_timing(timing: PatroniTiming, *, field_name: str) -> PatroniTiming:
    """Reject values Patroni would silently change; errors name the field and the values."""
    for name, minimum in (("ttl", MIN_TTL), ("loop_wait", MIN_LOOP_WAIT), ("retry_timeout", MIN_RETRY_TIMEOUT)):
        value = getattr(timing, name)
        if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= MAX_TIMING_SECONDS:
            raise ValueError(
                f"{field_name}.{name} ({value!r}) must be a whole number of seconds from {minimum} to "
                f"{MAX_TIMING_SECONDS} (Patroni's minimum is {minimum})"
            )
    total = timing.loop_wait + 2 * timing.retry_timeout
    if total > timing.ttl:
        raise ValueError(
            f"{field_name}: loop_wait ({timing.loop_wait}) + 2 * retry_timeout ({timing.retry_timeout}) = {total} "
            f"must be <= ttl ({timing.ttl}) (Patroni's rule: the primary must give up before its lock expires)"
        )
    return timing


MAXIMUM_LAG_BYTES = 32 * 1024 * 1024
"""Replay lag (bytes) beyond which a replica is neither promoted (``maximum_lag_on_failover``) nor ready to
serve reads (the readiness probe's ``lag``): one bound for "too far behind"."""

_PARAMETER_NAME = re.compile(r"^[a-z_][a-z0-9_]*(\.[a-z_][a-z0-9_]*)?$")
_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def check_identifier(value: str, *, field_name: str) -> str:
    """A PostgreSQL role or database name that needs no quoting (lower case, digits, underscores)."""
    if not isinstance(value, str) or not _IDENTIFIER.match(value):
        raise ValueError(
            f"{field_name} ({value!r}) must be a lower-case PostgreSQL identifier: letters, digits, "
            "underscores, starting with a letter or underscore, at most 63 characters"
        )
    return value


def check_parameters(parameters: Mapping[str, str], *, field_name: str) -> dict[str, str]:
    """Validate user PostgreSQL parameter overrides and return them as a plain dict."""
    checked: dict[str, str] = {}
    for name, value in parameters.items():
        if not isinstance(name, str) or not _PARAMETER_NAME.match(name):
            raise ValueError(f"{field_name} has an invalid parameter name {name!r}; use names like 'work_mem'")
        if name in PATRONI_MANAGED_PARAMETERS:
            raise ValueError(f"{field_name}[{name!r}] is managed by Patroni/the component and cannot be overridden")
        if not isinstance(value, str) or not value or "\n" in value or "\x00" in value:
            raise ValueError(f"{field_name}[{name!r}] ({value!r}) must be a non-empty single-line string")
        checked[name] = value
    libraries = checked.get("shared_preload_libraries")
    if libraries is not None and "timescaledb" not in [lib.strip() for lib in libraries.split(",")]:
        raise ValueError(f"{field_name}['shared_preload_libraries'] ({libraries!r}) must include 'timescaledb'")
    return checked


def split_parameters(parameters: Mapping[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """(DCS-only parameters, local parameters), each sorted by name."""
    dcs = {k: v for k, v in sorted(parameters.items()) if k in DCS_ONLY_PARAMETERS}
    local = {k: v for k, v in sorted(parameters.items()) if k not in DCS_ONLY_PARAMETERS}
    return dcs, local


@dataclass(frozen=True, kw_only=True)
class PatroniSettings:
    """Everything the Patroni file depends on; secrets and pod identity come from env vars instead."""

    scope: str
    """Patroni cluster name (also the value of the scope label on every member pod)."""
    kubernetes_labels: Mapping[str, str]
    """Labels Patroni uses to find member pods and puts on the ConfigMaps it creates."""
    parameters: Mapping[str, str]
    """All PostgreSQL parameters (tuned, base and user overrides merged)."""
    pod_network_cidrs: Sequence[str]
    """Networks replication connections may come from."""
    separate_wal: bool = False
    """True when pg_wal lives on its own volume."""
    tls: bool = False
    """Server TLS is on: network rules are ``hostssl`` and members connect with ``verify-full``."""
    timing: PatroniTiming = PatroniTiming()
    """ttl, loop_wait, retry_timeout; default :class:`PatroniTiming`'s."""
    synchronous_mode: str = "on"
    """One of ``SYNCHRONOUS_MODES``; default ``on``."""
    maximum_lag_on_failover: int = MAXIMUM_LAG_BYTES
    """Bytes a replica may lag and still be promoted (32MiB)."""


def pg_hba(pod_network_cidrs: Sequence[str], *, tls: bool = False) -> list[str]:
    """Host-based auth: scram-sha-256 everywhere; with ``tls`` the network takes TLS only.

    The superuser only on the pod's own socket (``peer``: the image's ``postgres`` user, i.e. Patroni, the
    role agent and whoever execs into the pod); every network login, loopback included, is rejected, so a
    leaked superuser password is useless from outside the pod. The replication user only for replication:
    over the pod's own socket (Patroni's local timeline check, ``use_unix_socket_repl``) and over TCP only
    from the pod networks."""
    network = "hostssl" if tls else "host"
    rules = [
        f"local all {SUPERUSER} peer",
        f"local replication {REPLICATION_USER} scram-sha-256",
        "local all all scram-sha-256",
        f"host all {SUPERUSER} all reject",
        f"host all {REPLICATION_USER} all reject",
        "host all all 127.0.0.1/32 scram-sha-256",
        "host all all ::1/128 scram-sha-256",
    ]
    rules += [f"{network} replication {REPLICATION_USER} {cidr} scram-sha-256" for cidr in pod_network_cidrs]
    rules += [
        "host replication all 0.0.0.0/0 reject",
        "host replication all ::/0 reject",
    ]
    if tls:
        rules += ["hostnossl all all 0.0.0.0/0 reject", "hostnossl all all ::/0 reject"]
    rules += [
        f"{network} all all 0.0.0.0/0 scram-sha-256",
        f"{network} all all ::/0 scram-sha-256",
    ]
    return rules


def member_authentication(tls: bool) -> dict[str, Any]:
    """Patroni's roles (passwords come from files via env); with TLS, members verify each other's certificate."""
    verify = {"sslmode": "verify-full", "sslrootcert": CA_FILE} if tls else {}
    return {
        "superuser": {"username": SUPERUSER},
        "replication": {"username": REPLICATION_USER, **verify},
        "rewind": {"username": REWIND_USER, **verify},
    }


def build_patroni_config(settings: PatroniSettings) -> dict[str, Any]:
    """The Patroni configuration file as a dict (pod name, IPs and passwords come from env vars)."""
    dcs_parameters, local_parameters = split_parameters(settings.parameters)
    initdb: list[Any] = ["data-checksums", {"encoding": "UTF8"}, {"locale": "C.UTF-8"},
                         {"auth-host": "scram-sha-256"}, {"auth-local": "peer"}]
    basebackup: list[Any] = [{"checkpoint": "fast"}]
    if settings.separate_wal:
        initdb.append({"waldir": WAL_DIR})
        basebackup.append({"waldir": WAL_DIR})
    return {
        "scope": settings.scope,
        "kubernetes": {
            "use_endpoints": True,
            "ports": [{"name": LEADER_PORT_NAME, "port": POSTGRES_PORT, "protocol": "TCP"}],
            "labels": dict(settings.kubernetes_labels),
            "scope_label": SCOPE_LABEL,
            "role_label": ROLE_LABEL,
            "leader_label_value": LEADER_LABEL_VALUE,
            "follower_label_value": FOLLOWER_LABEL_VALUE,
            "standby_leader_label_value": LEADER_LABEL_VALUE,
        },
        "bootstrap": {
            "dcs": {
                "ttl": settings.timing.ttl,
                "loop_wait": settings.timing.loop_wait,
                "retry_timeout": settings.timing.retry_timeout,
                "maximum_lag_on_failover": settings.maximum_lag_on_failover,
                **synchronous_dcs(settings.synchronous_mode),
                "postgresql": {
                    "use_pg_rewind": True,
                    "use_slots": True,
                    "parameters": dcs_parameters,
                },
            },
            "initdb": initdb,
            "post_init": f"{SCRIPTS_DIR}/{POST_INIT_FILE}",
        },
        "restapi": restapi(settings.tls),
        **({"ctl": {"cacert": CA_FILE}} if settings.tls else {}),
        "postgresql": {
            "listen": f"0.0.0.0:{POSTGRES_PORT}",
            "data_dir": DATA_DIR,
            "pgpass": PGPASS_FILE,
            "use_unix_socket": True,
            "use_unix_socket_repl": True,
            "remove_data_directory_on_rewind_failure": True,
            "remove_data_directory_on_diverged_timelines": True,
            "basebackup": basebackup,
            "authentication": member_authentication(settings.tls),
            "pg_hba": pg_hba(settings.pod_network_cidrs, tls=settings.tls),
            "parameters": local_parameters,
        },
        "watchdog": {"mode": "off"},
    }


def restapi(tls: bool) -> dict[str, Any]:
    """Patroni's REST API: with TLS it serves HTTPS with the server certificate, so the REST API user's
    password (basic auth, sent by the reconciler and ``patronictl``) and the member state never cross the
    pod network in clear. Clients verify it against the CA: the reconciler Job, ``patronictl`` in the pod
    (``ctl.cacert``), Prometheus (``serverName`` the headless Service, which the certificate holds); the
    kubelet's probes use HTTPS without verification (the kubelet never verifies), and Patroni's own calls
    to other members during the leader race are unverified by Patroni's design (``PatroniRequest(config,
    True)``). Members advertise their DNS names (``connect_address``), which the certificate holds."""
    section: dict[str, Any] = {"listen": f"0.0.0.0:{PATRONI_PORT}"}
    if tls:
        section |= {"certfile": CERT_FILE, "keyfile": KEY_FILE}
    return section


def render(config: Mapping[str, Any]) -> str:
    """The config file text: JSON (a subset of YAML), with stable key order."""
    return json.dumps(config, indent=2, sort_keys=True) + "\n"


def running_member_view(config_text: str) -> str:
    """The part of the rendered file a running member reads: everything but ``bootstrap``.

    ``bootstrap`` (DCS seed values, initdb, post_init) is used once, when the cluster is created; later
    changes to cluster-wide parameters reach the members through the reconciler, which restarts them in
    a safe order. Rolling the pods for such a change would restart every member for nothing.
    """
    config = json.loads(config_text)
    config.pop("bootstrap", None)
    return render(config)


EXTENSIONS = ("timescaledb", "pg_stat_statements")
"""Extensions created at bootstrap in the application database (and kept up to date by the role agent)."""


@dataclass(frozen=True, kw_only=True)
class BootstrapRoles:
    """The database and roles post_init creates, and the files holding their passwords."""

    database: str
    app_user: str
    reader_user: str
    monitor_user: str = MONITOR_USER
    secrets_dir: str = SECRETS_DIR
    scripts_dir: str = SCRIPTS_DIR
    """Where post_init finds ``scram.py`` (mounted beside it from the ConfigMap)."""
    extensions: Sequence[str] = EXTENSIONS
    pooler_lookup: bool = False
    """Also create PgBouncer's auth_query lookup role and function (``components.pooler.auth``)."""


def password_file(role: str) -> str:
    """Name of the file (in the secrets volume) holding ``role``'s password."""
    return f"{role}-password"


NO_STATEMENT_TRACES = (
    "-c log_statement=none -c log_min_duration_statement=-1 -c log_min_error_statement=panic "
    "-c pg_stat_statements.track_utility=off"
)
"""Session options for statements that carry password verifiers: not logged, not tracked."""


def post_init_script(roles: BootstrapRoles) -> str:
    """Idempotent bash script for ``bootstrap.post_init``: roles, database, grants, extensions.

    Passwords never reach the server: ``scram.py`` turns each mounted password file into a SCRAM-SHA-256
    verifier first (in a private temp dir, removed on exit), and psql sends ``ALTER ROLE ... PASSWORD
    '<verifier>'``. The session also switches statement logging and pg_stat_statements' utility
    tracking off, so not even the verifier lands in the log or the statistics.
    """
    for value, name in ((roles.database, "database"), (roles.app_user, "app_user"),
                        (roles.reader_user, "reader_user"), (roles.monitor_user, "monitor_user")):
        check_identifier(value, field_name=name)
    for extension in roles.extensions:
        check_identifier(extension, field_name="extension")
    users = (roles.app_user, roles.reader_user, roles.monitor_user)
    verifiers = "\n".join(
        f'python3 {roles.scripts_dir}/{SCRAM_FILE} {roles.secrets_dir}/{password_file(role)} > "$verifiers/{role}"'
        for role in users
    )
    role_blocks = "\n".join(_role_sql(role) for role in users)
    extensions = "\n".join(f"CREATE EXTENSION IF NOT EXISTS {name};" for name in roles.extensions)
    if roles.pooler_lookup:  # a separate block, in the application database, after the extensions
        extensions += "\n" + pooler_auth.lookup_bootstrap_sql(
            database=roles.database,
            verifier_path=f"{roles.secrets_dir}/{pooler_auth.VERIFIER_FILE}",
            excluded_roles=sorted(RESERVED_ROLES),
        ).rstrip("\n")
    return f"""#!/bin/bash
# Patroni bootstrap.post_init: runs once on the new primary after initdb; $1 is a superuser URL.
set -euo pipefail
verifiers="$(mktemp -d)"
trap 'rm -rf "$verifiers"' EXIT
{verifiers}
export PGOPTIONS="{NO_STATEMENT_TRACES}"
cd "$verifiers"
psql "$1" --no-psqlrc --set=ON_ERROR_STOP=1 --quiet <<'SQL'
{role_blocks}
SELECT format('CREATE DATABASE %I OWNER %I', '{roles.database}', '{roles.app_user}')
 WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = '{roles.database}') \\gexec
ALTER DATABASE {roles.database} OWNER TO {roles.app_user};
REVOKE ALL ON DATABASE {roles.database} FROM PUBLIC;
GRANT CONNECT, TEMPORARY ON DATABASE {roles.database} TO {roles.app_user};
GRANT CONNECT ON DATABASE {roles.database} TO {roles.reader_user}, {roles.monitor_user};
GRANT pg_monitor TO {roles.monitor_user};
\\connect {roles.database}
{extensions}
GRANT USAGE ON SCHEMA public TO {roles.reader_user};
GRANT SELECT ON ALL TABLES IN SCHEMA public TO {roles.reader_user};
ALTER DEFAULT PRIVILEGES FOR ROLE {roles.app_user} IN SCHEMA public GRANT SELECT ON TABLES TO {roles.reader_user};
SQL
"""


def _role_sql(role: str) -> str:
    return (
        f"\\set verifier `cat {role}`\n"
        f"SELECT format('CREATE ROLE %I LOGIN', '{role}')"
        f" WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{role}') \\gexec\n"
        f"SELECT format('ALTER ROLE %I WITH LOGIN PASSWORD %L', '{role}', :'verifier') \\gexec\n"
        "\\unset verifier"
    )
