"""The Pooler component: PgBouncer in front of the primary and the replicas, auth_query through a lookup role."""

from .auth import LOOKUP_ROLE, LookupCredentials
from .component import (
    DEFAULT_EXPORTER_IMAGE,
    DEFAULT_IMAGE,
    DEFAULT_RESOURCES,
    SCRAPE_JOB,
    Pooler,
    PoolerArgs,
    check_args,
)
from .pgbouncer_ini import POOL_MODES, PoolSettings

__all__ = [
    "DEFAULT_EXPORTER_IMAGE",
    "DEFAULT_IMAGE",
    "DEFAULT_RESOURCES",
    "LOOKUP_ROLE",
    "POOL_MODES",
    "SCRAPE_JOB",
    "LookupCredentials",
    "PoolSettings",
    "Pooler",
    "PoolerArgs",
    "check_args",
]
