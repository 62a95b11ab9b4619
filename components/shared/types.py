"""Typed values that components hand to each other (objects, not retyped strings)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from decimal import Decimal
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from .quantity import byte_size, cpu_cores


class ConnectionSecretKeys:
    """Keys of the application connection Secret that the TimescaleDB component writes."""

    HOST = "host"
    PORT = "port"
    DBNAME = "dbname"
    USER = "user"
    PASSWORD = "password"
    URI = "uri"
    ALL = (HOST, PORT, DBNAME, USER, PASSWORD, URI)


@dataclass(frozen=True, kw_only=True)
class Resources:
    """CPU and memory requests and limits of one container, as Kubernetes quantities."""

    cpu_request: str
    """CPU request, e.g. ``250m``."""
    memory_request: str
    """Memory request, e.g. ``512Mi``."""
    cpu_limit: str | None = None
    """CPU limit; default none (no CFS throttling), which is the usual advice for databases."""
    memory_limit: str | None = None
    """Memory limit; default equal to the request (memory is not compressible)."""

    def check(self, field: str) -> Resources:
        """Raise ``ValueError`` naming ``field`` if a quantity is malformed or a limit is below its request."""
        request_cores = cpu_cores(self.cpu_request, field=f"{field}.cpu_request")
        request_bytes = byte_size(self.memory_request, field=f"{field}.memory_request")
        if self.cpu_limit is not None:
            limit_cores = cpu_cores(self.cpu_limit, field=f"{field}.cpu_limit")
            if limit_cores < request_cores:
                raise ValueError(
                    f"{field}.cpu_limit ({self.cpu_limit}) must be >= cpu_request ({self.cpu_request})"
                )
        if self.memory_limit is not None:
            limit_bytes = byte_size(self.memory_limit, field=f"{field}.memory_limit")
            if limit_bytes < request_bytes:
                raise ValueError(
                    f"{field}.memory_limit ({self.memory_limit}) must be >= memory_request ({self.memory_request})"
                )
        return self

    @property
    def cpu_cores(self) -> Decimal:
        """CPU available to the container: the limit when set, else the request."""
        return cpu_cores(self.cpu_limit or self.cpu_request, field="cpu")

    @property
    def memory_bytes(self) -> int:
        """Memory available to the container: the limit (which defaults to the request)."""
        return byte_size(self.memory_limit or self.memory_request, field="memory")

    def to_args(self) -> k8s.core.v1.ResourceRequirementsArgs:
        """The container's ``resources`` block."""
        limits = {"memory": self.memory_limit or self.memory_request}
        if self.cpu_limit is not None:
            limits["cpu"] = self.cpu_limit
        return k8s.core.v1.ResourceRequirementsArgs(
            requests={"cpu": self.cpu_request, "memory": self.memory_request},
            limits=limits,
        )


@dataclass(frozen=True, kw_only=True)
class DatabaseConnection:
    """Where clients reach the database and which Secret holds their credentials."""

    read_write_host: pulumi.Output[str]
    """DNS name of the Service that always points at the primary."""
    read_only_host: pulumi.Output[str]
    """DNS name of the Service that points at replicas (or the primary when there are none)."""
    port: int
    """PostgreSQL port of both Services."""
    database: str
    """Database name."""
    user: str
    """Role name."""
    secret_name: pulumi.Output[str]
    """Secret holding ``ConnectionSecretKeys.ALL`` for this role."""
    client_labels: Mapping[str, str]
    """Pod labels the database NetworkPolicy admits as clients."""
    server_pod_labels: Mapping[str, str] = field(default_factory=dict)
    """Labels of the pods behind the Services (the database's, or a pooler's), for clients' egress policies;
    default none (any pod on ``server_port``)."""
    server_namespace: pulumi.Input[str] | None = None
    """Namespace of those pods, the only one clients' egress policies admit them in; default None: the
    client's own namespace."""
    server_port: int | None = None
    """Port of those pods behind the Services' ``port`` (egress policies see pod ports); default None: ``port``."""
    ca_secret_name: pulumi.Input[str] | None = None
    """Secret whose ``ca.crt`` signed the server certificate: clients then connect with ``sslmode=verify-full``;
    default None (the server has no TLS)."""


@dataclass(frozen=True, kw_only=True)
class ScrapeTarget:
    """Pods that expose Prometheus metrics on a named container port."""

    job: str
    """Short name of the scrape job, e.g. ``postgres-exporter``."""
    namespace: pulumi.Input[str]
    """Namespace of the pods."""
    pod_labels: Mapping[str, str]
    """Labels that select exactly these pods."""
    port_name: str
    """Name of the container port that serves metrics."""
    path: str = "/metrics"
    """HTTP path of the metrics endpoint."""
    https_ca_secret: str | None = None
    """Scrape over HTTPS, verifying against ``ca.crt`` of this Secret (in the monitors' namespace); None: HTTP."""
    https_server_name: pulumi.Input[str] | None = None
    """The name the endpoint's certificate must hold (required with ``https_ca_secret``: pods are scraped by IP)."""


@dataclass(frozen=True, kw_only=True)
class ScaleTarget:
    """What an autoscaler needs of the object it scales, taken from that object's outputs."""

    api_version: pulumi.Output[str]
    kind: pulumi.Output[str]
    name: pulumi.Output[str]
    requested_resources: frozenset[str]
    """Resource names (``cpu``, ``memory``) that every container of the target requests."""
    min_replicas_floor: int
    """The fewest replicas the target may ever run (a database's configured replicas)."""
    stateful: bool
    """True for a database: scale-down must be slow and one pod at a time."""

    @classmethod
    def of(
        cls,
        resource: k8s.apps.v1.StatefulSet | k8s.apps.v1.Deployment,
        *,
        container_resources: Sequence[Resources],
        min_replicas_floor: int,
        stateful: bool,
    ) -> ScaleTarget:
        """Describe ``resource`` from its own outputs and the resources its containers request."""
        requested = frozenset(
            name
            for name in ("cpu", "memory")
            if container_resources
            and all(getattr(r, f"{name}_request") for r in container_resources)
        )
        return cls(
            api_version=resource.api_version,
            kind=resource.kind,
            name=resource.metadata.name,
            requested_resources=requested,
            min_replicas_floor=min_replicas_floor,
            stateful=stateful,
        )


@dataclass(frozen=True, kw_only=True)
class SecretFile:
    """One key of a Secret, to be mounted as a file."""

    secret_name: pulumi.Input[str]
    key: str


@dataclass(frozen=True, kw_only=True)
class ReconcileTarget:
    """What the reconciler needs to make a running database match its declaration (made by TimescaleDB)."""

    name: str
    """The database component's name (its StatefulSet and Patroni scope); names the reconciler's objects."""
    namespace: pulumi.Input[str]
    image: str
    """The database image: the reconciler Job runs on it (its Python and driver)."""
    run_as_user: int
    """The image's ``postgres`` uid (and gid)."""
    pod_labels: Mapping[str, str]
    """Labels selecting the members (the reconciler's NetworkPolicy admits it to them)."""
    patroni_url: pulumi.Output[str]
    """Patroni REST API of the members (``http://<headless service>:8008``)."""
    postgres_port: int
    patroni_port: int
    restapi_user: str
    restapi_password: SecretFile
    settings_user: str
    """A ``pg_monitor`` role the Job reads each member's settings as (never the superuser)."""
    settings_password: SecretFile
    settings_database: str
    """A database ``settings_user`` may connect to."""
    ca_secret_name: str | None
    """The TLS Secret whose ``ca.crt`` the Job verifies members against (``verify-full``); None without TLS."""
    dcs_parameters: Mapping[str, str]
    """PostgreSQL parameters Patroni reads only from its dynamic configuration."""
    managed_dcs_parameters: Sequence[str]
    """Every DCS-only parameter name: one set in the DCS but not declared is reset to its default."""
    dcs_settings: Mapping[str, bool]
    """Top-level keys of Patroni's dynamic configuration the declaration owns (``synchronous_mode``, ...)."""
    ready: pulumi.Resource
    """The resource whose readiness means the members run the declared image (the StatefulSet)."""


def registrable(value: DatabaseConnection | ScrapeTarget | ScaleTarget) -> dict[str, Any]:
    """A typed value as a dict ``register_outputs`` can record (the engine serializes no dataclasses or sets)."""
    plain: dict[str, Any] = {}
    for item in fields(value):
        raw = getattr(value, item.name)
        plain[item.name] = sorted(raw) if isinstance(raw, frozenset) else dict(raw) if isinstance(raw, Mapping) else raw
    return plain
