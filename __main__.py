"""timescale-k8s: TimescaleDB with autoscaling, monitoring and time-series workloads, per stack."""

from __future__ import annotations

import dataclasses

import pulumi
import pulumi_kubernetes as k8s

from components.autoscaler import Autoscaler, AutoscalerArgs
from components.monitoring import Monitoring, MonitoringArgs
from components.namespace import StackNamespace, StackNamespaceArgs
from components.pooler import Pooler, PoolerArgs
from components.reconciler import Reconciler, ReconcilerArgs
from components.timescaledb import TimescaleDB
from components.workload import MigrationJob, MigrationJobArgs, Workload, WorkloadArgs
from stack import DATABASE_NAME, ROLE_PASSWORDS_OUTPUT, read_stack_config
from stack.reader import ConfigError
from stack.pooler import POOLER_NAME

# 1. Config: typed and validated; a bad value stops here, before any resource exists, as one message
#    listing every problem (pulumi.RunError: Pulumi prints it without a traceback).
try:
    config = read_stack_config()
except ConfigError as error:
    raise pulumi.RunError(str(error)) from None

# 2. Provider: kube context from config, or plain manifests rendered for GitOps.
provider = k8s.Provider(
    "kubernetes",
    context=config.cluster.context,
    namespace=config.cluster.namespace,
    render_yaml_to_directory=config.cluster.render_dir,
    enable_server_side_apply=True,
)
with_provider = pulumi.ResourceOptions(provider=provider)

# 3. Namespace (owned and protected with the data, or an existing one).
namespace = StackNamespace(
    "namespace",
    StackNamespaceArgs(
        name=config.cluster.namespace, create=config.cluster.create_namespace, protect=config.database.args.protect
    ),
    opts=with_provider,
)

# 4. Database, and its autoscaler (which adds read replicas). A standby cluster's data holds its source's roles:
#    it takes the source stack's role passwords instead of generating its own.
database_args = dataclasses.replace(config.database.args, namespace=namespace.name)
if config.database.passwords_from_stack is not None:
    source = pulumi.StackReference("passwords-source", stack_name=config.database.passwords_from_stack)
    database_args = dataclasses.replace(database_args, source_passwords=source.require_output(ROLE_PASSWORDS_OUTPUT))
database = TimescaleDB(DATABASE_NAME, database_args, opts=with_provider)
if config.database.autoscaling is not None:
    Autoscaler(
        f"{DATABASE_NAME}-autoscaler",
        AutoscalerArgs(namespace=namespace.name, target=database.scale_target, **config.database.autoscaling.spec_fields()),
        opts=with_provider,
    )

# 4b. Reconciler: after each rollout, make the running cluster match the declaration (DCS parameters,
#     passwords, extension versions); re-created, and so re-run, only when that declaration changes.
reconciler = Reconciler(f"{DATABASE_NAME}-reconciler", ReconcilerArgs(target=database.reconcile_target), opts=with_provider)

# 5. Pooler (when enabled): PgBouncer in front of the primary and the replicas; the workloads connect
#    through it, the migration Job keeps its direct connection (it holds a session advisory lock).
scrape_targets = list(database.scrape_targets)
app_connection = database.app_connection
if config.pooler is not None:
    assert database.pooler_lookup is not None  # the config turns the lookup role on with the pooler
    pooler = Pooler(
        POOLER_NAME,
        PoolerArgs(
            namespace=namespace.name,
            database=database.app_connection,
            lookup=database.pooler_lookup,
            **config.pooler.args_fields(),
        ),
        opts=with_provider,
    )
    app_connection = pooler.connection
    scrape_targets.append(pooler.scrape_target)
    pulumi.export("poolerPrimaryHost", pooler.connection.read_write_host)
    pulumi.export("poolerReplicaHost", pooler.connection.read_only_host)

# 6. Workloads: the migration Job first, then the generator (writes to the primary) and the consumer
#    (reads from the replicas).
if config.workloads is not None:
    image = config.workloads.image
    migration = MigrationJob(
        "migrate",
        MigrationJobArgs(
            namespace=namespace.name,
            image=image,
            database=database.app_connection,
            resources=config.workloads.migration_resources,
        ),
        opts=with_provider,
    )
    for role, command, app, read_only in (
        ("generator", "generate", config.workloads.generator, False),
        ("consumer", "consume", config.workloads.consumer, True),
    ):
        workload = Workload(
            role,
            WorkloadArgs(
                namespace=namespace.name,
                image=image,
                command_args=[command],
                component=role,
                database=app_connection,
                read_only=read_only,
                replicas=app.replicas,
                resources=app.resources,
                env=app.settings,
                autoscaling=app.autoscaling,
                metrics_namespace=config.monitoring.prometheus_namespace,
                after=[migration.job],
            ),
            opts=with_provider,
        )
        scrape_targets.append(workload.scrape_target)

# 7. Monitoring: our monitors, rules and dashboards (and the Prometheus stack itself in "install" mode).
grafana_url_hint: pulumi.Input[str] = "monitoring is disabled for this stack"
if config.monitoring.mode != "disabled":
    monitoring = Monitoring(
        "monitoring",
        MonitoringArgs(
            namespace=namespace.name,
            mode=config.monitoring.mode,
            scrape_targets=scrape_targets,
            analysis_datasource=database.reader_connection,
            analysis_password=database.reader_password,
            # Without a TLS Secret the database serves plain connections only; with one, Grafana verifies it.
            analysis_sslmode="verify-full" if config.database.args.tls_secret_name else "disable",
            install=config.monitoring.install,
            existing=config.monitoring.existing,
            backup_max_age_seconds=database.backup_max_age_seconds,
        ),
        opts=with_provider,
    )
    grafana_url_hint = monitoring.grafana_url_hint

# 8. Exports: where things are; passwords only as secrets.
pulumi.export("namespace", namespace.name)
pulumi.export("primaryHost", database.app_connection.read_write_host)
pulumi.export("replicaHost", database.app_connection.read_only_host)
pulumi.export("port", database.port)
pulumi.export("statefulSetName", database.statefulset.metadata.name)
pulumi.export("appSecretName", database.app_connection.secret_name)
pulumi.export("readerSecretName", database.reader_connection.secret_name)
pulumi.export("superuserSecretName", database.superuser_secret_name)
pulumi.export("appPassword", pulumi.Output.secret(database.app_password))
pulumi.export(ROLE_PASSWORDS_OUTPUT, database.role_passwords)  # secret: for a standby stack's passwordsFromStack
pulumi.export("grafanaUrlHint", grafana_url_hint)
pulumi.export("clientLabels", database.client_labels)
pulumi.export("reconcilerJob", reconciler.job_name)
