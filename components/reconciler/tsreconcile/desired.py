"""The declarations the reconciler enforces, built by the Pulumi components and read as JSON.

Two halves, two places, so that the superuser never logs in over the network:

* :class:`Desired`, the cluster half, for the Job: Patroni's DCS parameters and the restarts they need,
  through Patroni's REST API; it reads each member's settings as the monitoring role (``pg_monitor``).
* :class:`DatabaseDesired`, the database half, for the role agent beside every member (``agent``): role
  passwords and extension updates, as the superuser over the pod's own socket, on the primary only.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, Optional, Tuple

_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_PARAMETER = re.compile(r"^[a-z_][a-z0-9_]*(\.[a-z_][a-z0-9_]*)?$")
DESIRED_ENV = "TSRECONCILE_DESIRED"
"""Environment variable carrying the cluster declaration's JSON into the Job's container."""
LOOKUP_ROLE_OPTIONS = "LOGIN NOSUPERUSER NOINHERIT NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS"
"""The pooler's lookup role: it may log in, nothing more (``components.pooler.auth``)."""
ROLE_OPTIONS = ("LOGIN", "LOGIN REPLICATION", LOOKUP_ROLE_OPTIONS)
"""Attributes a missing role may be created with."""
DCS_SETTINGS = ("synchronous_mode", "synchronous_mode_strict")
"""Top-level keys of Patroni's dynamic configuration a declaration may own."""
SSL_MODES = ("disable", "verify-full")
"""How the Job's settings connections meet TLS: off, or verified against the CA and the member's name."""

def _check_identifiers(*names: str) -> None:
    for name in names:
        if not _IDENTIFIER.match(name):
            raise ValueError(f"{name!r} is not a plain lower-case identifier")


def _to_json(value: Any) -> str:
    """Stable text (sorted keys): equal declarations give equal text."""
    return json.dumps(asdict(value), sort_keys=True, separators=(",", ":"))


@dataclass(frozen=True)
class RoleSpec:
    """A login role and the mounted file holding its password."""

    role: str
    password_file: str
    create_options: str = "LOGIN"
    """Attributes when the role is missing and must be created (one of ``ROLE_OPTIONS``)."""
    verifier_in_file: bool = False
    """The file holds a precomputed SCRAM verifier (set as it is, compared exactly), not a password."""


@dataclass(frozen=True)
class Desired:
    """Everything one Job run makes true: the cluster half."""

    patroni_url: str
    """Patroni REST API of any member, e.g. ``http://<headless service>:8008``."""
    restapi_user: str
    restapi_password_file: str
    settings_user: str
    """A ``pg_monitor`` role: reads each member's ``pg_settings`` (never the superuser)."""
    settings_password_file: str
    settings_database: str
    """A database ``settings_user`` may connect to."""
    sslmode: str = "disable"
    """``verify-full`` when the server has TLS (then ``ca_file`` is the CA); one of ``SSL_MODES``."""
    ca_file: Optional[str] = None
    """With TLS: the CA both PostgreSQL and Patroni's REST API (then ``https``) must verify against."""
    dcs_parameters: Dict[str, str] = field(default_factory=dict)
    """PostgreSQL parameters Patroni takes only from its DCS (cluster-wide dynamic configuration)."""
    managed_dcs_parameters: Tuple[str, ...] = ()
    """Every DCS-only parameter name the declaration owns: one found in the DCS but no longer declared
    (an override removed from the stack) is reset to PostgreSQL's default."""
    dcs_settings: Dict[str, bool] = field(default_factory=dict)
    """Top-level keys of Patroni's dynamic configuration (``synchronous_mode``, ``synchronous_mode_strict``)."""
    timeout_seconds: int = 600
    """Longest wait for one step (a member to apply settings, restart, or a switchover to finish)."""

    def __post_init__(self) -> None:
        _check_identifiers(self.restapi_user, self.settings_user)
        if not self.settings_database or "\x00" in self.settings_database:
            raise ValueError(f"bad settings database {self.settings_database!r}")
        if self.sslmode not in SSL_MODES or (self.sslmode == "verify-full") != bool(self.ca_file):
            raise ValueError(f"sslmode {self.sslmode!r} with ca_file {self.ca_file!r}: verify-full needs a CA, disable none")
        if self.ca_file and not self.patroni_url.startswith("https://"):
            raise ValueError(f"patroni_url {self.patroni_url!r} must be https:// with TLS (the REST API password must not cross in clear)")
        for name, value in self.dcs_parameters.items():
            if not _PARAMETER.match(name) or not isinstance(value, str):
                raise ValueError(f"bad parameter {name!r} = {value!r}")
        for name in self.managed_dcs_parameters:
            if not _PARAMETER.match(name):
                raise ValueError(f"bad parameter name {name!r}")
        for name, value in self.dcs_settings.items():
            if name not in DCS_SETTINGS or not isinstance(value, bool):
                raise ValueError(f"bad dynamic configuration setting {name!r} = {value!r}")

    def to_json(self) -> str:
        """Stable text: equal declarations give equal text, so equal Job names."""
        return _to_json(self)

    @classmethod
    def from_json(cls, text: str) -> "Desired":
        raw: Dict[str, Any] = json.loads(text)
        return cls(**{**raw, "managed_dcs_parameters": tuple(raw.get("managed_dcs_parameters", ()))})


@dataclass(frozen=True)
class LookupSpec:
    """The pooler's ``auth_query`` function and grants (``components.pooler.auth``); its role is one of
    ``DatabaseDesired.roles``."""

    database: str
    """Where the function lives (the application database)."""
    schema: str
    statements: Tuple[str, ...]
    """The schema, function and grants, each idempotent; re-run only when they change (a marker comment on
    ``schema`` records what was applied)."""


@dataclass(frozen=True)
class TlsReload:
    """Where a member's certificate is mounted, and how the agent asks its own Patroni to reload (``certs``)."""

    cert_file: str
    restapi_user: str
    restapi_password_file: str
    host: str = "127.0.0.1"
    postgres_port: int = 5432
    patroni_port: int = 8008


@dataclass(frozen=True)
class DatabaseDesired:
    """What the role agent keeps true on the primary: the database half."""

    superuser: str
    socket_dir: str
    """The members' Unix socket directory: the superuser's only way in (``peer``)."""
    roles: Tuple[RoleSpec, ...] = ()
    extensions: Tuple[str, ...] = ("timescaledb", "pg_stat_statements")
    """Extensions updated to the image's default version in every database that has them."""
    postgres_major: Optional[int] = None
    """The major version the running server must have; None skips the check."""
    lookup: Optional[LookupSpec] = None
    """The pooler's lookup function, when a pooler is declared."""
    tls: Optional[TlsReload] = None
    """With server TLS: keep PostgreSQL and the REST API serving the mounted (renewed) certificate."""

    def __post_init__(self) -> None:
        if self.lookup is not None:
            _check_identifiers(self.lookup.schema)
        for spec in self.roles:
            if not _IDENTIFIER.match(spec.role) or spec.create_options not in ROLE_OPTIONS:
                raise ValueError(f"bad role spec {spec.role!r} ({spec.create_options!r})")
        _check_identifiers(self.superuser, *self.extensions)
        if not self.socket_dir.startswith("/"):
            raise ValueError(f"socket_dir {self.socket_dir!r} must be an absolute path")

    def to_json(self) -> str:
        return _to_json(self)

    @classmethod
    def from_json(cls, text: str) -> "DatabaseDesired":
        raw: Dict[str, Any] = json.loads(text)
        roles = tuple(RoleSpec(**spec) for spec in raw.get("roles", ()))
        lookup = raw.get("lookup")
        if lookup is not None:
            lookup = LookupSpec(**{**lookup, "statements": tuple(lookup["statements"])})
        tls = TlsReload(**raw["tls"]) if raw.get("tls") is not None else None
        return cls(**{**raw, "roles": roles, "extensions": tuple(raw.get("extensions", ())), "lookup": lookup, "tls": tls})
