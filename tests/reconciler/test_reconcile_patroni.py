"""The whole reconciler against a real Patroni cluster (etcd + 3 members + PostgreSQL, tests/ha/cluster.py,
started from what the prod stack renders): one Job run, reading settings as the monitoring role, brings a
changed restart-only DCS parameter to ``SHOW`` on every member (replicas restarted first, then a
switchover) and a second run changes nothing; the shipped role agent, run as the servers' OS user on each
member's socket, rotates a password on the leader only (new works, old fails) without leaving password text
in pg_stat_statements, while the superuser has no TCP login at all."""

from __future__ import annotations

import io
import json
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path

import psycopg
import pytest

from components.pooler.auth import LOOKUP_ROLE, LOOKUP_SCHEMA, stable_verifier
from components.reconciler.job import AGENT_MODULE
from components.reconciler.tsreconcile import agent
from components.reconciler.tsreconcile.desired import DatabaseDesired, Desired
from components.reconciler.tsreconcile.patroni import PatroniAPI
from components.reconciler.tsreconcile.report import Report
from components.reconciler.tsreconcile.run import reconcile
from components.timescaledb import patroni_config as pc
from components.timescaledb import role_agent
from tests.ha.cluster import Member, PatroniCluster, missing_requirements, rendered_database
from tests.reconciler.shipped import materialize

pytestmark = [pytest.mark.ha, pytest.mark.skipif(bool(missing_requirements()), reason=str(missing_requirements()))]


def _write(directory: Path, name: str, text: str) -> str:
    path = directory / name
    path.write_text(text)
    return str(path)


def _can_login(host: str, role: str, password: str, dbname: str) -> bool:
    try:
        with psycopg.connect(host=host, port=5432, user=role, password=password, dbname=dbname, connect_timeout=5):
            return True
    except psycopg.OperationalError as error:
        assert "password authentication failed" in str(error), error
        return False


@pytest.fixture(scope="module")
def cluster() -> Iterator[PatroniCluster]:
    with PatroniCluster(rendered_database("prod"), members=3) as running:
        yield running


def test_the_job_applies_parameters_everywhere_as_the_monitoring_role_and_a_second_run_is_a_no_op(
    cluster: PatroniCluster, tmp_path: Path
) -> None:
    first_leader = cluster.wait_for_leader()
    database, _ = cluster.application()
    declared = dict(cluster.rendered.config["bootstrap"]["dcs"]["postgresql"]["parameters"])
    with cluster.connect(first_leader, user=pc.MONITOR_USER, dbname=database) as conn:
        before = int(conn.execute("SHOW max_connections").fetchone()[0])
    declared["max_connections"] = str(before + 17)  # restart-only: needs the full replica/switchover dance
    desired = Desired(
        patroni_url=first_leader.api_url,
        restapi_user=pc.RESTAPI_USER,
        restapi_password_file=_write(tmp_path, "restapi", cluster.passwords["PATRONI_RESTAPI_PASSWORD"]),
        settings_user=pc.MONITOR_USER,
        settings_password_file=_write(tmp_path, "settings", cluster.app_passwords[pc.MONITOR_USER]),
        settings_database=database,
        dcs_parameters=declared,
        managed_dcs_parameters=tuple(sorted(pc.DCS_ONLY_PARAMETERS)),
        # Each step (a replica's restart, the switchover) gets what Patroni's timing needs, plus a minute
        # for PostgreSQL restarts on a busy machine; a timeout shows the member list and every member's log.
        timeout_seconds=int(cluster.timing().switchover_seconds(margin=60)),
    )
    # Patroni's API refuses changes without the restapi credentials, so the reconciler's must be real ...
    unauthenticated = urllib.request.Request(f"{first_leader.api_url}/config", method="PATCH", data=b"{}")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(unauthenticated, timeout=5)
    assert refused.value.code == 401
    # ... and an override since removed from the stack (left in the DCS) must be reset to the default.
    api = PatroniAPI(first_leader.api_url, pc.RESTAPI_USER, cluster.passwords["PATRONI_RESTAPI_PASSWORD"])
    api.patch_parameters({"track_commit_timestamp": "on"})

    stream = io.StringIO()
    first = Report(stream)
    with cluster.explained():
        reconcile(desired, first)
    first.summary()
    changes = [(c["kind"], c["target"]) for c in first.changes]
    replicas = {m.name for m in cluster.members} - {first_leader.name}
    assert ("parameter", "max_connections") in changes and ("parameter", "track_commit_timestamp") in changes
    assert not [c for c in changes if c[0] in ("role", "extension")], "the database half is the role agent's"
    restarts = [c for c in first.changes if c["kind"] in ("restart", "switchover")]
    assert {c["target"] for c in restarts[:2]} == replicas and all(c["kind"] == "restart" for c in restarts[:2])
    assert restarts[2]["kind"] == "switchover" and restarts[2]["target"] == first_leader.name, stream.getvalue()

    for member in cluster.members:
        with cluster.connect(member, user=pc.MONITOR_USER, dbname=database) as conn:
            assert conn.execute("SHOW max_connections").fetchone() == (str(before + 17),), member.name
            assert conn.execute("SHOW track_commit_timestamp").fetchone() == ("off",), member.name
            assert conn.execute("SELECT count(*) FROM pg_settings WHERE pending_restart").fetchone() == (0,)
    assert "track_commit_timestamp" not in cluster.dcs_settings()["postgresql"]["parameters"]
    assert cluster.wait_for_leader().name != first_leader.name

    stream = io.StringIO()
    second = Report(stream)
    with cluster.explained():
        reconcile(desired, second)
    summary = second.summary()
    assert second.changes == [], stream.getvalue()
    assert summary.startswith("no changes")
    assert json.loads(stream.getvalue().splitlines()[-1])["changes"] == 0


def test_the_shipped_role_agent_rotates_a_password_over_the_socket_on_the_leader_only(cluster: PatroniCluster) -> None:
    """The agent as the prod pod runs it: its ConfigMap files, the servers' OS user, each member's own socket
    (``peer``, the rendered pg_hba); the superuser itself cannot log in over TCP, even with its password."""
    leader = cluster.wait_for_leader()
    database, app_user = cluster.application()
    volume = next(v for v in cluster.rendered.pod_spec["volumes"] if v["name"] == role_agent.PROGRAM_VOLUME)
    program = materialize(volume, cluster.rendered.files, cluster.root / "role-agent")
    rendered = DatabaseDesired.from_json((program / role_agent.DECLARATION_KEY).read_text())
    passwords = {**cluster.app_passwords, pc.REPLICATION_USER: cluster.passwords["PATRONI_REPLICATION_PASSWORD"],
                 app_user: "RotatedAppPassw0rd", LOOKUP_ROLE: stable_verifier("LookupPassw0rd")}
    old_app_password = cluster.app_passwords[app_user]
    secrets = cluster.root / "role-agent-secrets"
    secrets.mkdir()
    roles = [{**asdict(spec), "password_file": _write(secrets, spec.role, passwords[spec.role])} for spec in rendered.roles]
    assert rendered.lookup is not None, "prod has a pooler: the agent keeps its lookup role and function"
    for path in [program, secrets, *program.rglob("*"), *secrets.iterdir()]:  # readable by the servers' OS user,
        path.chmod(0o755 if path.is_dir() else 0o644)                         # whatever this process's umask

    def agent_round(member: Member) -> subprocess.CompletedProcess[str]:
        declaration = cluster.root / f"role-agent-{member.name}.json"
        declaration.write_text(json.dumps({**json.loads(rendered.to_json()), "roles": roles,
                                           "socket_dir": str(member.socket_dir), "postgres_major": None}))
        return cluster.run_python(["-m", AGENT_MODULE, "--once"], pythonpath=[program], env={
            agent.DECLARATION_ENV: str(declaration), agent.HEARTBEAT_ENV: str(member.root / "role-agent.alive")})

    for member in cluster.members:
        result = agent_round(member)
        assert result.returncode == 0, result.stdout + result.stderr
        events = [json.loads(line) for line in result.stdout.splitlines()]
        changed = [(e["kind"], e["target"]) for e in events if e["event"] == "changed"]
        on_leader = [("role", app_user), ("role", LOOKUP_ROLE), ("lookup", f"{database}.{LOOKUP_SCHEMA}")]
        assert changed == (on_leader if member is leader else []), (member.name, result.stdout)
    assert _can_login(leader.host, app_user, "RotatedAppPassw0rd", database)
    assert not _can_login(leader.host, app_user, old_app_password, database)
    with pytest.raises(psycopg.OperationalError, match="pg_hba.conf rejects connection"):
        psycopg.connect(host=leader.host, port=5432, user=pc.SUPERUSER, dbname="postgres", connect_timeout=5,
                        password=cluster.passwords["PATRONI_SUPERUSER_PASSWORD"]).close()

    with cluster.connect(leader, user=pc.MONITOR_USER, dbname=database) as conn:
        tracked = [row[0] for row in conn.execute("SELECT query FROM pg_stat_statements")]
    assert tracked, "pg_stat_statements tracks nothing: the check below would be void"
    leaked = {"RotatedAppPassw0rd", old_app_password, *cluster.app_passwords.values(), *cluster.passwords.values()}
    assert [q for q in tracked if any(p in q for p in leaked) or "SCRAM-SHA-256$" in q] == []
    again = agent_round(leader)
    assert (again.returncode, again.stdout) == (0, ""), again.stderr
