"""The backup and WAL-archiving alerts: exported metrics only, scoped, unit-tested both ways, wired in."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from components.monitoring.rules import expressions, render_rules_file
from components.monitoring.rules_backup import GRACE_SECONDS, backup_alerts, backup_rule_groups
from components.timescaledb.backup_agent import METRICS
from tests.monitoring.metric_catalog import CATALOG, Source, unknown_metrics
from tests.monitoring.test_rules import SCOPE
from tests.stacks import run_stack

PROMTOOL = shutil.which("promtool")
UNIT_TESTS = Path(__file__).parent / "promtool" / "backup_test.yaml"
TEST_MAX_AGE = 60
"""What backup_test.yaml is written for."""


def test_every_backup_alert_has_a_firing_and_a_quiet_unit_test() -> None:
    cases = yaml.safe_load(UNIT_TESTS.read_text())["tests"]
    seen = {(c["alertname"], bool(c["exp_alerts"])) for test in cases for c in test["alert_rule_test"]}
    names = [a.name for a in backup_alerts(SCOPE, max_backup_age_seconds=TEST_MAX_AGE)]
    assert len(names) == 6
    for name in names:
        assert (name, True) in seen, f"{name} never fires in a unit test"
        assert (name, False) in seen, f"{name} has no quiet case"


def test_backup_alerts_use_only_the_agents_metrics_scoped_to_our_namespaces() -> None:
    exprs = expressions(backup_rule_groups(SCOPE, max_backup_age_seconds=TEST_MAX_AGE))
    assert unknown_metrics(exprs) == {}
    assert all('namespace=~"tsdb"' in expr for expr in exprs)


def test_the_catalog_lists_exactly_what_the_agent_exports() -> None:
    assert {m.name for m in CATALOG if m.source is Source.BACKUP_AGENT} == set(METRICS)


def test_the_age_threshold_follows_the_schedule() -> None:
    alert = next(a for a in backup_alerts(SCOPE, max_backup_age_seconds=86400) if a.name == "TimescaleDBBackupTooOld")
    assert alert.expr.endswith(f"> {86400 + GRACE_SECONDS}")


@pytest.mark.skipif(PROMTOOL is None, reason="promtool (Debian package 'prometheus') is not installed")
def test_unit_tests_notice_a_looser_age_threshold(tmp_path: Path) -> None:
    """The age tests can fail: allow a day instead of a minute and the firing case must break."""
    (tmp_path / "backup_rules.yaml").write_text(render_rules_file(backup_rule_groups(SCOPE, max_backup_age_seconds=86400)))
    shutil.copy(UNIT_TESTS, tmp_path / UNIT_TESTS.name)
    result = subprocess.run([PROMTOOL, "test", "rules", UNIT_TESTS.name], cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode != 0 and "TimescaleDBBackupTooOld" in result.stdout + result.stderr


@pytest.mark.parametrize("stack, expected", [("prod", True), ("dev", False)])
def test_the_backup_group_is_deployed_only_with_backups(stack: str, expected: bool) -> None:
    recording = run_stack(stack)
    rules = [m for m in recording.manifests() if m["kind"] == "PrometheusRule"]
    assert rules
    names = {g["name"] for m in rules for g in m["spec"]["groups"]}
    assert ("timescale_k8s.backup" in names) is expected
    monitors = [m for m in recording.manifests() if m["kind"] == "PodMonitor"]
    jobs = {e.get("relabelings", [{}])[0].get("replacement") for m in monitors for e in m["spec"]["podMetricsEndpoints"]}
    assert ("pgbackrest" in jobs) is expected
