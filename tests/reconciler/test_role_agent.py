"""The role agent against a real PostgreSQL, over the server's Unix socket only (the server rejects the
superuser over TCP, as the rendered pg_hba does): roles created and rotated on the primary, extensions
updated, nothing done on a replica, quiet rounds print nothing, failures are reported and survived; and the
agent the prod stack ships runs from its ConfigMap files alone, with its probe command seeing its heartbeat."""

from __future__ import annotations

import io
import json
from dataclasses import asdict
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from bench.pgserver import PgServer
from components.pooler import auth as pooler_auth
from components.reconciler import job as rj
from components.reconciler.tsreconcile import agent, sql
from components.reconciler.tsreconcile.desired import DatabaseDesired, RoleSpec
from components.timescaledb import patroni_config as pc
from components.shared.types import SecretFile
from components.timescaledb import role_agent
from tests.reconciler.conftest import can_login
from tests.reconciler.shipped import materialize
from tests.stacks import run_stack


def as_superuser(server: PgServer) -> psycopg.Connection[Any]:
    """The test's own superuser session, over the socket like the agent's."""
    return psycopg.connect(host=str(server.root), port=server.port, user=server.user, dbname="postgres", autocommit=True)


def socket_only(server: PgServer) -> None:
    """The rendered rule set's shape: the superuser on the socket only, everyone else SCRAM over TCP."""
    (server.pgdata / "pg_hba.conf").write_text(
        "local all all trust\n"
        f"host all {server.user} all reject\n"
        "host all all 127.0.0.1/32 scram-sha-256\n"
    )
    with as_superuser(server) as conn:
        conn.execute("SELECT pg_reload_conf()")


def over_the_socket(server: PgServer) -> Any:
    """The agent's own connector, pointed at this server's socket port (the pod's is libpq's default 5432)."""
    return lambda desired: agent.socket_connector(desired, connect=lambda **params: sql.driver_connect(port=server.port, **params))


def declare(tmp_path: Path, server: PgServer, passwords: dict[str, str], **overrides: Any) -> Path:
    roles = []
    for role, password in passwords.items():
        (tmp_path / role).write_text(password)
        options = "LOGIN REPLICATION" if role == pc.REPLICATION_USER else "LOGIN"
        roles.append(RoleSpec(role=role, password_file=str(tmp_path / role), create_options=options))
    with as_superuser(server) as conn:
        major = int(conn.execute("SHOW server_version_num").fetchone()[0]) // 10000
    desired = DatabaseDesired(superuser=server.user, socket_dir=str(server.root), roles=tuple(roles),
                              extensions=("pg_stat_statements",), postgres_major=major)
    path = tmp_path / "role-agent.json"
    path.write_text(json.dumps({**json.loads(desired.to_json()), **overrides}))
    return path


def round_on(server: PgServer, declaration: Path) -> tuple[list[tuple[str, str]], str | None, str]:
    out = io.StringIO()
    report, error = agent.run_round(declaration, out=out, connect_with=over_the_socket(server))
    return [(c["kind"], c["target"]) for c in report.changes], error, out.getvalue()


@pytest.fixture
def primary(server: PgServer) -> PgServer:
    socket_only(server)
    with pytest.raises(psycopg.OperationalError, match="pg_hba.conf rejects connection"):
        psycopg.connect(server.dsn(), connect_timeout=5).close()
    return server


def test_on_the_primary_a_round_creates_rotates_and_updates_over_the_socket_and_a_quiet_round_prints_nothing(
    primary: PgServer, tmp_path: Path
) -> None:
    with as_superuser(primary) as conn:
        conn.execute("DROP EXTENSION IF EXISTS pg_stat_statements")
        conn.execute("CREATE EXTENSION pg_stat_statements VERSION '1.10'")
        (default,) = conn.execute("SELECT default_version FROM pg_available_extensions WHERE name = 'pg_stat_statements'").fetchone()
    declaration = declare(tmp_path, primary, {"app": "FirstAppPassw0rd", pc.REPLICATION_USER: "StandbyPassw0rd"})

    changes, error, out = round_on(primary, declaration)
    assert error is None, out
    assert ("role", "app") in changes and ("role", pc.REPLICATION_USER) in changes
    assert (("extension", "postgres.pg_stat_statements") in changes) is (default != "1.10")
    assert can_login(primary, "app", "FirstAppPassw0rd")
    events = [json.loads(line) for line in out.splitlines()]
    assert events[-1]["event"] == "summary" and events[-1]["ok"] and "FirstAppPassw0rd" not in out
    with as_superuser(primary) as conn:
        assert conn.execute("SELECT rolreplication FROM pg_roles WHERE rolname = %s", (pc.REPLICATION_USER,)).fetchone() == (True,)
        assert conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'pg_stat_statements'").fetchone() == (default,)

    (tmp_path / "app").write_text("RotatedAppPassw0rd")  # the kubelet refreshing the mounted Secret
    changes, error, out = round_on(primary, declaration)
    assert (changes, error) == ([("role", "app")], None), out
    assert can_login(primary, "app", "RotatedAppPassw0rd") and not can_login(primary, "app", "FirstAppPassw0rd")

    assert round_on(primary, declaration) == ([], None, ""), "a round with nothing to do is silent"


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"postgres_major": 9}, "but 9 is declared"),
        ({"roles": [{"role": "app", "password_file": "/nonexistent/app"}]}, "/nonexistent/app"),
        ({"superuser": "nobody_here"}, 'role "nobody_here" does not exist'),
    ],
)
def test_a_failed_round_is_reported_and_changes_nothing(primary: PgServer, tmp_path: Path, override: dict[str, Any], message: str) -> None:
    declaration = declare(tmp_path, primary, {"app": "AppPassw0rd"}, **override)
    changes, error, out = round_on(primary, declaration)
    assert changes == [] and error is not None and message in error, error
    summary = json.loads(out.splitlines()[-1])
    assert summary["event"] == "summary" and summary["ok"] is False and message in summary["message"]
    with as_superuser(primary) as conn:
        assert conn.execute("SELECT count(*) FROM pg_roles WHERE rolname = 'app'").fetchone() == (0,)


@pytest.fixture
def replica() -> Iterator[PgServer]:
    """A server in recovery (``standby.signal``, nothing to replay): what the agent meets on a replica."""
    # initdb records max_connections 100 as the "primary's": a standby must not run with fewer.
    running = PgServer(base_dir=Path(tempfile.mkdtemp(prefix="tsreconcile-replica-")), extra_conf={"max_connections": "100"})
    try:
        running.init()
        (running.pgdata / "standby.signal").touch()
        running.start()
        yield running
    finally:
        running.cleanup()


def test_on_a_replica_a_round_does_nothing_and_says_nothing(replica: PgServer, tmp_path: Path) -> None:
    with psycopg.connect(replica.dsn()) as conn:
        assert conn.execute("SELECT pg_is_in_recovery()").fetchone() == (True,)
    declaration = declare(tmp_path, replica, {"app": "AppPassw0rd"})
    assert round_on(replica, declaration) == ([], None, "")
    with psycopg.connect(replica.dsn()) as conn:
        assert conn.execute("SELECT count(*) FROM pg_roles WHERE rolname = 'app'").fetchone() == (0,)


@pytest.fixture(scope="module")
def shipped_agent() -> tuple[dict[str, Any], dict[str, str], dict[str, Any]]:
    """(the role agent container, the Patroni ConfigMap's data, its program volume) as prod renders them."""
    manifests = run_stack("prod").manifests()
    statefulset = next(m for m in manifests if m["kind"] == "StatefulSet" and m["metadata"]["name"] == "timescaledb")
    spec = statefulset["spec"]["template"]["spec"]
    container = next(c for c in spec["containers"] if c["name"] == role_agent.CONTAINER)
    volume = next(v for v in spec["volumes"] if v["name"] == role_agent.PROGRAM_VOLUME)
    data = next(m for m in manifests if m["kind"] == "ConfigMap" and m["metadata"]["name"] == volume["configMap"]["name"])["data"]
    return container, data, volume


def test_the_shipped_agent_runs_from_its_configmap_files_alone_and_its_probe_sees_the_heartbeat(
    primary: PgServer, tmp_path: Path, shipped_agent: tuple[dict[str, Any], dict[str, str], dict[str, Any]]
) -> None:
    container, data, volume = shipped_agent
    root = materialize(volume, data, tmp_path / "program")
    rendered = DatabaseDesired.from_json((root / role_agent.DECLARATION_KEY).read_text())
    assert rendered.superuser == pc.SUPERUSER and rendered.socket_dir == pc.SOCKET_DIR
    assert {r.role for r in rendered.roles} == {"app", "reader", pc.MONITOR_USER, pc.REPLICATION_USER, pooler_auth.LOOKUP_ROLE}
    assert all(r.password_file.startswith(role_agent.SECRETS_DIR + "/") for r in rendered.roles)
    # This server stands in for the pod: its socket, its superuser, password files in a temp dir.
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    roles = []
    for spec in rendered.roles:
        secret = pooler_auth.stable_verifier("lookup-Passw0rd") if spec.verifier_in_file else f"{spec.role}-Passw0rd"
        (secrets / spec.role).write_text(secret)
        roles.append({**asdict(spec), "password_file": str(secrets / spec.role)})
    assert rendered.lookup is not None, "prod has a pooler"
    lookup_role = next(spec for spec in rendered.roles if spec.role == pooler_auth.LOOKUP_ROLE)
    assert lookup_role.verifier_in_file and lookup_role.password_file == role_agent.LOOKUP_VERIFIER_FILE
    with as_superuser(primary) as conn:
        conn.execute(f"CREATE DATABASE {rendered.lookup.database}")
    local = {**json.loads(rendered.to_json()), "superuser": primary.user, "socket_dir": str(primary.root),
             "roles": roles, "postgres_major": None}
    (root / role_agent.DECLARATION_KEY).write_text(json.dumps(local))

    moved = {rj.PROGRAM_DIR: str(root), "/tmp": str(tmp_path)}  # the pod's mount points -> here

    def here(value: str) -> str:
        return next((value.replace(mount, local, 1) for mount, local in moved.items() if value.startswith(mount)), value)

    env = {e["name"]: here(e["value"]) for e in container["env"]}
    env |= {"PATH": os.environ["PATH"], "PGPORT": str(primary.port)}
    heartbeat = Path(env[agent.HEARTBEAT_ENV])
    probe = [part.replace(role_agent.HEARTBEAT_FILE, str(heartbeat)) for part in container["livenessProbe"]["exec"]["command"]]
    assert subprocess.run(probe, capture_output=True, timeout=10).returncode != 0, "no heartbeat yet: the probe must fail"

    command = [sys.executable, *container["command"][1:], "--once"]
    assert container["command"][:3] == ["python3", "-m", rj.AGENT_MODULE]
    first = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True, timeout=60)
    assert first.returncode == 0, first.stdout + first.stderr
    changed = {json.loads(line)["target"] for line in first.stdout.splitlines() if json.loads(line)["event"] == "changed"}
    assert changed == {"app", "reader", pc.MONITOR_USER, pc.REPLICATION_USER, pooler_auth.LOOKUP_ROLE,
                       f"{rendered.lookup.database}.{pooler_auth.LOOKUP_SCHEMA}"}
    assert can_login(primary, "reader", "reader-Passw0rd")
    assert subprocess.run(probe, capture_output=True, timeout=10).returncode == 0, "fresh heartbeat: the probe passes"

    again = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True, timeout=60)
    assert (again.returncode, again.stdout) == (0, ""), again.stderr


def test_a_round_keeps_the_pooler_lookup_role_and_its_function_and_redoes_them_only_when_they_change(
    primary: PgServer, tmp_path: Path
) -> None:
    """Enabling the pooler on a running cluster: the agent creates what the bootstrap would have (role with its
    precomputed verifier, SECURITY DEFINER lookup function, grants); PgBouncer's auth_query then works."""
    with as_superuser(primary) as conn:
        conn.execute("CREATE DATABASE app")
    declaration = declare(tmp_path, primary, {"app": "AppPassw0rd"})
    verifier_file = tmp_path / "lookup-verifier"
    verifier_file.write_text(pooler_auth.stable_verifier("LookupPassw0rd"))

    def with_lookup(excluded: tuple[str, ...]) -> None:
        role, function = role_agent.lookup_specs(role_agent.PoolerLookup(
            verifier=SecretFile(secret_name="unused", key="unused"), database="app", excluded_roles=excluded))
        declared = json.loads(declaration.read_text())
        roles = [r for r in declared["roles"] if r["role"] != role.role]
        roles.append({**asdict(role), "password_file": str(verifier_file)})
        declaration.write_text(json.dumps({**declared, "roles": roles, "lookup": asdict(function)}))

    with_lookup(("reader",))
    changes, error, out = round_on(primary, declaration)
    assert error is None, out
    assert ("role", pooler_auth.LOOKUP_ROLE) in changes and ("lookup", "app.pgbouncer") in changes
    with psycopg.connect(host=primary.host, port=primary.port, user=pooler_auth.LOOKUP_ROLE, password="LookupPassw0rd",
                         dbname="app") as conn:
        (usename, passwd), = conn.execute(pooler_auth.AUTH_QUERY.replace("$1", "%s"), ("app",)).fetchall()
        assert usename == "app" and passwd.startswith("SCRAM-SHA-256$")
        assert conn.execute(pooler_auth.AUTH_QUERY.replace("$1", "%s"), (primary.user,)).fetchall() == [], "never a superuser"
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT rolpassword FROM pg_authid")

    assert round_on(primary, declaration) == ([], None, ""), "nothing changed: nothing re-run"
    with_lookup(("reader", "app"))  # the declared function changes: it is re-created, once
    changes, error, out = round_on(primary, declaration)
    assert (changes, error) == ([("lookup", "app.pgbouncer")], None), out
    with as_superuser(primary) as conn, psycopg.connect(conn.info.dsn.replace("dbname=postgres", "dbname=app")) as app:
        assert app.execute(f"SELECT count(*) FROM {pooler_auth.LOOKUP_FUNCTION}('app')").fetchone() == (0,)
    assert round_on(primary, declaration) == ([], None, "")


def test_the_agent_mounts_only_the_passwords_it_keeps() -> None:
    """Least privilege in the pod: the managed roles' passwords and the pooler's verifier, never the
    superuser's, rewind's or the REST API's (the agent needs none: it is the superuser by peer)."""
    manifests = run_stack("prod").manifests()
    statefulset = next(m for m in manifests if m["kind"] == "StatefulSet" and m["metadata"]["name"] == "timescaledb")
    spec = statefulset["spec"]["template"]["spec"]
    (volume,) = [v for v in spec["volumes"] if v["name"] == role_agent.SECRETS_VOLUME]
    mounted = {(item["key"], item["path"]) for source in volume["projected"]["sources"] for item in source["secret"]["items"]}
    assert mounted == {("password", "app"), ("password", "reader"), ("monitor-password", pc.MONITOR_USER),
                       ("replication-password", pc.REPLICATION_USER),
                       (pooler_auth.VERIFIER_KEY, pooler_auth.VERIFIER_FILE)}
    agent_container = next(c for c in spec["containers"] if c["name"] == role_agent.CONTAINER)
    assert {m["name"] for m in agent_container["volumeMounts"]} == {role_agent.PROGRAM_VOLUME, role_agent.SECRETS_VOLUME, "run", "tmp"}
    assert volume["projected"]["defaultMode"] == 0o440
