"""The orders team's database: TimescaleDB with its reconciler, PgBouncer in front, monitoring through the
cluster's existing Prometheus Operator and Grafana. Only ``timescale_k8s`` is imported, from the installed package."""

import pulumi
import pulumi_kubernetes as k8s

from timescale_k8s.monitoring import ExistingSettings, Monitoring, MonitoringArgs
from timescale_k8s.pooler import PoolSettings, Pooler, PoolerArgs
from timescale_k8s.reconciler import Reconciler, ReconcilerArgs
from timescale_k8s.shared import Resources
from timescale_k8s.timescaledb import TimescaleDB, TimescaleDBArgs

NAMESPACE = "orders"

config = pulumi.Config()
provider = k8s.Provider("k8s", context=config.get("kubeContext") or "my-cluster", enable_server_side_apply=True)
opts = pulumi.ResourceOptions(provider=provider)

namespace = k8s.core.v1.Namespace("orders", metadata={"name": NAMESPACE}, opts=opts)
in_namespace = pulumi.ResourceOptions(provider=provider, depends_on=[namespace])

database = TimescaleDB(
    "orders-db",
    TimescaleDBArgs(
        namespace=NAMESPACE,
        replicas=2,
        resources=Resources(cpu_request="1", memory_request="4Gi"),
        pooler_lookup=True,
        monitoring_namespace="monitoring",
        protect=True,
    ),
    opts=in_namespace,
)
Reconciler("orders-db-reconciler", ReconcilerArgs(target=database.reconcile_target), opts=in_namespace)

assert database.pooler_lookup is not None  # pooler_lookup=True above
pooler = Pooler(
    "orders-pool",
    PoolerArgs(
        namespace=NAMESPACE,
        database=database.app_connection,
        lookup=database.pooler_lookup,
        read_write=PoolSettings(instances=2, pool_size=20),
        monitoring_namespace="monitoring",
    ),
    opts=in_namespace,
)

Monitoring(
    "orders-monitoring",
    MonitoringArgs(
        namespace=NAMESPACE,
        mode="existing",
        existing=ExistingSettings(monitor_labels={"release": "kube-prometheus-stack"}, grafana_namespace="monitoring"),
        scrape_targets=[*database.scrape_targets, pooler.scrape_target],
        analysis_datasource=database.reader_connection,
        analysis_password=database.reader_password,
    ),
    opts=in_namespace,
)

pulumi.export("writeHost", pooler.connection.read_write_host)
pulumi.export("readHost", pooler.connection.read_only_host)
pulumi.export("appSecretName", database.app_connection.secret_name)
pulumi.export("clientLabels", database.client_labels)
