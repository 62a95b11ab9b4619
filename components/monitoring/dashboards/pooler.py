"""PgBouncer pooler: clients and server connections per pool, client wait, transactions, pool saturation."""

from __future__ import annotations

from typing import Any

from grafana_foundation_sdk.builders import dashboard as dash

from .common import (
    NAMESPACE, RATE, DashboardIds, prom, prometheus_dashboard, stat_panel, timeseries_panel, to_json,
)
from ..pooler_rules import POOLER_JOB, SATURATION_RATIO

SLUG = "pooler"
N = f'{NAMESPACE}, job="{POOLER_JOB}"'


def build(ids: DashboardIds) -> dict[str, Any]:
    """The dashboard JSON."""
    board = prometheus_dashboard(
        ids, SLUG, "Connection pooler",
        "PgBouncer in front of the primary (rw) and the replicas (ro): clients, server connections, waits.",
        "pgbouncer_up",
    )
    board = (
        board.with_row(dash.Row("Now"))
        .with_panel(stat_panel("PgBouncers up", "short", prom(f"sum(pgbouncer_up{{{N}}})"),
                               steps=((None, "red"), (1, "green"))))
        .with_panel(stat_panel("Clients", "short",
                               prom(f"sum(pgbouncer_pools_client_active_connections{{{N}}})"
                                    f" + sum(pgbouncer_pools_client_waiting_connections{{{N}}})")))
        .with_panel(stat_panel("Clients waiting", "short",
                               prom(f"sum(pgbouncer_pools_client_waiting_connections{{{N}}})"),
                               steps=((None, "green"), (1, "orange"), (20, "red"))))
        .with_panel(stat_panel("Longest client wait", "s",
                               prom(f"max(pgbouncer_pools_client_maxwait_seconds{{{N}}})"),
                               steps=((None, "green"), (1, "orange"), (5, "red"))))
        .with_row(dash.Row("Pools"))
        .with_panel(timeseries_panel(
            "Client connections per pod", "short",
            prom(f"sum by (pod) (pgbouncer_pools_client_active_connections{{{N}}})", "{{pod}} active"),
            prom(f"sum by (pod) (pgbouncer_pools_client_waiting_connections{{{N}}})", "{{pod}} waiting")))
        .with_panel(timeseries_panel(
            "Server connections per pod", "short",
            prom(f"sum by (pod) (pgbouncer_pools_server_active_connections{{{N}}})", "{{pod}} active"),
            prom(f"sum by (pod) (pgbouncer_pools_server_idle_connections{{{N}}})", "{{pod}} idle"),
            prom(f"max by (pod) (pgbouncer_databases_max_connections{{{N}}})", "{{pod}} limit"),
            description="Server connections each PgBouncer holds to PostgreSQL; the limit is its pool size."))
        .with_panel(timeseries_panel(
            "Pool saturation", "percentunit",
            prom(f"max by (pod, name) ({SATURATION_RATIO}{{{NAMESPACE}}})", "{{pod}} {{name}}"),
            description="Server connections in use over the pool's limit (recorded by the pooler rules)."))
        .with_panel(timeseries_panel(
            "Client wait per transaction", "s",
            prom(f"sum by (pod) (rate(pgbouncer_stats_client_wait_seconds_total{{{N}}}[{RATE}]))"
                 f" / sum by (pod) (rate(pgbouncer_stats_sql_transactions_pooled_total{{{N}}}[{RATE}]) > 0)",
                 "{{pod}}"),
            description="Seconds clients waited for a server connection, per pooled transaction."))
        .with_panel(timeseries_panel(
            "Transactions and queries per second", "short",
            prom(f"sum by (pod) (rate(pgbouncer_stats_sql_transactions_pooled_total{{{N}}}[{RATE}]))", "{{pod}} xact"),
            prom(f"sum by (pod) (rate(pgbouncer_stats_queries_pooled_total{{{N}}}[{RATE}]))", "{{pod}} queries")))
        .with_panel(timeseries_panel(
            "Longest client wait", "s",
            prom(f"max by (pod) (pgbouncer_pools_client_maxwait_seconds{{{N}}})", "{{pod}}")))
    )
    return to_json(board)
