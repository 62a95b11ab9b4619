"""The TimescaleDB component: a Patroni-managed HA StatefulSet, its pod, credentials, Patroni config and tuning."""

from components.timescaledb.component import (
    TlsIssuer,
    certificate_dns_names,
    DEFAULT_EXPORTER_IMAGE,
    DEFAULT_IMAGE,
    StorageArgs,
    TimescaleDB,
    TimescaleDBArgs,
    check_args,
)

__all__ = [
    "DEFAULT_EXPORTER_IMAGE", "DEFAULT_IMAGE", "StorageArgs", "TimescaleDB", "TimescaleDBArgs", "TlsIssuer", "certificate_dns_names",
    "check_args",
]
