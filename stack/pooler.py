"""The ``pooler:`` section: PgBouncer in front of the database (off unless ``enabled``).

Checked here, before any resource exists: each path's pool settings, that the server connections
all pooler pods may open fit the database's ``max_connections`` (less the superuser-reserved slots,
with room for Patroni, the exporter, the migration Job and an operator's session), and TLS: with ``timescaledb.tlsSecretName`` the
pooler needs a certificate of its own, ``pooler.tlsSecretName`` (a Secret you make, or with
``timescaledb.tlsIssuer`` the one the pooler's cert-manager Certificate writes, from the same issuer).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from components.autoscaler import AutoscalingSpec
from components.pooler import DEFAULT_EXPORTER_IMAGE, DEFAULT_IMAGE, DEFAULT_RESOURCES, POOL_MODES, PoolSettings
from components.pooler.tls import certificate_dns_names, check_tls
from components.shared.types import Resources
from components.timescaledb import TimescaleDBArgs, TlsIssuer
from components.timescaledb.checks import reserved_connections
from components.timescaledb.component import postgresql_parameters
from stack.reader import ConfigError, ConfigSection, checked

POOLER_NAME = "pooler"
"""The Pooler component's name (its objects, and with TLS its fixed Service names ``pooler-rw``/``pooler-ro``)."""

DIRECT_CONNECTIONS = 10
"""Server connections kept free of pooler traffic besides the superuser-reserved slots: Patroni,
postgres_exporter, the migration Job, Grafana's reader and an operator's session."""

DEFAULT_POOL_SIZES = {"readWrite": 4, "readOnly": 2}
"""Server connections per pooler pod by default: two pods of each fit the default 1Gi database
(max_connections 25, minus 3 superuser-reserved and 10 direct: 12); bigger databases configure more."""

AutoscalingParser = Callable[..., AutoscalingSpec | None]


@dataclass(frozen=True, kw_only=True)
class PoolerConfig:
    """The pooler's checked settings; the program adds the database connection and lookup credentials."""

    read_write: PoolSettings
    read_only: PoolSettings
    max_client_connections: int
    image: str
    exporter_image: str
    resources: Resources
    autoscaling: AutoscalingSpec | None
    tls_secret_name: str | None
    """The pooler's own TLS Secret (``pooler.tlsSecretName``); set exactly when the database has TLS."""
    tls_issuer: TlsIssuer | None
    """The database's cert-manager issuer, which then also signs the pooler's certificate."""
    monitoring_namespace: str | None

    def args_fields(self) -> dict[str, Any]:
        """Keyword arguments of ``PoolerArgs`` besides namespace, database and lookup."""
        return {
            "read_write": self.read_write,
            "read_only": self.read_only,
            "max_client_connections": self.max_client_connections,
            "image": self.image,
            "exporter_image": self.exporter_image,
            "resources": self.resources,
            "autoscaling": self.autoscaling,
            "tls_secret_name": self.tls_secret_name,
            "tls_issuer": self.tls_issuer,
            "monitoring_namespace": self.monitoring_namespace,
        }


def parse_pooler(section: ConfigSection, *, database: TimescaleDBArgs, autoscaling: AutoscalingParser) -> PoolerConfig | None:
    """The ``pooler`` section, or None when it is absent or ``enabled: false`` (its keys are still checked)."""
    enabled = section.boolean("enabled", False)
    instances = section.integer("instances", PoolSettings.instances, minimum=1, maximum=50)
    paths = {
        key: _pool(section.section(key), instances=instances, default_size=size)
        for key, size in (("readWrite", DEFAULT_POOL_SIZES["readWrite"]), ("readOnly", DEFAULT_POOL_SIZES["readOnly"]))
    }
    config = PoolerConfig(
        read_write=paths["readWrite"],
        read_only=paths["readOnly"],
        max_client_connections=section.integer("maxClientConnections", 1000, minimum=10, maximum=100_000),
        image=section.image("image", DEFAULT_IMAGE),
        exporter_image=section.image("exporterImage", DEFAULT_EXPORTER_IMAGE),
        resources=section.resources("resources", DEFAULT_RESOURCES),
        autoscaling=autoscaling(section, floor=instances, stateful=False, requested=frozenset({"cpu", "memory"})),
        tls_secret_name=section.optional(section.text, "tlsSecretName"),
        tls_issuer=database.tls_issuer,
        monitoring_namespace=database.monitoring_namespace,
    )
    section.done()
    if not enabled:
        return None
    checked(
        lambda: check_tls(
            tls_secret_name=config.tls_secret_name,
            database_ca_secret_name=database.tls_secret_name,
            tls_issuer=config.tls_issuer,
            dns_names=certificate_dns_names(POOLER_NAME, str(database.namespace)),
        ),
        prefix=section.path,
        renames=_TLS_KEYS,
    )
    _check_connection_budget(section, config, database)
    return config


_TLS_KEYS = {
    "tls_secret_name": "tlsSecretName",
    "database.ca_secret_name": "timescaledb.tlsSecretName",
    "tls_issuer": "timescaledb.tlsIssuer",
}


def _pool(block: ConfigSection, *, instances: int, default_size: int) -> PoolSettings:
    pool = PoolSettings(
        instances=block.integer("instances", instances, minimum=1, maximum=50),
        pool_size=block.integer("poolSize", default_size, minimum=1, maximum=1000),
        mode=block.text("mode", "transaction", choices=POOL_MODES),  # type: ignore[arg-type]
    )
    block.done()
    return checked(lambda: pool.check(block.path), renames={"pool_size": "poolSize"})


def _check_connection_budget(section: ConfigSection, config: PoolerConfig, database: TimescaleDBArgs) -> None:
    """Every pooler pod at its pool size must fit ``max_connections`` on one server, or PostgreSQL refuses logins."""
    max_connections = int(postgresql_parameters(database)["max_connections"])
    reserved = reserved_connections(database)
    budget = max_connections - reserved - DIRECT_CONNECTIONS
    scale = (lambda instances: max(instances, config.autoscaling.max_replicas)) if config.autoscaling else (lambda i: i)
    read_write = scale(config.read_write.instances) * config.read_write.pool_size
    read_only = scale(config.read_only.instances) * config.read_only.pool_size
    # With one member the read-only Service selects the primary, so both paths land on it.
    on_primary = read_write + (read_only if database.replicas == 1 else 0)
    for what, used in (("read-write (plus read-only with one member)", on_primary), ("read-only", read_only)):
        if used > budget:
            raise ConfigError(
                f"{section.path}: the {what} pools may open {used} server connections "
                f"(pods x poolSize, at the autoscaler's maximum), but the database allows {budget} "
                f"(max_connections {max_connections} minus {reserved} reserved for superusers and "
                f"{DIRECT_CONNECTIONS} for direct clients); "
                "lower poolSize or instances, or raise timescaledb.resources / parameters.max_connections"
            )
