"""The PrometheusRule content: parses, uses only exported metrics, passes promtool, fires when it should."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import promql_parser
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from components.monitoring.rules_backup import backup_rule_groups
from tests.monitoring.metric_catalog import CATALOG, Source, known_series, metric_names, unknown_metrics
from components.monitoring.rules import (
    THRESHOLD_RANGES, AlertThresholds, RuleScope, alerts, expressions, recorded_names, render_rules_file,
    rule_groups,
)

PROMTOOL = shutil.which("promtool")
UNIT_TESTS = sorted((Path(__file__).parent / "promtool").glob("*_test.yaml"))
"""Every promtool unit test file; each runs against the same rendered rules.yaml."""
SCOPE = RuleScope(("tsdb",), ("postgres-exporter", "patroni", "generator", "consumer", "pgbouncer"))
"""The scope the files in tests/monitoring/promtool/ are written for."""

GENERATOR_CONTRACT = {
    "tsflow_generator_rows_written_total", "tsflow_generator_batches_written_total",
    "tsflow_generator_batches_duplicate_total", "tsflow_generator_retries_total", "tsflow_generator_buffer_batches",
    "tsflow_generator_buffer_capacity_batches", "tsflow_generator_flush_seconds_bucket",
    "tsflow_generator_last_flush_timestamp_seconds", "tsflow_generator_rows_rejected_total",
}
CONSUMER_CONTRACT = {
    "tsflow_consumer_analysis_seconds_bucket", "tsflow_consumer_data_freshness_seconds",
    "tsflow_consumer_anomalies_found_total", "tsflow_consumer_rows_scanned_total", "tsflow_consumer_runs_total",
    "tsflow_consumer_errors_total", "tsflow_consumer_last_success_timestamp_seconds",
}


@pytest.fixture(scope="module")
def groups() -> list[dict]:
    return rule_groups(SCOPE, AlertThresholds())


def test_groups_hold_records_and_every_required_alert(groups: list[dict]) -> None:
    names = {rule.get("alert") for group in groups for rule in group["rules"]}
    assert recorded_names(groups), "no recording rules"
    assert {
        "TimescaleK8sTargetDown", "TimescaleDBPostgresDown", "TimescaleDBNoPrimary", "TimescaleDBMultiplePrimaries",
        "TimescaleDBReplicationLagHigh", "TimescaleDBConnectionsNearMax", "TimescaleK8sVolumeNearlyFull",
        "TsflowGeneratorIngestStalled", "TsflowGeneratorRetrying", "TsflowConsumerDataStale",
        "TimescaleK8sAutoscalerAtMax",
    } <= names


def test_every_expression_parses(groups: list[dict]) -> None:
    exprs = expressions(groups)
    assert len(exprs) > 10
    for expr in exprs:
        promql_parser.parse(expr)  # raises on a syntax error


def test_every_metric_is_exported_by_something(groups: list[dict]) -> None:
    assert unknown_metrics(expressions(groups), recorded_names(groups)) == {}
    assert unknown_metrics(["pg_made_up_metric > 0"]) == {"pg_made_up_metric > 0": {"pg_made_up_metric"}}


def test_every_selector_is_scoped_to_our_namespaces(groups: list[dict]) -> None:
    """A shared Prometheus must not page us for other teams' databases."""
    unscoped: list[str] = []
    for expr in expressions(groups):
        def visit(node: object, expr: str = expr) -> None:
            if isinstance(node, promql_parser.VectorSelector):
                matchers = {m.name: m.value for m in node.matchers.matchers}
                if matchers.get("namespace") != "tsdb":
                    unscoped.append(f"{node} in {expr}")
        promql_parser.walk(promql_parser.parse(expr), visit)
    assert not unscoped


def test_up_alert_only_covers_our_jobs(groups: list[dict]) -> None:
    target_down = next(a for a in alerts(SCOPE, AlertThresholds()) if a.name == "TimescaleK8sTargetDown")
    assert 'job=~"consumer|generator|patroni|pgbouncer|postgres-exporter"' in target_down.expr


def test_alerts_carry_for_severity_and_locating_annotations(groups: list[dict]) -> None:
    alert_rules = [rule for group in groups for rule in group["rules"] if "alert" in rule]
    assert alert_rules
    for rule in alert_rules:
        assert rule["for"], rule["alert"]
        assert rule["labels"]["severity"] in ("warning", "critical"), rule["alert"]
        for key in ("summary", "description"):
            assert "{{ $labels.namespace }}" in rule["annotations"][key], (rule["alert"], key)


def test_thresholds_reach_the_expressions() -> None:
    exprs = " ".join(a.expr for a in alerts(SCOPE, AlertThresholds(replication_lag_seconds=42, volume_free_ratio=0.07)))
    assert "> 42 " in exprs and "< 0.07" in exprs


@pytest.mark.parametrize("minutes, duration", [(15, "15m"), (7.5, "450s"), (0.001, "1s")])
def test_fractional_minutes_render_as_valid_durations(minutes: float, duration: str) -> None:
    alert = next(a for a in alerts(SCOPE, AlertThresholds(autoscaler_at_max_minutes=minutes))
                 if a.name == "TimescaleK8sAutoscalerAtMax")
    assert alert.for_ == duration
    promql_parser.parse_duration(duration)


@pytest.mark.parametrize("field_name", sorted(THRESHOLD_RANGES))
@pytest.mark.parametrize("bad", [0, -1, float("nan"), 10**9, "5", True])
def test_out_of_range_thresholds_are_rejected_by_name(field_name: str, bad: object) -> None:
    with pytest.raises(ValueError, match=rf"alert_thresholds\.{field_name} \("):
        AlertThresholds(**{field_name: bad}).check()


def test_default_thresholds_are_valid() -> None:
    assert AlertThresholds().check() == AlertThresholds()


@pytest.mark.parametrize("namespaces, jobs", [((), ("a",)), (("Bad_NS",), ("a",)), (("ok",), ('a"b',))])
def test_rule_scope_rejects_names_that_would_break_selectors(namespaces: tuple, jobs: tuple) -> None:
    with pytest.raises(ValueError, match="RuleScope"):
        RuleScope(namespaces, jobs)


def _exported_series(registry: CollectorRegistry) -> set[str]:
    text = generate_latest(registry).decode()
    return {sample.name for family in text_string_to_metric_families(text) for sample in family.samples}


def test_tsflow_catalog_matches_the_real_metrics_endpoint() -> None:
    metrics = pytest.importorskip("tsflow.metrics")
    generator, consumer = CollectorRegistry(), CollectorRegistry()
    metrics.GeneratorMetrics(generator)
    metrics.ConsumerMetrics(consumer)
    generator_series, consumer_series = _exported_series(generator), _exported_series(consumer)
    assert GENERATOR_CONTRACT <= generator_series
    assert CONSUMER_CONTRACT <= consumer_series
    assert set(known_series([Source.TSFLOW_GENERATOR])) <= generator_series
    assert set(known_series([Source.TSFLOW_CONSUMER])) <= consumer_series


def test_catalog_has_no_duplicates_and_names_its_sources() -> None:
    names = [metric.name for metric in CATALOG]
    assert len(names) == len(set(names))
    assert {metric.source for metric in CATALOG} == set(Source)


def test_metric_names_sees_through_functions_and_ranges() -> None:
    assert metric_names('histogram_quantile(0.9, sum by (le) (rate(a_bucket{x="y"}[5m]))) / b') == {"a_bucket", "b"}


@pytest.fixture
def rules_dir(tmp_path: Path, groups: list[dict]) -> Path:
    (tmp_path / "rules.yaml").write_text(render_rules_file(groups))
    (tmp_path / "backup_rules.yaml").write_text(render_rules_file(backup_rule_groups(SCOPE, max_backup_age_seconds=60)))
    for unit_tests in UNIT_TESTS:
        shutil.copy(unit_tests, tmp_path / unit_tests.name)
    return tmp_path


@pytest.mark.skipif(PROMTOOL is None, reason="promtool (Debian package 'prometheus') is not installed")
def test_promtool_check_rules(rules_dir: Path) -> None:
    result = subprocess.run([PROMTOOL, "check", "rules", "rules.yaml", "backup_rules.yaml"], cwd=rules_dir,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


@pytest.mark.skipif(PROMTOOL is None, reason="promtool (Debian package 'prometheus') is not installed")
@pytest.mark.parametrize("unit_tests", UNIT_TESTS, ids=lambda path: path.name)
def test_promtool_unit_tests_fire_and_stay_quiet(rules_dir: Path, unit_tests: Path) -> None:
    result = subprocess.run([PROMTOOL, "test", "rules", unit_tests.name], cwd=rules_dir, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.skipif(PROMTOOL is None, reason="promtool (Debian package 'prometheus') is not installed")
@pytest.mark.parametrize("loosened, alert", [
    ({"connection_usage_ratio": 0.95}, "TimescaleDBConnectionsNearMax"),
    ({"job_consecutive_failures": 2}, "TimescaleDBJobFailing"),
    ({"job_missed_runs": 4}, "TimescaleDBJobNotSucceeding"),
    ({"compression_backlog_minutes": 90}, "TimescaleDBCompressionBacklog"),
    ({"rollup_lag_grace_minutes": 120}, "TimescaleDBRollupLagging"),
    ({"standby_replay_stall_minutes": 30}, "TimescaleDBStandbyNotReplaying"),
    ({"standby_behind_seconds": 1200}, "TimescaleDBStandbyBehind"),
])
def test_promtool_unit_tests_detect_a_broken_rule(rules_dir: Path, loosened: dict, alert: str) -> None:
    """The unit tests can fail: loosen one threshold and they must notice. Only the files with a case for the
    alert run: promtool names the alert of a failing case, and no other file has one."""
    broken = rule_groups(SCOPE, AlertThresholds(**loosened))
    (rules_dir / "rules.yaml").write_text(render_rules_file(broken))
    covering = [u.name for u in UNIT_TESTS if re.search(rf"alertname: {alert}\s*$", u.read_text(), re.MULTILINE)]
    assert covering, f"no unit test file has a case for {alert}"
    result = subprocess.run([PROMTOOL, "test", "rules", *covering], cwd=rules_dir, capture_output=True, text=True)
    assert result.returncode != 0
    assert alert in result.stdout + result.stderr


def test_every_alert_has_a_firing_and_a_quiet_unit_test(groups: list[dict]) -> None:
    import yaml

    cases = [test for unit_tests in UNIT_TESTS for test in yaml.safe_load(unit_tests.read_text())["tests"]]
    seen = {(c["alertname"], bool(c["exp_alerts"])) for test in cases for c in test["alert_rule_test"]}
    names = [rule["alert"] for group in groups for rule in group["rules"] if "alert" in rule]
    assert len(names) > len(alerts(SCOPE, AlertThresholds()))
    for name in names:
        assert (name, True) in seen, f"{name} never fires in a unit test"
        assert (name, False) in seen, f"{name} has no quiet case"
