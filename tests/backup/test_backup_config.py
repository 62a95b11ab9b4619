"""The backup section, the pgBackRest/Patroni builders and the backup agent's decisions (no processes)."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from components.timescaledb import pod
from components.timescaledb.backup import (
    BackupArgs, RepositoryArgs, agent_command, credential_files, patroni_backup_config, pgbackrest_conf,
)
from components.timescaledb.backup_agent import (
    Agent, AgentConfig, BackupRecord, CronError, RepoState, due_backup, max_interval_seconds, parse_cron, parse_info,
    stalest,
)
from stack.config import parse_stack_config
from stack.reader import ConfigError
from tests.backup.support import patroni_postgres_env, run_start_command
from tests.stack.test_config import with_value as stack_with_value
from tests.stacks import run_stack, stack_file_config

UTC = dt.timezone.utc
GOOD: dict[str, Any] = {
    "repository": {"bucket": "acme-backups", "endpoint": "s3.eu-west-1.amazonaws.com", "region": "eu-west-1",
                   "credentialsSecret": "s3-creds"},
}


def parse(backup: dict[str, Any]) -> BackupArgs | None:
    return parse_stack_config({"workloads": {"enabled": False}, "backup": backup}).database.args.backup


def with_value(path: str, value: Any) -> dict[str, Any]:
    """GOOD with ``value`` set at a dotted path inside the backup section."""
    return stack_with_value(path, value, base=GOOD)


def test_defaults() -> None:
    args = parse(GOOD)
    assert args is not None and args.stanza == "timescaledb" and args.repository.verify_tls
    assert (args.full_schedule, args.diff_schedule, args.retention_full, args.retention_diff) == ("0 1 * * 0", "0 1 * * 1-6", 2, 6)
    assert parse_stack_config({"workloads": {"enabled": False}}).database.args.backup is None


BAD = [
    ("schedule syntax", with_value("schedule.full", "0 1 * *"),
     "timescale-k8s:backup.schedule.full ('0 1 * *') must have 5 fields"),
    ("schedule range", with_value("schedule.diff", "0 25 * * *"),
     "timescale-k8s:backup.schedule.diff ('0 25 * * *') hour field '25' must stay within 0-23"),
    ("schedule that never fires", with_value("schedule.full", "0 1 31 2 *"),
     "timescale-k8s:backup.schedule.full ('0 1 31 2 *') schedule never fires"),
    ("retention below 1", with_value("retention.full", 0), "timescale-k8s:backup.retention.full (0): must be a whole number"),
    ("bucket form", with_value("repository.bucket", "My_Bucket"), "timescale-k8s:backup.repository.bucket ('My_Bucket') must be an S3 bucket name"),
    ("endpoint with scheme", with_value("repository.endpoint", "https://s3.amazonaws.com"),
     "timescale-k8s:backup.repository.endpoint ('https://s3.amazonaws.com') must be a host name"),
    ("endpoint port", with_value("repository.endpoint", "minio:99999"), "repository.endpoint ('minio:99999')"),
    ("secret name", with_value("repository.credentialsSecret", "S3 creds"),
     "timescale-k8s:backup.repository.credentialsSecret ('S3 creds') must be a Secret name"),
    ("uri style", with_value("repository.uriStyle", "virtual"), "repository.uriStyle ('virtual'): must be one of host, path"),
    ("two targets", with_value("restore", {"fromStanza": "old", "target": {"latest": True, "lsn": "0/3000060"}}),
     "timescale-k8s:backup.restore.target (lsn, latest) must set exactly one of latest, time, lsn or name"),
    ("no target", with_value("restore", {"fromStanza": "old", "target": {}}),
     "timescale-k8s:backup.restore.target (nothing) must set exactly one"),
    ("missing target", with_value("restore", {"fromStanza": "old"}), "timescale-k8s:backup.restore.target: is required"),
    ("time without zone", with_value("restore", {"fromStanza": "old", "target": {"time": "2026-11-25 09:30:00"}}),
     "timescale-k8s:backup.restore.target.time ('2026-11-25 09:30:00') must look like 'YYYY-MM-DD HH:MM:SS+00'"),
    ("bad lsn", with_value("restore", {"fromStanza": "old", "target": {"lsn": "3000060"}}),
     "timescale-k8s:backup.restore.target.lsn ('3000060') must look like '0/3000060'"),
    ("restore over own stanza", with_value("restore", {"fromStanza": "timescaledb", "target": {"latest": True}}),
     "timescale-k8s:backup.restore.fromStanza ('timescaledb') is this cluster's own stanza at the same path"),
    ("restore and standby", with_value("standby", {"fromStanza": "a"}) | {"restore": {"fromStanza": "b", "target": {"latest": True}}},
     "restore and standby cannot both be set"),
    ("typo", with_value("retention.ful", 3), "timescale-k8s:backup.retention.ful: unknown setting; did you mean 'full'?"),
]


@pytest.mark.parametrize("raw, message", [(raw, message) for _, raw, message in BAD], ids=[case for case, _, _ in BAD])
def test_mistakes_fail_with_the_key_and_value(raw: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse(raw)
    assert message in str(caught.value)


def test_restore_targets_render_into_patroni_recovery_conf() -> None:
    args = parse(with_value("restore", {"fromStanza": "old", "fromPath": "/old", "target": {"time": "2026-11-25 09:30:00+00"}}))
    assert args is not None
    bootstrap = patroni_backup_config(args)["bootstrap"]
    method = bootstrap[bootstrap["method"]]
    assert "--stanza=old" in method["command"] and "--repo1-path=/old" in method["command"] and "--type=none" in method["command"]
    assert method["recovery_conf"]["recovery_target_time"] == "2026-11-25 09:30:00+00"
    assert method["recovery_conf"]["recovery_target_action"] == "promote"
    assert "--stanza=old" in method["recovery_conf"]["restore_command"]
    # The new cluster archives to its own stanza, never the source's.
    assert "--stanza=timescaledb archive-push" in patroni_backup_config(args)["postgresql"]["parameters"]["archive_command"]


def test_pgbackrest_conf_keeps_credentials_out_and_verifies_tls() -> None:
    args = parse(with_value("repository.endpoint", "minio.storage:9000") | {"retention": {"full": 3, "diff": 9}})
    assert args is not None
    conf = pgbackrest_conf(args)
    assert "repo1-s3-endpoint=minio.storage\n" in conf and "repo1-storage-port=9000\n" in conf
    assert "repo1-storage-verify-tls=y" in conf and "repo1-retention-full=3" in conf and "repo1-retention-diff=9" in conf
    assert "s3-key" not in conf and "archive-async=y" in conf


def _patroni(stack: str) -> dict[str, Any]:
    manifest = next(m for m in run_stack(stack).manifests() if m["kind"] == "ConfigMap" and "patroni.yaml" in m.get("data", {}))
    return json.loads(manifest["data"]["patroni.yaml"])


def test_prod_archives_and_dr_is_a_standby_of_prods_stanza() -> None:
    prod, dr = _patroni("prod"), _patroni("dr")
    assert prod["postgresql"]["parameters"]["archive_mode"] == "on"
    assert "standby_cluster" not in prod["bootstrap"]["dcs"]
    standby = dr["bootstrap"]["dcs"]["standby_cluster"]
    # prod's stanza at /prod in both of dr's repositories (its own region's first), dr's own at /dr in both.
    assert "--stanza=timescaledb" in standby["restore_command"]
    assert "--repo1-path=/prod --repo2-path=/prod" in standby["restore_command"]
    assert dr["postgresql"]["create_replica_methods"][0] == "pgbackrest"
    assert "--repo1-path=/dr --repo2-path=/dr" in dr["postgresql"]["recovery_conf"]["restore_command"]
    assert "--repo1-path=/prod --repo2-path=/prod" in dr["postgresql"]["pgbackrest"]["command"]


def test_prod_keeps_a_second_copy_in_the_region_dr_replays_from_first() -> None:
    prod, dr = _stack_backup("prod"), _stack_backup("dr")
    assert prod.secondary_repository is not None
    assert dr.secondary_repository is not None and dr.standby is not None
    assert (dr.repository.bucket, dr.repository.region) == (prod.secondary_repository.bucket, prod.secondary_repository.region)
    assert (dr.secondary_repository.bucket, dr.secondary_repository.region) == (prod.repository.bucket, prod.repository.region)
    assert prod.repository.region != prod.secondary_repository.region
    assert dr.standby.source.path == prod.repository.path == prod.secondary_repository.path


def test_a_secondary_repository_gets_its_own_repo2_options_and_the_agent_backs_up_into_both() -> None:
    args = parse(GOOD | {"secondaryRepository": {"bucket": "acme-backups-2", "endpoint": "s3.eu-central-1.amazonaws.com",
                                                  "region": "eu-central-1", "credentialsSecret": "s3-creds-2",
                                                  "path": "/copy", "uriStyle": "path"}})
    assert args is not None
    conf = pgbackrest_conf(args)
    for line in ("repo1-s3-bucket=acme-backups", "repo1-path=/timescaledb", "repo2-s3-bucket=acme-backups-2",
                 "repo2-s3-endpoint=s3.eu-central-1.amazonaws.com", "repo2-s3-region=eu-central-1", "repo2-path=/copy",
                 "repo2-s3-uri-style=path", "repo2-retention-full=2", "repo2-bundle=y"):
        assert f"{line}\n" in conf, line
    assert "s3-key" not in conf
    assert agent_command(args, script="agent.py")[-4:-2] == ["--repositories", "2"]
    assert "--repositories" not in agent_command(parse(GOOD), script="agent.py")  # type: ignore[arg-type]
    assert credential_files(["one", "two"]) == [
        ("one", "AWS_ACCESS_KEY_ID", "repo1-s3-key"), ("one", "AWS_SECRET_ACCESS_KEY", "repo1-s3-key-secret"),
        ("two", "AWS_ACCESS_KEY_ID", "repo2-s3-key"), ("two", "AWS_SECRET_ACCESS_KEY", "repo2-s3-key-secret"),
    ]


@pytest.mark.parametrize("secondary, message", [
    (dict(GOOD["repository"]), "timescale-k8s:backup.secondaryRepository is the same bucket and path as"),
    ({**GOOD["repository"], "region": "EU"}, "timescale-k8s:backup.secondaryRepository.region ('EU') must be a region"),
    ({"bucket": "b-2", "endpoint": "s3.amazonaws.com", "region": "us-east-1"},
     "timescale-k8s:backup.secondaryRepository.credentialsSecret: is required"),
], ids=["same as the first", "bad region", "no credentials"])
def test_a_bad_secondary_repository_names_its_key(secondary: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as error:
        parse(GOOD | {"secondaryRepository": secondary})
    assert message in str(error.value)


def test_a_standby_source_may_not_be_this_clusters_own_stanza_in_the_secondary_repository() -> None:
    """The source path is looked up in every repository: /own is this cluster's own path in repo2."""
    with pytest.raises(ConfigError, match="own stanza at the same path"):
        parse(GOOD | {"repository": {**GOOD["repository"], "path": "/src"},
                      "secondaryRepository": {**GOOD["repository"], "bucket": "other-bucket", "path": "/own"},
                      "standby": {"fromStanza": "timescaledb", "fromPath": "/own"}})


# -- the S3 key pair in the pod ----------------------------------------------------------------------

KEY_VARIABLES = ("PGBACKREST_REPO1_S3_KEY", "PGBACKREST_REPO1_S3_KEY_SECRET")
REPO2_KEY_VARIABLES = ("PGBACKREST_REPO2_S3_KEY", "PGBACKREST_REPO2_S3_KEY_SECRET")
BACKUP_STACKS = [s for s in ("prod", "dr") if "timescale-k8s:backup" in stack_file_config(s)]


def _member_pod(stack: str) -> dict[str, Any]:
    statefulset = next(m for m in run_stack(stack).manifests() if m["kind"] == "StatefulSet"
                       and any(c["name"] == pod.BACKUP_CONTAINER for c in m["spec"]["template"]["spec"]["containers"]))
    return statefulset["spec"]["template"]["spec"]


def test_the_stacks_with_backups_are_checked() -> None:
    assert BACKUP_STACKS == ["prod", "dr"]


@pytest.mark.parametrize("stack", BACKUP_STACKS)
def test_s3_keys_are_files_from_the_credentials_secret_not_env(stack: str) -> None:
    spec = _member_pod(stack)
    section = stack_file_config(stack)["timescale-k8s:backup"]
    secrets = [section[key]["credentialsSecret"] for key in ("repository", "secondaryRepository") if key in section]
    volume = next(v for v in spec["volumes"] if v["name"] == pod.BACKUP_SECRETS_VOLUME)["projected"]
    assert volume["defaultMode"] == 0o440
    files = [(s["secret"]["name"], item["key"], item["path"]) for s in volume["sources"] for item in s["secret"]["items"]]
    assert files[:2] == [(secrets[0], "AWS_ACCESS_KEY_ID", "repo1-s3-key"),
                         (secrets[0], "AWS_SECRET_ACCESS_KEY", "repo1-s3-key-secret")]
    assert files[2:] == [(secrets[1], "AWS_ACCESS_KEY_ID", "repo2-s3-key"),
                         (secrets[1], "AWS_SECRET_ACCESS_KEY", "repo2-s3-key-secret")] * (len(secrets) - 1)
    containers = {c["name"]: c for c in spec["containers"]}
    for name in (pod.PATRONI_CONTAINER, pod.BACKUP_CONTAINER):
        container = containers[name]
        env = container.get("env") or []
        assert not [e["name"] for e in env if "secretKeyRef" in e.get("valueFrom", {})], name
        assert not {e["name"] for e in env} & set(KEY_VARIABLES), name
        assert {"name": pod.BACKUP_SECRETS_VOLUME, "mountPath": pod.BACKUP_SECRETS_DIR, "readOnly": True} in container["volumeMounts"]
        for variable, option in zip(KEY_VARIABLES + REPO2_KEY_VARIABLES * (len(secrets) - 1),
                                    [path for _, _, path in files]):
            assert f'{variable}="$$(< {pod.BACKUP_SECRETS_DIR}/{option})"' in container["command"][-1], name
    # Only the containers that run pgBackRest see the key pair.
    for name, container in containers.items():
        if name not in (pod.PATRONI_CONTAINER, pod.BACKUP_CONTAINER):
            assert not [m for m in container.get("volumeMounts") or [] if m["name"] == pod.BACKUP_SECRETS_VOLUME], name


SECRET_VALUES = {"AWS_ACCESS_KEY_ID": "AKIA/Te$t+key=", "AWS_SECRET_ACCESS_KEY": "s3cr3t/\"quoted\" 'key'+=\n"}
"""Values with shell and kubelet metacharacters; the secret ends in a newline, as a Secret made from a file may."""
PROD_KEYS = {variable: value for pair in (KEY_VARIABLES, REPO2_KEY_VARIABLES)
             for variable, value in zip(pair, ("AKIA/Te$t+key=", "s3cr3t/\"quoted\" 'key'+="))}
"""What prod's start commands export: both repositories' key pairs (one Secret for both in Pulumi.prod.yaml)."""


def _stack_backup(stack: str) -> BackupArgs:
    args = parse_stack_config({k.removeprefix("timescale-k8s:"): v for k, v in stack_file_config(stack).items()}
                              ).database.args.backup
    assert args is not None
    return args


def test_the_agent_start_command_exports_the_key_files_then_execs_the_agent(tmp_path: Path) -> None:
    """The rendered command run by bash: the agent's process (and so every pgbackrest it starts) has the
    key pair from the files, with the agent's own arguments intact."""
    started = run_start_command(_member_pod("prod"), pod.BACKUP_CONTAINER, SECRET_VALUES, tmp_path, program="python3")
    assert started.exported == PROD_KEYS
    args = _stack_backup("prod")
    # After python3, the agent's arguments one by one: the quoted schedules stayed single arguments.
    assert started.argv == agent_command(args, script=f"{pod.BACKUP_AGENT_DIR}/backup_agent.py")[1:]


def test_patroni_start_command_exports_the_key_files_and_patroni_passes_them_to_postgresql(tmp_path: Path) -> None:
    """The rendered command run by bash, then the installed Patroni's own PostgreSQL environment: the key
    pair reaches PostgreSQL (so ``archive_command`` and ``restore_command``), Patroni's passwords do not."""
    started = run_start_command(_member_pod("prod"), pod.PATRONI_CONTAINER, SECRET_VALUES, tmp_path, program="patroni")
    assert started.argv == ["/etc/patroni/patroni.yaml"]
    passwords = {variable for variable, _ in pod.PATRONI_PASSWORDS}
    assert set(started.exported) == passwords | set(PROD_KEYS)
    postgres = patroni_postgres_env({**started.exported, "PATRONI_SCOPE": "tsdb", "PATH": "/usr/bin:/bin"})
    assert postgres == {**PROD_KEYS, "PATH": "/usr/bin:/bin"}


# -- the agent ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("expression, seconds", [("0 1 * * 0", 7 * 86400), ("*/15 * * * *", 900), ("0 3 1 * *", 31 * 86400)])
def test_longest_gap_between_fires(expression: str, seconds: int) -> None:
    assert max_interval_seconds([expression]) == seconds


def test_full_and_diff_together_allow_a_day() -> None:
    assert max_interval_seconds(["0 1 * * 0", "0 1 * * 1-6"]) == 86400


def test_previous_fire_follows_cron_day_rules() -> None:
    now = dt.datetime(2026, 11, 25, 10, 0, tzinfo=UTC)  # a Wednesday
    assert parse_cron("0 1 * * 0").previous(now) == dt.datetime(2026, 11, 22, 1, 0, tzinfo=UTC)
    assert parse_cron("30 9 * * *").previous(now) == dt.datetime(2026, 11, 25, 9, 30, tzinfo=UTC)
    assert parse_cron("0 0 1 * 3").previous(now) == dt.datetime(2026, 11, 25, 0, 0, tzinfo=UTC)  # dom OR dow
    with pytest.raises(CronError):
        parse_cron("0 1 * * MON")


def _state(**stops: float) -> RepoState:
    return RepoState(ok=True, stanza_exists=True, newest={t: BackupRecord(t, s - 60, s, 1) for t, s in stops.items()})


def test_due_backup_catches_up_and_a_full_satisfies_a_diff() -> None:
    schedules = {"full": parse_cron("0 1 * * 0"), "diff": parse_cron("0 1 * * 1-6")}
    wednesday = dt.datetime(2026, 11, 25, 10, 0, tzinfo=UTC)
    sunday_full = dt.datetime(2026, 11, 22, 1, 30, tzinfo=UTC).timestamp()
    assert due_backup(schedules, _state(), wednesday) == "full"
    assert due_backup(schedules, _state(full=sunday_full), wednesday) == "diff"  # Monday's slot was missed
    today_diff = dt.datetime(2026, 11, 25, 1, 20, tzinfo=UTC).timestamp()
    assert due_backup(schedules, _state(full=sunday_full, diff=today_diff), wednesday) is None
    assert due_backup(schedules, _state(full=today_diff), wednesday) is None


class FakeRunner:
    def __init__(self, backup_rc: int = 0) -> None:
        self.commands: list[list[str]] = []
        self.backup_rc = backup_rc
        self.stanza = False

    def __call__(self, command: Sequence[str], timeout: float) -> subprocess.CompletedProcess[str]:
        command = list(command)
        self.commands.append(command)
        if "info" in command:
            code = 2 if self.stanza else 1
            return subprocess.CompletedProcess(command, 0, json.dumps([{"name": "s", "status": {"code": code}, "backup": []}]), "")
        if "stanza-create" in command:
            self.stanza = True
        rc = self.backup_rc if "backup" in command else 0
        return subprocess.CompletedProcess(command, rc, "", "boom" if rc else "")


def _agent(runner: FakeRunner, leader: bool) -> Agent:
    agent = Agent(AgentConfig(stanza="s", schedules={"full": parse_cron("0 1 * * 0")}), run=runner)
    agent.is_leader = lambda: leader  # type: ignore[method-assign]
    return agent


def test_only_the_leader_backs_up_and_it_creates_the_stanza_first() -> None:
    now = dt.datetime(2026, 11, 25, 10, 0, tzinfo=UTC)
    follower = FakeRunner()
    assert _agent(follower, leader=False).tick(now) is None
    assert not any("backup" in c or "stanza-create" in c for c in follower.commands)
    leader = FakeRunner()
    assert _agent(leader, leader=True).tick(now) == "full"
    actions = [c[2] for c in leader.commands if c[2] in ("stanza-create", "backup")]
    assert actions == ["stanza-create", "backup"]


def test_a_failed_backup_is_retried_after_the_back_off_not_every_loop() -> None:
    runner = FakeRunner(backup_rc=1)
    agent = _agent(runner, leader=True)
    now = dt.datetime(2026, 11, 25, 10, 0, tzinfo=UTC)
    assert agent.tick(now) == "full"
    assert agent.tick(now + dt.timedelta(minutes=1)) is None
    assert agent.tick(now + dt.timedelta(minutes=16)) == "full"
    assert agent.status.runs[("full", "failure")] == 2 and agent.status.last_run_success["full"] is False


def test_repository_defaults_are_secure() -> None:
    repo = RepositoryArgs(bucket="b-1", endpoint="s3.amazonaws.com", region="us-east-1", credentials_secret="c")
    assert repo.verify_tls and repo.uri_style == "host"


@pytest.mark.parametrize("code, ok, exists", [(0, True, True), (2, True, True), (1, True, False), (4, False, True)])
def test_repository_status_codes(code: int, ok: bool, exists: bool) -> None:
    """1 (no stanza yet) is not an error: a standby cluster's own stanza only appears after promotion."""
    state = parse_info(json.dumps([{"name": "s", "status": {"code": code}, "backup": []}]), "s")
    assert (state.ok, state.stanza_exists) == (ok, exists)
    assert parse_info("not json", "s").ok is False
    assert parse_info(json.dumps([{"name": "other", "status": {"code": 0}}]), "s").ok is False


def test_no_backup_while_the_stanza_cannot_be_created() -> None:
    runner = FakeRunner()
    runner.commands.clear()
    agent = _agent(runner, leader=True)
    original = runner.__call__

    def stanza_stays_missing(command: Sequence[str], timeout: float) -> subprocess.CompletedProcess[str]:
        result = original(command, timeout)
        runner.stanza = False
        return result

    agent._run = stanza_stays_missing  # type: ignore[assignment]
    assert agent.tick(dt.datetime(2026, 11, 25, 10, 0, tzinfo=UTC)) is None
    assert not any("backup" in c for c in runner.commands)


def _info(*backups: tuple[int, float]) -> str:
    """``pgbackrest info --output=json`` of stanza ``s`` holding full backups (repository, stop time)."""
    return json.dumps([{"name": "s", "status": {"code": 0}, "backup": [
        {"type": "full", "timestamp": {"start": stop - 60, "stop": stop}, "database": {"id": 1, "repo-key": repo},
         "info": {"repository": {"delta": 10, "size": 10}}} for repo, stop in backups]}])


def test_with_two_repositories_the_agent_backs_up_the_one_missing_the_scheduled_backup() -> None:
    now = dt.datetime(2026, 11, 25, 10, 0, tzinfo=UTC)
    recent = dt.datetime(2026, 11, 22, 1, 30, tzinfo=UTC).timestamp()  # after Sunday's 01:00 slot
    commands: list[list[str]] = []

    def run(command: Sequence[str], timeout: float) -> subprocess.CompletedProcess[str]:
        commands.append(list(command))
        return subprocess.CompletedProcess(command, 0, _info((1, recent)) if "info" in command else "", "")

    agent = Agent(AgentConfig(stanza="s", schedules={"full": parse_cron("0 1 * * 0")}, repositories=2), run=run)
    agent.is_leader = lambda: True  # type: ignore[method-assign]
    assert agent.tick(now) == "full"
    assert [c for c in commands if "backup" in c] == [["pgbackrest", "--stanza=s", "backup", "--type=full", "--repo=2"]]
    # The metrics' view is the stalest copy: repo2 has no full backup, so none is reported.
    assert "full" not in agent.status.repo.newest and agent.repos[0].newest["full"].stop == recent  # type: ignore[union-attr]


def test_the_stalest_repository_sets_the_reported_backup_age() -> None:
    both = [parse_info(_info((1, 2000.0), (2, 1000.0)), "s", repo) for repo in (1, 2)]
    assert [state.newest["full"].stop for state in both] == [2000.0, 1000.0]
    assert stalest(both).newest["full"].stop == 1000.0
    assert parse_info(_info((1, 2000.0), (2, 1000.0)), "s").newest["full"].stop == 2000.0  # one repository: all


def test_a_full_backup_of_an_earlier_timeline_makes_a_full_due_at_once() -> None:
    """After a promotion or a switch back the newest full backup's WAL does not lead to the new timeline."""
    schedules = {"full": parse_cron("0 1 * * 0"), "diff": parse_cron("0 1 * * 1-6")}
    wednesday = dt.datetime(2026, 11, 25, 10, 0, tzinfo=UTC)
    today = dt.datetime(2026, 11, 25, 1, 20, tzinfo=UTC).timestamp()
    state = RepoState(ok=True, stanza_exists=True, newest={"full": BackupRecord("full", today - 60, today, 1, timeline=2)})
    assert due_backup(schedules, state, wednesday) is None
    assert due_backup(schedules, state, wednesday, timeline=2) is None
    assert due_backup(schedules, state, wednesday, timeline=3) == "full"
    info = json.loads(_info((1, today)))
    info[0]["backup"][0]["archive"] = {"start": "00000003000000000000000E", "stop": "00000003000000000000000E"}
    assert parse_info(json.dumps(info), "s").newest["full"].timeline == 3
