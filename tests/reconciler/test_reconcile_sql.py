"""The reconciler's SQL half against a real PostgreSQL: rotated passwords, no password text anywhere,
extension updates with before/after versions, and a second run that changes nothing."""

from __future__ import annotations

import io
import json
from contextlib import closing
from pathlib import Path

import psycopg
import pytest

from bench.pgserver import PgServer
from components.reconciler.tsreconcile import sql
from components.reconciler.tsreconcile.desired import RoleSpec
from components.reconciler.tsreconcile.pgvalues import value_matches
from components.reconciler.tsreconcile.report import Report
from tests.reconciler.conftest import can_login, superuser, tracked_statements


def secret_files(tmp_path: Path, passwords: dict[str, str]) -> list[RoleSpec]:
    specs = []
    for role, password in passwords.items():
        path = tmp_path / f"{role}-password"
        path.write_text(password)
        specs.append(RoleSpec(role=role, password_file=str(path)))
    return specs


def run_roles(server: PgServer, specs: list[RoleSpec]) -> tuple[Report, list[dict]]:
    stream = io.StringIO()
    report = Report(stream)
    with closing(superuser(server)("postgres")) as connection:
        sql.reconcile_roles(connection, specs, report)
    report.summary()
    return report, [json.loads(line) for line in stream.getvalue().splitlines()]


def test_rotated_password_works_old_one_fails_and_no_password_text_is_tracked(server: PgServer, tmp_path: Path) -> None:
    old = {"app": "OldAppPassw0rd", "reader": "OldReaderPassw0rd"}
    new = {"app": "NewAppPassw0rd", "reader": "OldReaderPassw0rd"}
    first, _ = run_roles(server, secret_files(tmp_path, old))  # roles missing: created
    assert [c["target"] for c in first.changes] == ["app", "reader"]
    assert can_login(server, "app", old["app"])

    rotated, events = run_roles(server, secret_files(tmp_path, new))
    assert [(c["kind"], c["target"]) for c in rotated.changes] == [("role", "app")]
    assert [c["target"] for c in rotated.checks] == ["reader"], "an unchanged password is checked, not re-set"
    assert can_login(server, "app", new["app"]) and not can_login(server, "app", old["app"])
    assert can_login(server, "reader", new["reader"])
    assert events[-1]["event"] == "summary" and events[-1]["changes"] == 1

    again, events = run_roles(server, secret_files(tmp_path, new))
    assert again.changes == [] and "no changes" in events[-1]["message"]

    # A naive cleartext ALTER shows up in the statistics and the log: the checks below can fail.
    with psycopg.connect(server.dsn(), autocommit=True) as conn:
        conn.execute("CREATE ROLE control LOGIN")
        conn.execute("ALTER ROLE control PASSWORD 'ControlCleartext9'")
    tracked = tracked_statements(server)
    log = server.logfile.read_text()
    assert any("ControlCleartext9" in q for q in tracked) and "ControlCleartext9" in log
    secrets = {*old.values(), *new.values()}
    assert [q for q in tracked if any(s in q for s in secrets) or "SCRAM-SHA-256$" in q] == []
    assert not any(s in log for s in secrets) and "SCRAM-SHA-256$" not in log


def test_a_password_set_by_an_old_md5_bootstrap_is_replaced_by_a_verifier(server: PgServer, tmp_path: Path) -> None:
    with psycopg.connect(server.dsn(), autocommit=True) as conn:
        conn.execute("CREATE ROLE legacy LOGIN")
        conn.execute("SET password_encryption = 'md5'")
        conn.execute("ALTER ROLE legacy PASSWORD 'SamePassw0rd'")
    report, _ = run_roles(server, secret_files(tmp_path, {"legacy": "SamePassw0rd"}))
    assert [c["target"] for c in report.changes] == ["legacy"]
    with psycopg.connect(server.dsn(), autocommit=True) as conn:
        (stored,) = conn.execute("SELECT rolpassword FROM pg_authid WHERE rolname = 'legacy'").fetchone()
    assert stored.startswith("SCRAM-SHA-256$")


def test_extensions_are_updated_in_every_database_with_versions_reported(server: PgServer) -> None:
    server.create_database("app")
    with psycopg.connect(server.dsn("app"), autocommit=True) as conn:
        conn.execute("CREATE EXTENSION pg_stat_statements VERSION '1.10'")
        (default,) = conn.execute("SELECT default_version FROM pg_available_extensions WHERE name = 'pg_stat_statements'").fetchone()
    assert default != "1.10"
    stream = io.StringIO()
    report = Report(stream)
    sql.reconcile_extensions(superuser(server), ("timescaledb", "pg_stat_statements"), report)
    assert report.changes == [{"event": "changed", "kind": "extension", "target": "app.pg_stat_statements",
                               "before": "1.10", "after": default}]
    assert {c["target"] for c in report.checks} == {"postgres.pg_stat_statements"}
    with psycopg.connect(server.dsn("app"), autocommit=True) as conn:
        assert conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'pg_stat_statements'").fetchone() == (default,)
    second = Report(io.StringIO())
    sql.reconcile_extensions(superuser(server), ("timescaledb", "pg_stat_statements"), second)
    assert second.changes == [] and len(second.checks) == 2


def test_an_image_older_than_the_data_is_refused(server: PgServer, monkeypatch: pytest.MonkeyPatch) -> None:
    real_rows = sql.rows

    def older_image(connection, query, params=()):  # type: ignore[no-untyped-def]
        found = real_rows(connection, query, params)
        if "pg_available_extensions" in query:
            return [(name, "99.0", default) for name, _, default in found]
        return found

    monkeypatch.setattr(sql, "rows", older_image)
    with pytest.raises(sql.ReconcileError, match=r"postgres.pg_stat_statements is at 99.0 but the image ships .*downgrades"):
        sql.reconcile_extensions(superuser(server), ("pg_stat_statements",), Report(io.StringIO()))


def test_primary_and_major_version_checks(server: PgServer) -> None:
    with closing(superuser(server)("postgres")) as connection:
        major = sql.server_major(connection)
        sql.check_major(connection, major)
        sql.check_major(connection, None)
        with pytest.raises(sql.ReconcileError, match=rf"runs PostgreSQL {major} but {major - 1} is declared"):
            sql.check_major(connection, major - 1)


VALUE_CASES = [
    ("max_connections", "60", True),
    ("max_connections", "61", False),
    ("shared_buffers", "128MB", True),
    ("shared_buffers", "131072kB", True),
    ("shared_buffers", "256MB", False),
    ("fsync", "off", True),
    ("fsync", "false", True),
    ("fsync", "on", False),
    ("wal_level", "replica", True),
    ("wal_level", "logical", False),
    ("checkpoint_timeout", "5min", True),
    ("checkpoint_timeout", "300s", True),
    ("checkpoint_timeout", "301s", False),
]


def test_declared_values_compare_as_postgres_parses_them(server: PgServer) -> None:
    with closing(superuser(server)("postgres")) as connection:
        settings = sql.settings_of(connection, {name for name, _, _ in VALUE_CASES})
    wrong = []
    for name, declared, expected in VALUE_CASES:
        setting, unit, vartype, pending = settings[name]
        assert not pending
        if value_matches(declared, setting, unit, vartype) is not expected:
            wrong.append((name, declared, setting, unit))
    assert wrong == []
