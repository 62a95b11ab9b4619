"""python -m ops against every stack file, with a recording runner standing in for kubectl: the commands built
(context and namespace always named, the right member and container), and the refusals."""

from __future__ import annotations

import json
import subprocess
from typing import Any

import pytest

from ops import cli
from tests.stacks import STACKS, stack_file_config

MEMBERS = [{"Member": "timescaledb-0", "Role": "Replica", "State": "streaming", "TL": 3},
           {"Member": "timescaledb-1", "Role": "Leader", "State": "running", "TL": 3}]
INFO = [{"name": "timescaledb", "backup": [
    {"label": "20261207-010000F", "type": "full", "timestamp": {"start": 1, "stop": 100}},
    {"label": "20261207-010000F_20261207-020000I", "type": "incr", "timestamp": {"start": 200, "stop": 300}}]}]


class Recorder:
    """Answers patronictl list and pgbackrest info like a cluster whose leader is timescaledb-1."""

    def __init__(self, members: list[dict[str, Any]] = MEMBERS, failing: tuple[str, ...] = ()) -> None:
        self.calls: list[list[str]] = []
        self._members = members
        self._failing = failing

    def __call__(self, argv: list[str]) -> subprocess.CompletedProcess[str]:
        self.calls.append(argv)
        pod = argv[argv.index("exec") + 1]
        if pod in self._failing:
            return subprocess.CompletedProcess(argv, 1, "")
        inner = argv[argv.index("--") + 1:]
        out = json.dumps(self._members) if "exec patronictl list" in inner[-1] else \
            json.dumps(INFO) if "info" in inner[-1] else ""
        return subprocess.CompletedProcess(argv, 0, out)


def _run(args: list[str], recorder: Recorder, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = cli.main(args, runner=recorder)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize("stack", STACKS)
@pytest.mark.parametrize("verb", [["status"], ["switchover"], ["backup"], ["promote", "--source-is-down"], ["dr-lag"]])
def test_every_command_names_its_context_and_namespace(stack: str, verb: list[str],
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    namespace = (stack_file_config(stack).get("timescale-k8s:cluster") or {}).get("namespace", "timescale")
    recorder = Recorder()
    code, _, err = _run([*verb, "--stack", stack, "--context", "ctx-given"], recorder, capsys)
    assert code in (0, 2), err
    assert recorder.calls or code == 2
    for argv in recorder.calls:
        assert argv[:5] == ["kubectl", "--context", "ctx-given", "-n", namespace], argv
        assert argv[5:7] == ["exec", argv[6]] and argv[7] == "-c" and argv[9] == "--", argv


def test_the_stack_files_context_is_used_and_a_missing_one_refused(capsys: pytest.CaptureFixture[str]) -> None:
    recorder = Recorder()
    assert _run(["status", "--stack", "dr"], recorder, capsys)[0] == 0
    assert recorder.calls[0][:5] == ["kubectl", "--context", "dr-eu-central-1", "-n", "timescale"]
    code, _, err = _run(["status", "--stack", "prod"], Recorder(), capsys)  # prod's file names no context
    assert code == 2 and "cluster.context" in err and "--context" in err
    code, _, err = _run(["status", "--stack", "nosuch"], Recorder(), capsys)
    assert code == 2 and "Pulumi.nosuch.yaml" in err and "dr" in err


def test_status_shows_members_and_the_newest_backup_from_the_leader(capsys: pytest.CaptureFixture[str]) -> None:
    recorder = Recorder()
    code, out, _ = _run(["status", "--stack", "dr"], recorder, capsys)
    assert code == 0
    assert "timescaledb-1: Leader, running, timeline 3" in out
    assert "newest backup: 20261207-010000F_20261207-020000I (incr)" in out
    info = recorder.calls[-1]
    assert info[6:9] == ["timescaledb-1", "-c", "backup-agent"]
    assert "PGBACKREST_REPO1_S3_KEY=\"$(< /etc/timescaledb/pgbackrest-secrets/repo1-s3-key)\"" in info[-1]


def test_switchover_and_backup_run_on_the_leader(capsys: pytest.CaptureFixture[str]) -> None:
    recorder = Recorder()
    assert _run(["switchover", "--stack", "prod", "--context", "p", "--candidate", "timescaledb-0"], recorder,
                capsys)[0] == 0
    assert recorder.calls[-1][6:9] == ["timescaledb-1", "-c", "timescaledb"]
    assert recorder.calls[-1][-1].endswith(
        "exec patronictl switchover --force --leader timescaledb-1 --candidate timescaledb-0")
    assert 'PATRONI_RESTAPI_PASSWORD="$(< /etc/timescaledb/patroni-secrets/restapi)"' in recorder.calls[-1][-1]
    recorder = Recorder()
    assert _run(["backup", "--stack", "prod", "--context", "p", "--type", "diff"], recorder, capsys)[0] == 0
    # prod has a secondary repository: one backup into each, both on the leader, both with both key pairs.
    backups = [call for call in recorder.calls if "backup-agent" in call]
    assert [call[6:9] for call in backups] == [["timescaledb-1", "-c", "backup-agent"]] * 2
    assert [call[-1].rsplit("; ", 1)[1] for call in backups] == [
        "exec pgbackrest --stanza=timescaledb --type=diff --repo=1 backup",
        "exec pgbackrest --stanza=timescaledb --type=diff --repo=2 backup",
    ]
    assert all("PGBACKREST_REPO2_S3_KEY_SECRET=" in call[-1] for call in backups)


def test_a_member_that_does_not_answer_is_skipped(capsys: pytest.CaptureFixture[str]) -> None:
    recorder = Recorder(failing=("timescaledb-0",))
    assert _run(["switchover", "--stack", "dr"], recorder, capsys)[0] == 0
    assert [c[6] for c in recorder.calls] == ["timescaledb-0", "timescaledb-1", "timescaledb-1"]


def test_promote_is_refused_unless_the_source_is_fenced_and_only_acts_on_a_standby_cluster(
        capsys: pytest.CaptureFixture[str]) -> None:
    recorder = Recorder(members=[{"Member": "timescaledb-0", "Role": "Standby Leader", "State": "streaming"}])
    code, _, err = _run(["promote", "--stack", "dr"], recorder, capsys)
    assert code == 2 and "--source-is-down" in err and recorder.calls == []
    code, _, err = _run(["promote", "--stack", "prod", "--context", "p", "--source-is-down"], recorder, capsys)
    assert code == 2 and "not a standby cluster" in err and recorder.calls == []
    code, out, _ = _run(["promote", "--stack", "dr", "--source-is-down"], recorder, capsys)
    assert code == 0 and "remove backup.standby" in out
    assert recorder.calls[-1][6:9] == ["timescaledb-0", "-c", "timescaledb"]
    assert recorder.calls[-1][-1].endswith("exec patronictl edit-config --force --set standby_cluster=null")


def test_a_standby_cluster_takes_no_backup_and_a_cluster_without_leader_is_refused(
        capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _run(["backup", "--stack", "dr"], Recorder(), capsys)
    assert code == 2 and "standby cluster" in err
    leaderless = Recorder(members=[{"Member": "timescaledb-0", "Role": "Replica", "State": "stopped"}])
    code, _, err = _run(["switchover", "--stack", "dr"], leaderless, capsys)
    assert code == 2 and "no leader" in err


def test_dry_run_prints_and_runs_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    recorder = Recorder()
    code, out, _ = _run(["promote", "--stack", "dr", "--source-is-down", "--dry-run"], recorder, capsys)
    assert code == 0 and recorder.calls == []
    assert "kubectl --context dr-eu-central-1 -n timescale exec timescaledb-0 -c timescaledb -- bash -c" in out
    assert "exec patronictl edit-config --force --set standby_cluster=null" in out


def test_a_switchover_patroni_refuses_fails_with_its_reason(capsys: pytest.CaptureFixture[str]) -> None:
    """patronictl exits 0 when Patroni answers 412; ops must not report success."""

    class Refusing(Recorder):
        def __call__(self, argv: list[str]) -> subprocess.CompletedProcess[str]:
            if "switchover --force" in argv[-1]:
                self.calls.append(argv)
                return subprocess.CompletedProcess(argv, 0, "Current cluster topology\nSwitchover failed, details: 412, "
                                                   "switchover is not possible: can not find sync_standby\n")
            return super().__call__(argv)

    code, _, err = _run(["switchover", "--stack", "dr"], Refusing(), capsys)
    assert code == 2 and "Patroni refused the switchover: Switchover failed, details: 412" in err
