"""Archiving, scheduled backups and point-in-time restore with real pgBackRest, PostgreSQL and S3.

Real processes, all on loopback and started here: moto's S3 API over TLS (a throwaway CA that the
rendered ``repo1-storage-ca-file`` points at, path-style addressing, certificate verification on),
Debian's PostgreSQL 15 and pgBackRest. What runs is what the component renders:

* ``pgbackrest.conf`` from :func:`pgbackrest_conf` and the Patroni sections from
  :func:`patroni_backup_config` (``archive_mode``/``archive_command``, the custom bootstrap command and
  its ``recovery_conf``), for ``BackupArgs`` parsed from a ``backup:`` stack section by the stack
  parser. Overridden for the test, through :class:`Layout` only: the data directory, socket directory,
  port, spool and lock directories, the config file's path and the CA file (host paths and ports), and
  the repository endpoint (``localhost:<port>`` of the test server).
* Backups are taken by the backup agent (``backup_agent.Agent.tick``) exactly as in the pod, with a
  stub standing in for Patroni's ``/primary`` endpoint.
* The S3 key pair reaches pgBackRest as in the pod, never from this process's environment: written as
  the files of prod's rendered Secret volume, exported by the rendered start commands run with bash
  (:func:`run_start_command`); PostgreSQL gets what the installed Patroni passes on from the Patroni
  container's command (:func:`patroni_postgres_env`), the agent's pgBackRest runs what the agent
  container's command exported.
* Restores run the rendered bootstrap command, then do what Patroni does after it: write
  ``recovery_conf`` into the configuration, create ``recovery.signal`` and start PostgreSQL.

Timings (backup of N rows, restores) are printed; run with ``-s`` to see them.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import http.server
import os
import shlex
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from components.timescaledb import patroni_config as pc
from components.timescaledb import pod
from components.timescaledb.backup import (
    BackupArgs, Layout, credential_options, merge, option_env, patroni_backup_config, pgbackrest_conf,
)
from components.timescaledb.backup_agent import (
    Agent, AgentConfig, parse_cron, parse_info, render_metrics, stanza_create_command,
)
from stack.backup import parse_backup
from stack.reader import ConfigSection
from tests.backup.support import (
    ACCESS_KEY, PG_BIN, SECRET_KEY, Cluster, S3Server, give_to, patroni_postgres_env, remove, run_start_command,
    service_user,
)
from tests.stacks import run_stack

ROWS = 500_000
RESTORE_POINT = "before-after-target"
BUCKET = "backups"

pytestmark = [
    pytest.mark.skipif(
        shutil.which("pgbackrest") is None or not (PG_BIN / "postgres").exists() or shutil.which("openssl") is None,
        reason="needs Debian's pgbackrest, postgresql-15 and openssl (scripts/test installs them)",
    ),
    pytest.mark.timeout(900),
]


def backup_args(s3: S3Server, stanza: str, **extra: Any) -> BackupArgs:
    """A ``backup:`` section as a stack would write it, parsed by the stack parser."""
    section = {
        "stanza": stanza,
        "repository": {"bucket": BUCKET, "endpoint": s3.endpoint, "region": "us-east-1", "uriStyle": "path",
                       "credentialsSecret": "backup-s3"},
        "retention": {"full": 2, "diff": 3},
        **extra,
    }
    args = parse_backup(ConfigSection(section, "timescale-k8s:backup"), default_stanza=stanza)
    assert args is not None
    return args


def layout(cluster: Cluster, s3: S3Server) -> Layout:
    return Layout(data_dir=str(cluster.data), socket_dir=str(cluster.root), port=cluster.port,
                  spool_dir=str(cluster.root / "spool"), lock_dir=str(cluster.root / "lock"),
                  config_file=str(cluster.root / "pgbackrest.conf"), ca_file=str(s3.ca))


def rendered_patroni(args: BackupArgs, where: Layout, scope: str) -> dict[str, Any]:
    base = pc.build_patroni_config(pc.PatroniSettings(scope=scope, kubernetes_labels={}, parameters={},
                                                      pod_network_cidrs=["10.0.0.0/8"]))
    return merge(base, patroni_backup_config(args, where))


def quoted(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


@functools.cache
def pod_credentials(container: str) -> dict[str, str]:
    """What a pgBackRest under ``container`` of prod's member pod gets from the start command: the test
    Secret's keys as the volume's files, exported by the rendered command (for the Patroni container, as
    Patroni then passes them to PostgreSQL)."""
    assert not [k for k in os.environ if k.startswith("PGBACKREST_REPO1_S3")], "the keys must come from the files"
    spec = next(m for m in run_stack("prod").manifests() if m["kind"] == "StatefulSet")["spec"]["template"]["spec"]
    program = "patroni" if container == pod.PATRONI_CONTAINER else "python3"
    root = Path(tempfile.mkdtemp(prefix="tsk8s-pod-"))
    try:
        exported = run_start_command(spec, container, {"AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY},
                                     root, program=program).exported
    finally:
        remove(root)
    credentials = patroni_postgres_env(exported) if container == pod.PATRONI_CONTAINER else exported
    # prod has two repositories, so both key pairs arrive; this suite's pgbackrest.conf has one (tests/dr runs two),
    # and its pgBackRest gets that one's pair.
    assert set(credentials) == {option_env(option) for option in credential_options(2)}, set(credentials)
    return {variable: value for variable, value in credentials.items() if variable.startswith("PGBACKREST_REPO1_")}


def new_cluster(root: Path, name: str, s3: S3Server, args: BackupArgs) -> tuple[Cluster, Layout]:
    """A cluster directory with its rendered pgbackrest.conf and the Patroni container's pgBackRest environment."""
    probe = Cluster(root / name, service_user(), {})
    where = layout(probe, s3)
    Path(where.config_file).write_text(pgbackrest_conf(args, where))
    Path(where.config_file).chmod(0o644)
    probe.env = {"PGBACKREST_CONFIG": where.config_file, **pod_credentials(pod.PATRONI_CONTAINER)}
    return probe, where


class _Primary(http.server.BaseHTTPRequestHandler):
    """Patroni's ``GET /primary`` on the leader: 200."""

    def do_GET(self) -> None:  # noqa: N802
        self.send_response(200 if self.path == "/primary" else 503)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@dataclass
class Source:
    s3: S3Server
    root: Path
    cluster: Cluster
    args: BackupArgs
    agent: Agent
    target_time: str
    counts: dict[str, int]
    timings: dict[str, float]


def phase_counts(cluster: Cluster) -> dict[str, int]:
    return dict(cluster.query("SELECT phase, count(*)::int FROM rows GROUP BY phase"))  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def source() -> Iterator[Source]:
    with source_cluster(ROWS) as built:
        yield built
        for key, seconds in built.timings.items():
            print(f"{key}: {seconds:.2f}s")


@contextlib.contextmanager
def source_cluster(rows: int) -> Iterator[Source]:
    """S3, a source cluster archiving to it with ``rows`` base rows, a full and a diff backup by the agent,
    rows before and after a recorded target time; everything stopped and deleted on exit."""
    root = Path(tempfile.mkdtemp(prefix="tsk8s-backup-"))
    root.chmod(0o755)
    s3: S3Server | None = None
    clusters: list[Cluster] = []
    patroni = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Primary)
    threading.Thread(target=patroni.serve_forever, daemon=True).start()
    try:
        s3 = S3Server(root)
        s3.client().create_bucket(Bucket=BUCKET)
        args = backup_args(s3, "source")
        cluster, where = new_cluster(root, "source", s3, args)
        clusters.append(cluster)
        agent_env = {"PGBACKREST_CONFIG": where.config_file, **pod_credentials(pod.BACKUP_CONTAINER)}
        for directory in ("spool", "lock"):
            (cluster.root / directory).mkdir()
            give_to(cluster.root / directory, cluster.user)
        cluster.initdb()
        parameters = rendered_patroni(args, where, "source")["postgresql"]["parameters"]
        cluster.configure({k: quoted(v) for k, v in parameters.items()})
        cluster.start()

        agent = Agent(
            AgentConfig(
                stanza=args.stanza,
                schedules={"full": parse_cron(args.full_schedule), "diff": parse_cron("* * * * *")},
                patroni_url=f"http://127.0.0.1:{patroni.server_address[1]}",
                data_dir=str(cluster.data), socket_dir=str(cluster.root), port=cluster.port,
            ),
            run=lambda command, timeout: cluster.run(command, timeout, env=agent_env),
        )
        # The agent creates the stanza on its first tick; do it before loading rows so PostgreSQL's archiver
        # never fails (after 3 failures it sleeps 60 s, which would blur the backup timings).
        created = cluster.run(stanza_create_command("pgbackrest", args.stanza))
        assert created.returncode == 0, created.stderr
        cluster.query("CREATE TABLE rows (id bigserial PRIMARY KEY, phase text NOT NULL, payload text NOT NULL)")
        cluster.query("INSERT INTO rows (phase, payload) SELECT 'base', md5(i::text) FROM generate_series(1, %s) i", rows)
        timings: dict[str, float] = {}
        size = cluster.query("SELECT pg_database_size('postgres')")[0][0]

        started = time.monotonic()
        assert agent.tick(dt.datetime.now(dt.timezone.utc)) == "full", agent.status
        timings[f"full backup ({rows} rows, {size / 2**20:.0f} MiB)"] = time.monotonic() - started
        cluster.query("INSERT INTO rows (phase, payload) SELECT 'after-full', 'x' FROM generate_series(1, 1000)")
        started = time.monotonic()
        assert agent.tick(dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=61)) == "diff", agent.status
        timings["diff backup (+1000 rows)"] = time.monotonic() - started

        cluster.query("INSERT INTO rows (phase, payload) SELECT 'before-target', 'x' FROM generate_series(1, 500)")
        target = cluster.query(
            "SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') || '+00'"
        )[0][0]
        cluster.query("SELECT pg_create_restore_point(%s)", RESTORE_POINT)
        time.sleep(1.2)
        cluster.query("INSERT INTO rows (phase, payload) SELECT 'after-target', 'x' FROM generate_series(1, 700)")
        checked = cluster.run(["pgbackrest", f"--stanza={args.stanza}", "check"])  # switches WAL, waits for it
        assert checked.returncode == 0, checked.stdout + checked.stderr
        agent.status.repo, agent.status.archiver = agent.read_repo(), agent.read_archiver()  # refresh metrics
        print(f"\nsource database: {rows} base rows, {size / 2**20:.1f} MiB")
        yield Source(s3, root, cluster, args, agent, target, phase_counts(cluster), timings)
    finally:
        patroni.shutdown()
        for cluster in clusters:
            cluster.stop()
        if s3 is not None:
            s3.stop()
        remove(root)


def restore(source: Source, name: str, target: dict[str, Any]) -> Cluster:
    """Bootstrap a new cluster from the source's repository as Patroni's custom bootstrap would."""
    args = backup_args(source.s3, name, restore={"fromStanza": source.args.stanza, "target": target})
    cluster, where = new_cluster(source.root, name, source.s3, args)
    for directory in ("spool", "lock", "data"):
        (cluster.root / directory).mkdir(mode=0o700)
        give_to(cluster.root / directory, cluster.user)
    config = rendered_patroni(args, where, name)
    bootstrap = config["bootstrap"][config["bootstrap"]["method"]]
    started = time.monotonic()
    restored = cluster.run(shlex.split(bootstrap["command"]))
    assert restored.returncode == 0, restored.stdout + restored.stderr
    source.timings[f"restore {name}: pgbackrest restore"] = time.monotonic() - started
    # What Patroni does next (PostgreSQL >= 12): its own parameters and recovery_conf, recovery.signal.
    settings = {**config["postgresql"]["parameters"], **bootstrap["recovery_conf"]}
    cluster.configure({k: quoted(v) for k, v in settings.items()})
    (cluster.data / "recovery.signal").touch()
    give_to(cluster.data / "recovery.signal", cluster.user)
    started = time.monotonic()
    cluster.start()
    cluster.wait_promoted()
    source.timings[f"restore {name}: recovery until promoted"] = time.monotonic() - started
    return cluster


@pytest.fixture
def restored(source: Source, request: pytest.FixtureRequest) -> Iterator[Cluster]:
    name, target = request.param
    cluster = None
    try:
        cluster = restore(source, name, target(source))
        yield cluster
    finally:
        if cluster is not None:
            cluster.stop()


def test_agent_took_a_full_and_a_differential_backup(source: Source) -> None:
    info = source.cluster.run(["pgbackrest", f"--stanza={source.args.stanza}", "--output=json", "info"])
    state = parse_info(info.stdout, source.args.stanza)
    assert state.ok and {"full", "diff"} <= set(state.newest)
    metrics = render_metrics(source.agent.status)
    assert "pgbackrest_repo_up 1" in metrics
    assert 'pgbackrest_backup_last_completed_timestamp_seconds{type="full"}' in metrics
    assert 'pgbackrest_backup_runs_total{type="diff",result="success"} 1' in metrics
    archived = source.agent.status.archiver
    assert archived is not None and archived.archived_count > 0 and archived.failed_count == 0


@pytest.mark.parametrize("restored", [("pitr", lambda s: {"time": s.target_time}),
                                      ("named", lambda s: {"name": RESTORE_POINT})], indirect=True, ids=["time", "name"])
def test_restore_to_a_time_or_restore_point_has_exactly_the_rows_before_it(source: Source, restored: Cluster) -> None:
    assert source.counts == {"base": ROWS, "after-full": 1000, "before-target": 500, "after-target": 700}
    assert phase_counts(restored) == {"base": ROWS, "after-full": 1000, "before-target": 500}


@pytest.mark.parametrize("restored", [("latest", lambda s: {"latest": True})], indirect=True)
def test_restore_latest_has_every_row_and_archives_to_its_own_stanza(source: Source, restored: Cluster) -> None:
    assert phase_counts(restored) == source.counts
    # As the agent does on the new leader, once a minute until it works: create this cluster's stanza
    # (it can meet the archive lock of an archive-push still failing for the missing stanza), then
    # archive into it.
    deadline = time.monotonic() + 120
    while (created := restored.run(["pgbackrest", "--stanza=latest", "stanza-create"])).returncode != 0:
        assert "unable to acquire lock" in created.stderr + created.stdout and time.monotonic() < deadline, created.stderr
        time.sleep(2)
    result = restored.run(["pgbackrest", "--stanza=latest", "check"])
    assert result.returncode == 0, result.stdout + result.stderr
    keys = [o["Key"] for o in source.s3.client().list_objects_v2(Bucket=BUCKET).get("Contents", [])]
    assert any(k.startswith("timescaledb/archive/latest/") and k.endswith(".history") for k in keys)
    assert not any(k.startswith("timescaledb/archive/source/") and k.endswith(".history") for k in keys)
