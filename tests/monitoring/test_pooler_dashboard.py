"""The pooler dashboard: only with a pooler, PromQL that parses, names exported or recorded metrics, scoped."""

from __future__ import annotations

import promql_parser

from components.monitoring.dashboards import DashboardIds, build_dashboards, prometheus_expressions
from components.monitoring.pooler_rules import pooler_rule_group
from components.monitoring.rules import recorded_names
from tests.monitoring.metric_catalog import unknown_metrics

IDS = DashboardIds("mon")
VARIABLES = {"$__rate_interval": "5m", "$__range": "3h", "$namespace": "tsdb"}


def _expand(expr: str) -> str:
    for variable, value in VARIABLES.items():
        expr = expr.replace(variable, value)
    assert "$" not in expr, expr
    return expr


def test_pooler_dashboard_only_with_a_pooler() -> None:
    assert "pooler" not in build_dashboards(IDS, with_analysis=False)
    assert build_dashboards(IDS, with_analysis=False, with_pooler=True)["pooler"]["uid"] == "mon-pooler"


def test_pooler_panels_query_exported_metrics_in_our_namespace() -> None:
    board = build_dashboards(IDS, with_analysis=False, with_pooler=True)["pooler"]
    exprs = [_expand(e) for e in prometheus_expressions(board)]
    assert len(exprs) >= 10
    recorded = recorded_names([pooler_rule_group('namespace=~"tsdb"')])
    assert unknown_metrics(exprs, recorded) == {}
    for expr in exprs:
        def visit(node: object, expr: str = expr) -> None:
            if isinstance(node, promql_parser.VectorSelector):
                matchers = {m.name: m.value for m in node.matchers.matchers}
                assert matchers.get("namespace") == "tsdb", expr
        promql_parser.walk(promql_parser.parse(expr), visit)
