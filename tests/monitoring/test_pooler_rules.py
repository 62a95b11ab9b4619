"""The pooler's rule group: only with a pooler, scoped, known metrics, promtool cases for every alert."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from components.monitoring.pooler_rules import POOLER_JOB, PoolerThresholds, pooler_rule_group
from components.monitoring.rules import AlertThresholds, RuleScope, expressions, recorded_names, render_rules_file, rule_groups
from tests.monitoring.metric_catalog import unknown_metrics

PROMTOOL = shutil.which("promtool")
UNIT_TESTS = Path(__file__).parent / "promtool" / "pooler_test.yaml"
SCOPE = RuleScope(("tsdb",), ("postgres-exporter", "patroni", "generator", "consumer", POOLER_JOB))


def _alert_names(groups: list[dict]) -> set[str]:
    return {rule["alert"] for group in groups for rule in group["rules"] if "alert" in rule}


def test_the_group_exists_only_when_a_pooler_is_scraped() -> None:
    without = rule_groups(RuleScope(("tsdb",), ("patroni",)), AlertThresholds())
    with_pooler = rule_groups(SCOPE, AlertThresholds())
    assert not {"PgBouncerClientWaitHigh", "PgBouncerPoolSaturated"} & _alert_names(without)
    assert {"PgBouncerDown", "PgBouncerClientWaitHigh", "PgBouncerPoolSaturated"} <= _alert_names(with_pooler)
    assert [g["name"] for g in with_pooler] == [*(g["name"] for g in without), "timescale_k8s.pooler.rules"]


def test_every_pooler_metric_is_exported_and_every_selector_scoped() -> None:
    group = pooler_rule_group(SCOPE.ns)
    exprs = expressions([group])
    assert unknown_metrics(exprs, recorded_names([group])) == {}
    for expr in exprs:
        assert 'namespace=~"tsdb"' in expr, expr


def test_every_pooler_alert_has_a_firing_and_a_quiet_unit_test() -> None:
    cases = yaml.safe_load(UNIT_TESTS.read_text())["tests"]
    seen = {(c["alertname"], bool(c["exp_alerts"])) for test in cases for c in test["alert_rule_test"]}
    for name in _alert_names([pooler_rule_group(SCOPE.ns)]):
        assert (name, True) in seen, f"{name} never fires in {UNIT_TESTS.name}"
        assert (name, False) in seen, f"{name} has no quiet case in {UNIT_TESTS.name}"


@pytest.mark.parametrize("bad", [{"client_wait_seconds": 0}, {"pool_saturation_ratio": 1.5}, {"client_wait_seconds": True}])
def test_bad_thresholds_are_rejected_by_name(bad: dict) -> None:
    with pytest.raises(ValueError, match=rf"pooler_thresholds\.{next(iter(bad))} \("):
        PoolerThresholds(**bad).check()


@pytest.mark.skipif(PROMTOOL is None, reason="promtool (Debian package 'prometheus') is not installed")
def test_promtool_notices_a_loosened_pooler_threshold(tmp_path: Path) -> None:
    groups = rule_groups(RuleScope(("tsdb",), ("patroni",)), AlertThresholds())
    groups.append(pooler_rule_group(SCOPE.ns, PoolerThresholds(client_wait_seconds=5)))
    (tmp_path / "rules.yaml").write_text(render_rules_file(groups))
    shutil.copy(UNIT_TESTS, tmp_path / UNIT_TESTS.name)
    result = subprocess.run([PROMTOOL, "test", "rules", UNIT_TESTS.name], cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode != 0
    assert "PgBouncerClientWaitHigh" in result.stdout + result.stderr
