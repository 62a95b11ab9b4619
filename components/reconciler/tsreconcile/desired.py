"""The declaration the reconciler enforces: built by the Pulumi component, read by the Job as JSON."""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, Optional, Tuple

_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_PARAMETER = re.compile(r"^[a-z_][a-z0-9_]*(\.[a-z_][a-z0-9_]*)?$")
DESIRED_ENV = "TSRECONCILE_DESIRED"
"""Environment variable carrying the declaration's JSON into the Job's container."""
ROLE_OPTIONS = ("LOGIN", "LOGIN REPLICATION")
"""Attributes a missing role may be created with."""


@dataclass(frozen=True)
class RoleSpec:
    """A login role and the mounted file holding its password."""

    role: str
    password_file: str
    create_options: str = "LOGIN"
    """Attributes when the role is missing and must be created (one of ``ROLE_OPTIONS``)."""


@dataclass(frozen=True)
class Desired:
    """Everything one reconciler run makes true."""

    patroni_url: str
    """Patroni REST API of any member, e.g. ``http://<headless service>:8008``."""
    superuser: str
    superuser_password_file: str
    restapi_user: str
    restapi_password_file: str
    roles: Tuple[RoleSpec, ...] = ()
    extensions: Tuple[str, ...] = ("timescaledb", "pg_stat_statements")
    """Extensions updated to the image's default version in every database that has them."""
    dcs_parameters: Dict[str, str] = field(default_factory=dict)
    """PostgreSQL parameters Patroni takes only from its DCS (cluster-wide dynamic configuration)."""
    managed_dcs_parameters: Tuple[str, ...] = ()
    """Every DCS-only parameter name the declaration owns: one found in the DCS but no longer declared
    (an override removed from the stack) is reset to PostgreSQL's default."""
    postgres_major: Optional[int] = None
    """The major version the running server must have; None skips the check."""
    timeout_seconds: int = 600
    """Longest wait for one step (a member to apply settings, restart, or a switchover to finish)."""

    def __post_init__(self) -> None:
        for spec in self.roles:
            if not _IDENTIFIER.match(spec.role) or spec.create_options not in ROLE_OPTIONS:
                raise ValueError(f"bad role spec {spec.role!r} ({spec.create_options!r})")
        for name in (self.superuser, self.restapi_user, *self.extensions):
            if not _IDENTIFIER.match(name):
                raise ValueError(f"{name!r} is not a plain lower-case identifier")
        for name, value in self.dcs_parameters.items():
            if not _PARAMETER.match(name) or not isinstance(value, str):
                raise ValueError(f"bad parameter {name!r} = {value!r}")
        for name in self.managed_dcs_parameters:
            if not _PARAMETER.match(name):
                raise ValueError(f"bad parameter name {name!r}")

    def to_json(self) -> str:
        """Stable text (sorted keys): equal declarations give equal text, so equal Job names."""
        return json.dumps(asdict(self), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> "Desired":
        raw: Dict[str, Any] = json.loads(text)
        raw["roles"] = tuple(RoleSpec(**spec) for spec in raw.get("roles", ()))
        raw["extensions"] = tuple(raw.get("extensions", ()))
        raw["managed_dcs_parameters"] = tuple(raw.get("managed_dcs_parameters", ()))
        return cls(**raw)
