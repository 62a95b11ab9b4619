"""The whole reconciler against a real Patroni cluster (etcd + 3 members + PostgreSQL, tests/ha/cluster.py,
started from what the prod stack renders): one run brings a changed restart-only DCS parameter to
``SHOW`` on every member (replicas restarted first, then a switchover), rotates a password (new works, old
fails) without leaving password text in pg_stat_statements, and a second run changes nothing."""

from __future__ import annotations

import io
import json
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

import psycopg
import pytest

from components.reconciler.tsreconcile.desired import Desired, RoleSpec
from components.reconciler.tsreconcile.patroni import PatroniAPI
from components.reconciler.tsreconcile.report import Report
from components.reconciler.tsreconcile.run import reconcile
from components.timescaledb import patroni_config as pc
from tests.ha.cluster import PatroniCluster, missing_requirements, rendered_database

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


def test_one_run_applies_parameters_everywhere_rotates_passwords_and_a_second_run_is_a_no_op() -> None:
    rendered = rendered_database("prod")
    declared = dict(rendered.config["bootstrap"]["dcs"]["postgresql"]["parameters"])
    with PatroniCluster(rendered, members=3) as cluster:
        first_leader = cluster.wait_for_leader()
        database, app_user = cluster.application()
        with cluster.connect(first_leader, user=pc.SUPERUSER, dbname="postgres") as conn:
            before = int(conn.execute("SHOW max_connections").fetchone()[0])
        declared["max_connections"] = str(before + 17)  # restart-only: needs the full replica/switchover dance
        old_app_password = cluster.app_passwords[app_user]
        secrets = Path(tempfile.mkdtemp(prefix="tsreconcile-secrets-"))
        roles = (
            RoleSpec(role=app_user, password_file=_write(secrets, "app", "RotatedAppPassw0rd")),
            RoleSpec(role="reader", password_file=_write(secrets, "reader", cluster.app_passwords["reader"])),
            RoleSpec(role=pc.MONITOR_USER, password_file=_write(secrets, "monitor", cluster.app_passwords[pc.MONITOR_USER])),
            RoleSpec(role=pc.REPLICATION_USER, create_options="LOGIN REPLICATION",
                     password_file=_write(secrets, "standby", cluster.passwords["PATRONI_REPLICATION_PASSWORD"])),
        )
        desired = Desired(
            patroni_url=first_leader.api_url,
            superuser=pc.SUPERUSER,
            superuser_password_file=_write(secrets, "superuser", cluster.passwords["PATRONI_SUPERUSER_PASSWORD"]),
            restapi_user=pc.RESTAPI_USER,
            restapi_password_file=_write(secrets, "restapi", cluster.passwords["PATRONI_RESTAPI_PASSWORD"]),
            roles=roles,
            extensions=("timescaledb", "pg_stat_statements"),
            dcs_parameters=declared,
            managed_dcs_parameters=tuple(sorted(pc.DCS_ONLY_PARAMETERS)),
            timeout_seconds=120,
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
        reconcile(desired, first)
        first.summary()
        changes = [(c["kind"], c["target"]) for c in first.changes]
        replicas = {m.name for m in cluster.members} - {first_leader.name}
        assert ("parameter", "max_connections") in changes and ("parameter", "track_commit_timestamp") in changes
        assert ("role", app_user) in changes and ("role", "reader") not in changes
        restarts = [c for c in first.changes if c["kind"] in ("restart", "switchover")]
        assert {c["target"] for c in restarts[:2]} == replicas and all(c["kind"] == "restart" for c in restarts[:2])
        assert restarts[2]["kind"] == "switchover" and restarts[2]["target"] == first_leader.name, stream.getvalue()

        for member in cluster.members:
            with cluster.connect(member, user=pc.SUPERUSER, dbname="postgres") as conn:
                assert conn.execute("SHOW max_connections").fetchone() == (str(before + 17),), member.name
                assert conn.execute("SHOW track_commit_timestamp").fetchone() == ("off",), member.name
                assert conn.execute("SELECT count(*) FROM pg_settings WHERE pending_restart").fetchone() == (0,)
        assert "track_commit_timestamp" not in cluster.dcs_settings()["postgresql"]["parameters"]
        new_leader = cluster.wait_for_leader()
        assert new_leader.name != first_leader.name
        assert _can_login(new_leader.host, app_user, "RotatedAppPassw0rd", database)
        assert not _can_login(new_leader.host, app_user, old_app_password, database)
        with cluster.connect(new_leader, user=pc.SUPERUSER, dbname=database) as conn:
            tracked = [row[0] for row in conn.execute("SELECT query FROM pg_stat_statements")]
        assert tracked, "pg_stat_statements tracks nothing: the check below would be void"
        leaked = {"RotatedAppPassw0rd", old_app_password, *cluster.app_passwords.values(), *cluster.passwords.values()}
        assert [q for q in tracked if any(p in q for p in leaked) or "SCRAM-SHA-256$" in q] == []

        stream = io.StringIO()
        second = Report(stream)
        reconcile(desired, second)
        summary = second.summary()
        assert second.changes == [], stream.getvalue()
        assert summary.startswith("no changes")
        assert json.loads(stream.getvalue().splitlines()[-1])["changes"] == 0
