"""Typed, validated stack configuration: read once from structured Pulumi config, then passed around.

Components never read config; ``__main__`` calls :func:`read_stack_config` and hands the typed values
to the components. Every mistake fails here, before a single resource is registered, with an error that
names the config key, the bad value and what is allowed.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import pulumi

from components.autoscaler import AutoscalingSpec
from components.monitoring import ExistingSettings, InstallSettings
from components.shared.types import Resources
from components.timescaledb import (
    DEFAULT_EXPORTER_IMAGE,
    DEFAULT_IMAGE,
    DEFAULT_POSTGRES_MAJOR,
    StorageArgs,
    TimescaleDBArgs,
    TlsIssuer,
    check_args,
)
from components.timescaledb.backup import BackupArgs
from components.workload.memory import GeneratorLoad
from stack.backup import parse_backup
from components.timescaledb.patroni_config import SYNCHRONOUS_MODES
from stack.ha import HA_KEYS, check_replication_capacity, patroni_timing, pod_network_cidrs
from stack.pooler import PoolerConfig, parse_pooler
from stack.reader import ConfigError, ConfigSection, ProblemCollector, checked, config_spelling

PROJECT = "timescale-k8s"
DATABASE_NAME = "timescaledb"
"""Component name of the database: also its StatefulSet name and Patroni scope, so it never changes."""
ROLE_PASSWORDS_OUTPUT = "rolePasswords"
"""The stack output with the database roles' passwords (secret), which a standby stack's ``passwordsFromStack`` reads."""

MAX_APP_REPLICAS = 1000
"""Most generator/consumer pods (and HPA maxReplicas) a stack may ask for: beyond is a typo, not a plan."""

MonitoringMode = Literal["install", "existing", "disabled"]


@dataclass(frozen=True, kw_only=True)
class ClusterConfig:
    """Where to deploy: kube context, namespace, and optional manifest rendering for GitOps."""

    context: str | None = None
    """Kube context of the provider; default: the kubeconfig's current context."""
    namespace: str = "timescale"
    """Namespace of everything this stack creates; default ``timescale``."""
    create_namespace: bool = True
    """Create (and own) the namespace; default true. False uses an existing one."""
    render_dir: str | None = None
    """Write plain manifests here instead of deploying (``render_yaml_to_directory``); default off."""


@dataclass(frozen=True, kw_only=True)
class DatabaseConfig:
    """The TimescaleDB cluster: the component's validated args, and the optional autoscaler."""

    args: TimescaleDBArgs
    """Checked with the component's own rules; ``namespace`` is the configured name (replace it with the
    Namespace resource's output to order creation), ``source_passwords`` unset (see ``passwords_from_stack``)."""
    autoscaling: AutoscalingSpec | None = None
    passwords_from_stack: str | None = None
    """The stack (``org/project/stack``) whose ``rolePasswords`` output are this cluster's ``source_passwords``
    (the program reads it through a ``StackReference``); checked as if given."""


@dataclass(frozen=True, kw_only=True)
class AppConfig:
    """One long-running workload (generator or consumer)."""

    replicas: int
    resources: Resources
    settings: Mapping[str, str]
    """Environment settings (``TSFLOW_*``) for the app, from typed config keys."""
    autoscaling: AutoscalingSpec | None = None


@dataclass(frozen=True, kw_only=True)
class WorkloadsConfig:
    """The generator, the consumer and the migration Job."""

    image: str
    generator: AppConfig
    consumer: AppConfig
    migration_resources: Resources


@dataclass(frozen=True, kw_only=True)
class MonitoringConfig:
    """How the stack is monitored; ``install``/``existing`` are the Monitoring component's checked settings."""

    mode: MonitoringMode
    install: InstallSettings | None = None
    existing: ExistingSettings | None = None
    prometheus_namespace: str | None = None
    """Namespace Prometheus scrapes from, admitted by the database NetworkPolicy (None: same namespace)."""
    grafana_namespace: str | None = None
    """Namespace Grafana runs in, whose client-labelled pods the NetworkPolicy admits (None: same namespace)."""


@dataclass(frozen=True, kw_only=True)
class StackConfig:
    """The whole stack's configuration."""

    cluster: ClusterConfig
    database: DatabaseConfig
    workloads: WorkloadsConfig | None
    """None when ``workloads.enabled`` is false."""
    monitoring: MonitoringConfig
    pooler: PoolerConfig | None = None
    """None unless ``pooler.enabled`` (``stack/pooler.py``)."""


DEFAULT_DATABASE_RESOURCES = Resources(cpu_request="500m", memory_request="1Gi")
DEFAULT_APP_RESOURCES = Resources(cpu_request="100m", memory_request="128Mi", memory_limit="256Mi")


def read_stack_config(project: str = PROJECT) -> StackConfig:
    """Read every key of this project's stack config and parse it (see :func:`parse_stack_config`)."""
    config = pulumi.Config(project)
    raw = {key: config.get_object(key) for key in _configured_keys(project)}
    return parse_stack_config(raw, project=project)


def parse_stack_config(raw: Mapping[str, Any], *, project: str = PROJECT) -> StackConfig:
    """Parse the project's config (top-level key → decoded value) into a :class:`StackConfig`.

    Each section is read even when another has failed (with the defaults standing in for what a failed
    section would have told it), so one :class:`ConfigError` lists every problem of the stack at once.
    A section that needs another's result (the pooler needs the database) waits for that one to be right.
    """
    root = ConfigSection(raw, f"{project}:")
    problems = ProblemCollector()
    cluster = problems.attempt(lambda: _cluster(root.section("cluster")))
    monitoring = problems.attempt(
        lambda: _monitoring(root.section("monitoring"), render_dir=cluster.render_dir if cluster else None))
    pooled = problems.attempt(lambda: root.section("pooler").boolean("enabled", False))  # the bootstrap creates the lookup role
    backup = problems.attempt(lambda: parse_backup(root.optional(root.section, "backup"), default_stanza=DATABASE_NAME))
    database = problems.attempt(lambda: _database(
        root.section("timescaledb"), namespace=(cluster or ClusterConfig()).namespace,
        scraper_namespace=monitoring.prometheus_namespace if monitoring else None,
        grafana_namespace=monitoring.grafana_namespace if monitoring else None,
        pooler_lookup=bool(pooled), backup=backup,
    ))
    workloads = problems.attempt(lambda: _workloads(root.section("workloads")))
    pooler = None
    if database is not None:
        pooler = problems.attempt(lambda: parse_pooler(root.section("pooler"), database=database.args, autoscaling=_autoscaling))
    problems.attempt(root.done)
    if cluster and monitoring and monitoring.install is not None and monitoring.install.monitoring_namespace == cluster.namespace:
        problems.add(
            f"{project}:monitoring.install.namespace ({cluster.namespace!r}): must differ from cluster.namespace; "
            "the chart needs a privileged namespace of its own (node-exporter) and both would create the Namespace"
        )
    problems.raise_any()
    assert cluster is not None and monitoring is not None and database is not None  # else raise_any raised
    return StackConfig(cluster=cluster, database=database, workloads=workloads, monitoring=monitoring, pooler=pooler)


def _cluster(section: ConfigSection) -> ClusterConfig:
    cluster = ClusterConfig(
        context=section.optional(section.text, "context"),
        namespace=section.dns_label("namespace", ClusterConfig.namespace),
        create_namespace=section.boolean("createNamespace", True),
        render_dir=section.optional(section.text, "renderDir"),
    )
    section.done()
    return cluster


def _database(
    section: ConfigSection,
    *,
    namespace: str,
    scraper_namespace: str | None,
    grafana_namespace: str | None = None,
    pooler_lookup: bool = False,
    backup: BackupArgs | None = None,
) -> DatabaseConfig:
    replicas = section.integer("replicas", 1, minimum=1, maximum=9)
    autoscaling = _autoscaling(section, floor=replicas, stateful=True, requested=frozenset({"cpu", "memory"}))
    if autoscaling is not None and autoscaling.min_replicas > replicas:
        raise ConfigError(
            f"{section.key_path('autoscaling.minReplicas')} ({autoscaling.min_replicas}): must not exceed "
            f"{section.key_path('replicas')} ({replicas}); the read-only Service and the PodDisruptionBudget are "
            f"built for replicas, so set replicas to {autoscaling.min_replicas}"
        )
    storage = section.section("storage")
    args = TimescaleDBArgs(
        namespace=namespace,
        replicas=replicas,
        image=section.text("image", DEFAULT_IMAGE),  # the timescaledb-ha tag policy is check_args'
        postgres_major=section.integer("postgresMajor", DEFAULT_POSTGRES_MAJOR, minimum=14, maximum=99),
        exporter_image=section.image("exporterImage", DEFAULT_EXPORTER_IMAGE),
        resources=section.resources("resources", DEFAULT_DATABASE_RESOURCES),
        storage=StorageArgs(
            data_size=storage.size("size", "10Gi"),
            storage_class=storage.optional(storage.text, "storageClass"),
            wal_size=storage.optional(storage.size, "walSize"),
        ),
        database=section.sql_identifier("database", "app"),
        app_user=section.sql_identifier("appUser", "app"),
        reader_user=section.sql_identifier("readerUser", "reader"),
        postgresql_parameters=section.string_map("parameters"),
        anti_affinity=section.text("antiAffinity", "preferred", choices=("preferred", "required")),  # type: ignore[arg-type]
        protect=section.boolean("protect", False),
        monitoring_namespace=scraper_namespace,
        client_namespaces=tuple(ns for ns in (grafana_namespace,) if ns is not None and ns != namespace),
        tls_secret_name=section.optional(section.text, "tlsSecretName"),
        tls_issuer=section.optional(lambda key: _tls_issuer(section.section(key)), "tlsIssuer"),
        autoscaled=autoscaling is not None,
        max_replicas=autoscaling.max_replicas if autoscaling is not None else None,
        pooler_lookup=pooler_lookup,
        backup=backup,
        pod_network_cidrs=pod_network_cidrs(section),
        patroni_timing=patroni_timing(section),
        synchronous_mode=section.text("synchronousMode", "on", choices=SYNCHRONOUS_MODES),  # type: ignore[arg-type]
        allow_unsafe=section.optional(section.string_list, "allowUnsafe") or (),
    )
    passwords_from_stack = section.optional(section.text, "passwordsFromStack")
    if passwords_from_stack is not None and not _STACK_NAME.match(passwords_from_stack):
        raise ConfigError(f"{section.key_path('passwordsFromStack')} ({passwords_from_stack!r}): must be a stack name "
                          "such as 'acme/timescale-k8s/prod' (organization/project/stack)")
    storage.done()
    section.done()
    # The stack's output is read by the program; an empty stand-in lets the rules see that it is given.
    as_given = dataclasses.replace(args, source_passwords={}) if passwords_from_stack is not None else args
    warnings = checked(lambda: check_args(DATABASE_NAME, as_given), prefix=section.path, renames=_DATABASE_KEYS)
    for warning in warnings:
        warn_once(config_spelling(warning, prefix=section.path, renames=_DATABASE_KEYS))
    check_replication_capacity(section, args, autoscaling)
    return DatabaseConfig(args=args, autoscaling=autoscaling, passwords_from_stack=passwords_from_stack)


_STACK_NAME = re.compile(r"^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+){0,2}$")
"""A stack reference: ``stack``, ``project/stack`` or ``organization/project/stack``."""

_WARNED: set[str] = set()


def warn_once(message: str) -> None:
    """``pulumi.log.warn`` ``message`` (shown by ``pulumi preview`` and ``up``) unless this process already did."""
    if message not in _WARNED:
        _WARNED.add(message)
        pulumi.log.warn(message)


def _tls_issuer(block: ConfigSection) -> TlsIssuer:
    """``tlsIssuer: {name, kind}``: the cert-manager issuer of the server certificate."""
    issuer = TlsIssuer(name=block.text("name"), kind=block.text("kind", "Issuer", choices=("Issuer", "ClusterIssuer")))  # type: ignore[arg-type]
    block.done()
    return issuer


_DATABASE_KEYS = {
    "storage.data_size": "storage.size",
    "storage.wal_size": "storage.walSize",
    "storage.storage_class": "storage.storageClass",
    "postgresql_parameters": "parameters",
    "exporter_image": "exporterImage",
    "app_user": "appUser",
    "reader_user": "readerUser",
    "anti_affinity": "antiAffinity",
    "tls_secret_name": "tlsSecretName",
    "tls_issuer": "tlsIssuer",
    "postgres_major": "postgresMajor",
    "synchronous_mode": "synchronousMode",
    "source_passwords": "passwordsFromStack",
    **HA_KEYS,
}


def _autoscaling(section: ConfigSection, *, floor: int, stateful: bool, requested: frozenset[str]) -> AutoscalingSpec | None:
    block = section.optional(section.section, "autoscaling")
    if block is None or not block.boolean("enabled", True):
        if block is not None:
            block.optional(block.integer, "minReplicas")
            block.optional(block.integer, "maxReplicas")
            block.optional(block.integer, "cpuUtilization")
            block.optional(block.integer, "memoryUtilization")
            block.done()
        return None
    min_replicas = block.integer("minReplicas", max(floor, 1), minimum=1, maximum=MAX_APP_REPLICAS)
    spec = AutoscalingSpec(
        min_replicas=min_replicas,
        max_replicas=block.integer("maxReplicas", minimum=1, maximum=MAX_APP_REPLICAS),
        cpu_utilization=block.optional(lambda k: block.integer(k, minimum=1, maximum=100), "cpuUtilization", 70),
        memory_utilization=block.optional(lambda k: block.integer(k, minimum=1, maximum=100), "memoryUtilization"),
    )
    block.done()
    return checked(
        lambda: spec.check(block.path, requested_resources=requested, min_replicas_floor=floor, stateful=stateful)
    )


def _workloads(section: ConfigSection) -> WorkloadsConfig | None:
    enabled = section.boolean("enabled", True)
    image = section.optional(lambda key: section.image(key, digest=True), "image")
    if enabled and image is None:
        raise ConfigError(
            f"{section.key_path('image')}: is required when workloads are enabled "
            "(the tsflow image you built, pinned by digest: 'repo/tsflow:0.1.0@sha256:...')"
        )
    generator = section.section("generator")
    consumer = section.section("consumer")
    migration = section.section("migration")
    load = GeneratorLoad(
        devices=generator.integer("devices", 100, minimum=1, maximum=1_000_000),
        metrics_per_device=generator.integer("metricsPerDevice", 4, minimum=1, maximum=100),
        batch_rows=generator.integer("batchRows", 20000, minimum=1, maximum=1_000_000),
    )
    workloads = WorkloadsConfig(
        image=image or "",
        generator=_app(
            generator,
            settings={
                "TSFLOW_DEVICES": str(load.devices),
                "TSFLOW_METRICS_PER_DEVICE": str(load.metrics_per_device),
                "TSFLOW_INTERVAL": _number_text(generator.number("intervalSeconds", 1.0, minimum=0.01, maximum=3600)),
                "TSFLOW_BATCH_ROWS": str(load.batch_rows),
            },
        ),
        consumer=_app(
            consumer,
            settings={
                "TSFLOW_INTERVAL": _number_text(consumer.number("intervalSeconds", 30.0, minimum=1, maximum=3600)),
                "TSFLOW_THRESHOLD": _number_text(consumer.number("zscoreThreshold", 4.0, minimum=1, maximum=100)),
            },
        ),
        migration_resources=migration.resources("resources", DEFAULT_APP_RESOURCES),
    )
    for block in (generator, consumer, migration, section):
        block.done()
    if enabled:
        checked(lambda: load.check_fits(workloads.generator.resources.memory_bytes, path=generator.path))
    return workloads if enabled else None


def _app(block: ConfigSection, *, settings: Mapping[str, str]) -> AppConfig:
    """A stateless tsflow app: replicas, resources, its ``TSFLOW_*`` settings and optional autoscaling."""
    return AppConfig(
        replicas=block.integer("replicas", 1, minimum=1, maximum=MAX_APP_REPLICAS),
        resources=block.resources("resources", DEFAULT_APP_RESOURCES),
        settings=settings,
        autoscaling=_autoscaling(block, floor=1, stateful=False, requested=frozenset({"cpu", "memory"})),
    )


def _monitoring(section: ConfigSection, *, render_dir: str | None) -> MonitoringConfig:
    mode = section.text("mode", "install", choices=("install", "existing", "disabled"))
    blocks = {key: section.optional(section.section, key) for key in ("install", "existing")}
    for key, block in blocks.items():
        if block is not None and key != mode:
            raise ConfigError(f"{block.path}: only applies when mode is {key!r} (mode is {mode!r})")
    if mode == "install" and render_dir is not None:
        raise ConfigError(
            f"{section.key_path('mode')} ('install'): cannot be rendered to cluster.renderDir ({render_dir!r}); "
            "a Helm release is installed, not rendered. Use 'existing' or 'disabled'"
        )
    if mode == "install":
        block = blocks["install"] or ConfigSection({}, section.key_path("install"))
        install_path = block.path
        defaults = InstallSettings()
        install = InstallSettings(
            monitoring_namespace=block.dns_label("namespace", defaults.monitoring_namespace),
            create_namespace=block.boolean("createNamespace", defaults.create_namespace),
            chart_version=block.text("chartVersion", defaults.chart_version),
            prometheus_retention=block.text("retention", defaults.prometheus_retention),
            prometheus_storage_size=block.size("storageSize", defaults.prometheus_storage_size),
            storage_class=block.optional(block.text, "storageClass"),
            prometheus_resources=block.resources("prometheusResources", defaults.prometheus_resources),
            grafana_resources=block.resources("grafanaResources", defaults.grafana_resources),
        )
        block.done()
        section.done()
        checked(lambda: install.check(install_path), renames=_MONITORING_KEYS)
        return MonitoringConfig(mode="install", install=install, prometheus_namespace=install.monitoring_namespace,
                                grafana_namespace=install.monitoring_namespace)
    if mode == "existing":
        block = blocks["existing"]
        if block is None:
            raise ConfigError(f"{section.key_path('existing')}: is required when mode is 'existing' (monitorLabels at least)")
        labels = block.string_map("monitorLabels")
        if not labels:
            raise ConfigError(
                f"{block.key_path('monitorLabels')}: must name the labels your Prometheus selects "
                "monitors and rules by, e.g. {release: kube-prometheus-stack}"
            )
        existing_path = block.path
        prometheus_namespace = block.optional(block.dns_label, "prometheusNamespace")
        # kube-prometheus-stack runs Grafana beside Prometheus: its data source sidecar watches only there.
        grafana_namespace = block.optional(block.dns_label, "grafanaNamespace") or prometheus_namespace
        existing = ExistingSettings(monitor_labels=labels, grafana_namespace=grafana_namespace)
        block.done()
        section.done()
        checked(lambda: existing.check(existing_path))
        return MonitoringConfig(mode="existing", existing=existing, prometheus_namespace=prometheus_namespace,
                                grafana_namespace=grafana_namespace)
    section.done()
    return MonitoringConfig(mode="disabled")


_MONITORING_KEYS = {
    "monitoring_namespace": "namespace",
    "chart_version": "chartVersion",
    "prometheus_retention": "retention",
    "prometheus_storage_size": "storageSize",
}


def _number_text(value: float) -> str:
    return str(int(value)) if value.is_integer() else str(value)


def _configured_keys(project: str) -> list[str]:
    """Keys set in this project's namespace of the stack config (the CLI passes them all to the program)."""
    from pulumi.runtime import config as runtime_config

    prefix = f"{project}:"
    keys = set(runtime_config.CONFIG.get()) | set(runtime_config.get_config_env())
    return sorted(key[len(prefix) :] for key in keys if key.startswith(prefix))
