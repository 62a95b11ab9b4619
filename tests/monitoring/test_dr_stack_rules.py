"""The dr stack's rendered rules (every alert it ships, as rendered) against whole clusters' worth of series in promtool:
a healthy standby cluster raises nothing, a stalled one exactly the standby alerts, a promoted one nothing.

Each scenario gives every metric the rules read, for both members, the way the exporters report it (``job``
labels from the stack's PodMonitors, Patroni's ``scope`` and ``name``), so an alert that would page a real
standby cluster fires here. Annotations are dropped from the rendered rules: they do not decide firing, and the
expected alerts then need only their labels.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.stacks import run_stack

PROMTOOL = shutil.which("promtool")
NAMESPACE, SCOPE = "timescale", "timescaledb"
LEADER, REPLICA = f"{SCOPE}-0", f"{SCOPE}-1"
MINUTES = 60
"""Length of every scenario; alerts are evaluated at :data:`EVAL_MINUTES`, in the steady state."""
EVAL_MINUTES = (30, 45, 60)
SEGMENT = 16 * 2**20
ARCHIVE_REPLAY_LAG_S = 90
"""Age of the standby leader's newest replayed commit while it replays the archive (archive_timeout 60 s + push)."""
PROMOTED_AT = 20
STALLED_AT = 10


def values(*runs: tuple[str, int]) -> str:
    """promtool's expanding notation from (start+step or constant, samples) runs, e.g. ``("0+60", 10)``."""
    return " ".join(f"{start}x{count - 1}" if count > 1 else start.split("+")[0] for start, count in runs)


def labels_of(job: str, pod: str) -> dict[str, str]:
    base = {"job": job, "namespace": NAMESPACE, "pod": pod}
    return {**base, "scope": SCOPE, "name": pod} if job == "patroni" else base


def sample(metric: str, job: str, pod: str, spec: str, **extra: str) -> dict[str, str]:
    selector = ",".join(f'{key}="{value}"' for key, value in {**labels_of(job, pod), **extra}.items())
    return {"series": f"{metric}{{{selector}}}", "values": spec}


def constant(value: float | int, minutes: int = MINUTES + 1) -> str:
    return values((str(value), minutes))


def healthy_members() -> list[dict[str, str]]:
    """What every member reports whatever its role: targets up, PostgreSQL up, connections, volumes, repository."""
    series = []
    for pod in (LEADER, REPLICA):
        series += [sample("up", job, pod, constant(1)) for job in ("patroni", "postgres-exporter", "pgbackrest")]
        series += [
            sample("pg_up", "postgres-exporter", pod, constant(1)),
            sample("patroni_cluster_unlocked", "patroni", pod, constant(0)),
            sample("patroni_xlog_paused", "patroni", pod, constant(0)),
            sample("pg_stat_activity_count", "postgres-exporter", pod, constant(12), state="active"),
            sample("pg_settings_max_connections", "postgres-exporter", pod, constant(200)),
            sample("pgbackrest_repo_up", "pgbackrest", pod, constant(1)),
            sample("pg_stat_archiver_failed_count", "pgbackrest", pod, constant(0)),
            sample("pg_stat_archiver_ready_segments", "pgbackrest", pod, constant(0)),
        ]
        for claim in (f"data-{pod}", f"wal-{pod}"):
            for metric, size in (("kubelet_volume_stats_available_bytes", 60e9), ("kubelet_volume_stats_capacity_bytes", 100e9)):
                series.append({"series": f'{metric}{{job="kubelet",namespace="{NAMESPACE}",persistentvolumeclaim="{claim}"}}',
                               "values": constant(int(size))})
    return series


def standby_cluster(*, stalled_at: int | None = None) -> list[dict[str, str]]:
    """A standby cluster replaying prod's archive a segment a minute; with ``stalled_at`` its feed stops then."""
    replaying = MINUTES + 1 if stalled_at is None else stalled_at + 1
    frozen = MINUTES - replaying + 1
    position = values(("0+%d" % SEGMENT, replaying), *([(str((replaying - 1) * SEGMENT), frozen)] if frozen else []))
    newest_commit = values((f"{-ARCHIVE_REPLAY_LAG_S}+60", replaying),
                           *([(str((replaying - 1) * 60 - ARCHIVE_REPLAY_LAG_S), frozen)] if frozen else []))
    series = healthy_members()
    for pod, leader in ((LEADER, 1), (REPLICA, 0)):
        series += [
            sample("patroni_primary", "patroni", pod, constant(0)),
            sample("patroni_standby_leader", "patroni", pod, constant(leader)),
            sample("patroni_replica", "patroni", pod, constant(1 - leader)),
            sample("patroni_xlog_replayed_location", "patroni", pod, position),
            sample("patroni_xlog_replayed_timestamp", "patroni", pod, newest_commit),
            sample("pg_replication_is_replica", "postgres-exporter", pod, constant(1)),
            # The exporter's lag: the standby leader has no WAL receiver (age of its newest replayed commit), its
            # replica streams from it (received = replayed, so 0).
            sample("pg_replication_lag_seconds", "postgres-exporter", pod, constant(ARCHIVE_REPLAY_LAG_S if leader else 0)),
            sample("pgbackrest_agent_leader", "pgbackrest", pod, constant(0)),
        ]
    return series


def promoted_cluster() -> list[dict[str, str]]:
    """The standby cluster promoted at :data:`PROMOTED_AT`: its leader writes, archives and backs up to ``/dr``."""
    before, after = PROMOTED_AT, MINUTES - PROMOTED_AT + 1
    series = healthy_members()
    written = before * SEGMENT
    series += [
        sample("patroni_primary", "patroni", LEADER, values(("0", before), ("1", after))),
        sample("patroni_standby_leader", "patroni", LEADER, values(("1", before), ("0", after))),
        sample("patroni_replica", "patroni", LEADER, constant(0)),
        # Patroni reports 0 replay on a primary; its own WAL position moves instead.
        sample("patroni_xlog_replayed_location", "patroni", LEADER, values((f"0+{SEGMENT}", before), ("0", after))),
        sample("patroni_xlog_replayed_timestamp", "patroni", LEADER, values((f"{-ARCHIVE_REPLAY_LAG_S}+60", before), ("0", after))),
        sample("patroni_xlog_location", "patroni", LEADER, values(("0", before), (f"{written}+{SEGMENT}", after))),
        sample("pg_replication_is_replica", "postgres-exporter", LEADER, values(("1", before), ("0", after))),
        sample("pg_replication_lag_seconds", "postgres-exporter", LEADER, values((str(ARCHIVE_REPLAY_LAG_S), before), ("0", after))),
        sample("pgbackrest_agent_leader", "pgbackrest", LEADER, values(("0", before), ("1", after))),
        sample("pg_stat_archiver_last_archived_timestamp_seconds", "pgbackrest", LEADER,
               " ".join(["_"] * before + [f"{(before + i) * 60}" for i in range(after)])),
        # the agent's full backup into /dr right after the promotion (its newest full is of an earlier timeline)
        sample("pgbackrest_backup_last_completed_timestamp_seconds", "pgbackrest", LEADER,
               " ".join(["_"] * (before + 2) + [str((before + 2) * 60)] * (after - 2)), type="full"),
        sample("pgbackrest_backup_last_run_success", "pgbackrest", LEADER,
               " ".join(["_"] * (before + 2) + ["1"] * (after - 2)), type="full"),
    ]
    for metric, value in (("patroni_primary", 0), ("patroni_standby_leader", 0), ("patroni_replica", 1),
                          ("pgbackrest_agent_leader", 0)):
        series.append(sample(metric, "pgbackrest" if metric.startswith("pgbackrest") else "patroni", REPLICA, constant(value)))
    series += [
        sample("patroni_xlog_replayed_location", "patroni", REPLICA, values((f"0+{SEGMENT}", MINUTES + 1))),
        sample("patroni_xlog_replayed_timestamp", "patroni", REPLICA, values(("0+60", MINUTES + 1))),
        sample("pg_replication_is_replica", "postgres-exporter", REPLICA, constant(1)),
        sample("pg_replication_lag_seconds", "postgres-exporter", REPLICA, constant(0)),
    ]
    return series


@pytest.fixture(scope="module")
def dr_rules() -> list[dict[str, Any]]:
    """The dr stack's rule groups as rendered, without annotations."""
    groups = [group for manifest in run_stack("dr").manifests() if manifest["kind"] == "PrometheusRule"
              for group in manifest["spec"]["groups"]]
    for rule in (rule for group in groups for rule in group["rules"]):
        rule.pop("annotations", None)
    return groups


def alert_rules(groups: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {rule["alert"]: rule for group in groups for rule in group["rules"] if "alert" in rule}


def promtool_case(name: str, series: list[dict[str, str]], groups: list[dict[str, Any]],
                  firing: dict[str, dict[str, str]]) -> dict[str, Any]:
    """Every alert of ``groups`` at every :data:`EVAL_MINUTES`: exactly ``firing`` (alert → series labels) fire."""
    rules = alert_rules(groups)
    assert set(firing) <= set(rules)
    checks = [
        {"eval_time": f"{minute}m", "alertname": alert,
         "exp_alerts": [{"exp_labels": {**rules[alert].get("labels", {}), **firing[alert]}}] if alert in firing else []}
        for minute in EVAL_MINUTES for alert in sorted(rules)
    ]
    return {"name": name, "interval": "1m", "input_series": series, "alert_rule_test": checks}


def run_promtool(tmp_path: Path, groups: list[dict[str, Any]], case: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    (tmp_path / "dr_rules.yaml").write_text(yaml.safe_dump({"groups": groups}, sort_keys=False))
    (tmp_path / "dr_test.yaml").write_text(yaml.safe_dump(
        {"rule_files": ["dr_rules.yaml"], "evaluation_interval": "1m", "tests": [case]}, sort_keys=False))
    return subprocess.run([PROMTOOL, "test", "rules", "dr_test.yaml"], cwd=tmp_path, capture_output=True, text=True)


STANDBY_LEADER = labels_of("patroni", LEADER)
SCENARIOS = {
    "healthy standby": (standby_cluster, {}),
    "stalled standby": (lambda: standby_cluster(stalled_at=STALLED_AT),
                        {"TimescaleDBStandbyNotReplaying": STANDBY_LEADER, "TimescaleDBStandbyBehind": STANDBY_LEADER}),
    "promoted standby": (promoted_cluster, {}),
}


@pytest.mark.skipif(PROMTOOL is None, reason="promtool (Debian package 'prometheus') is not installed")
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_the_dr_stacks_rules_fire_exactly_as_expected(tmp_path: Path, dr_rules: list[dict[str, Any]], scenario: str) -> None:
    build, firing = SCENARIOS[scenario]
    result = run_promtool(tmp_path, dr_rules, promtool_case(scenario, build(), dr_rules, firing))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.skipif(PROMTOOL is None, reason="promtool (Debian package 'prometheus') is not installed")
def test_the_scenarios_can_fail(tmp_path: Path, dr_rules: list[dict[str, Any]]) -> None:
    """The healthy scenario's series, expected to be quiet, do page when replay stalls: the check sees firing."""
    result = run_promtool(tmp_path, dr_rules, promtool_case("stalled, expected quiet", standby_cluster(stalled_at=STALLED_AT),
                                                            dr_rules, {}))
    assert result.returncode != 0
    assert "TimescaleDBStandbyNotReplaying" in result.stdout + result.stderr
