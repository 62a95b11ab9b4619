"""The TimescaleDB component: a Patroni-managed HA StatefulSet, its pod, credentials, Patroni config and tuning."""

from components.timescaledb.component import (
    DEFAULT_EXPORTER_IMAGE,
    DEFAULT_IMAGE,
    DEFAULT_POSTGRES_MAJOR,
    StorageArgs,
    TimescaleDB,
    TimescaleDBArgs,
    check_args,
)

__all__ = ["DEFAULT_EXPORTER_IMAGE", "DEFAULT_IMAGE", "DEFAULT_POSTGRES_MAJOR", "StorageArgs", "TimescaleDB", "TimescaleDBArgs", "check_args"]
