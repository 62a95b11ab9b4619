"""The TimescaleDB component: a Patroni-managed HA StatefulSet, its pod, credentials, Patroni config and tuning."""

from .component import (
    TlsIssuer,
    certificate_dns_names,
    DEFAULT_EXPORTER_IMAGE,
    DEFAULT_IMAGE,
    DEFAULT_POD_NETWORK_CIDRS,
    DEFAULT_POSTGRES_MAJOR,
    StorageArgs,
    TimescaleDB,
    TimescaleDBArgs,
    check_args,
)
from .patroni_config import PatroniTiming

__all__ = [
    "DEFAULT_EXPORTER_IMAGE", "DEFAULT_IMAGE", "DEFAULT_POD_NETWORK_CIDRS", "DEFAULT_POSTGRES_MAJOR", "PatroniTiming",
    "StorageArgs", "TimescaleDB", "TimescaleDBArgs", "TlsIssuer", "certificate_dns_names", "check_args",
]
