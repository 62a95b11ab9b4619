"""Grafana dashboards of the Monitoring component, built with grafana-foundation-sdk (one module each)."""

from __future__ import annotations

from typing import Any

from . import ingest_pipeline, pooler, timescaledb_overview, timeseries_analysis
from .common import DashboardIds, targets

__all__ = ["DashboardIds", "build_dashboards", "prometheus_expressions", "sql_queries"]


def build_dashboards(ids: DashboardIds, *, with_analysis: bool, with_pooler: bool = False) -> dict[str, dict[str, Any]]:
    """Slug -> dashboard JSON (its ``uid`` is ``ids.uid(slug)``); the SQL analysis dashboard only when a
    database data source exists, the pooler's only when a pooler is scraped."""
    modules = [timescaledb_overview, ingest_pipeline] + ([timeseries_analysis] if with_analysis else [])
    modules += [pooler] if with_pooler else []
    return {module.SLUG: module.build(ids) for module in modules}


def prometheus_expressions(dashboard_json: dict[str, Any]) -> list[str]:
    """PromQL of every Prometheus target (still containing Grafana variables such as ``$namespace``)."""
    return [t["expr"] for t in targets(dashboard_json) if "expr" in t]


def sql_queries(dashboard_json: dict[str, Any]) -> list[str]:
    """SQL of every PostgreSQL target and query variable."""
    panel_sql = [t["rawSql"] for t in targets(dashboard_json) if "rawSql" in t]
    variables = dashboard_json.get("templating", {}).get("list", [])
    variable_sql = [v["query"] for v in variables
                    if v.get("datasource", {}).get("type") == timeseries_analysis.POSTGRES_DS_TYPE]
    return panel_sql + variable_sql
