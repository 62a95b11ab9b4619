"""A real PostgreSQL server for the reconciler's SQL half: SCRAM logins over TCP, statement logging
and pg_stat_statements (utility statements tracked) switched on, so leaks would be visible."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import psycopg
import pytest

from bench.pgserver import PgServer
from components.reconciler.tsreconcile import sql

SERVER_CONF = {
    "log_statement": "'all'",
    "shared_preload_libraries": "'pg_stat_statements'",
    "pg_stat_statements.track_utility": "on",
    "password_encryption": "'scram-sha-256'",
}


@pytest.fixture
def server() -> Iterator[PgServer]:
    """A fresh server (own temp dir outside the clone); superuser trusted on loopback, others SCRAM."""
    base = Path(tempfile.mkdtemp(prefix="tsreconcile-"))
    with PgServer(base_dir=base, extra_conf=SERVER_CONF) as running:
        (running.pgdata / "pg_hba.conf").write_text(
            "local all all trust\n"
            f"host all {running.user} 127.0.0.1/32 trust\n"
            "host all all 127.0.0.1/32 scram-sha-256\n"
        )
        with psycopg.connect(running.dsn(), autocommit=True) as conn:
            conn.execute("SELECT pg_reload_conf()")
            conn.execute("CREATE EXTENSION pg_stat_statements")
        yield running


def superuser(server: PgServer) -> Any:
    """What the reconciler's ``connect(database)`` returns, through its own driver shim."""
    return lambda database: sql.driver_connect(host=server.host, port=server.port, user=server.user, dbname=database)


def can_login(server: PgServer, role: str, password: str) -> bool:
    try:
        with closing(psycopg.connect(host=server.host, port=server.port, user=role, password=password,
                                     dbname="postgres", connect_timeout=5)):
            return True
    except psycopg.OperationalError as error:
        assert "password authentication failed" in str(error), error
        return False


def tracked_statements(server: PgServer) -> list[str]:
    with psycopg.connect(server.dsn(), autocommit=True) as conn:
        return [row[0] for row in conn.execute("SELECT query FROM pg_stat_statements")]
