"""Fixtures for the tsflow tests: a throwaway PostgreSQL per session, a fresh database per test."""

from __future__ import annotations

import itertools
import os
import sys
from pathlib import Path
from typing import Iterator

import psycopg
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # wl_support, which adds workloads/ and bench/

from wl_support import migrate_db  # noqa: E402
from pgserver import PgServer  # noqa: E402

_db_names = itertools.count()


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    """PostgreSQL on 127.0.0.1:<free port> in a temp dir, for the whole session.

    The dir comes from tempfile, not tmp_path_factory: pytest deletes old basetemp dirs when other
    pytest runs start, which would pull the data directory from under a running server.
    """
    server = PgServer().init().start()
    try:
        yield server
    finally:
        server.cleanup()


@pytest.fixture
def dsn(pg_server: PgServer) -> Iterator[str]:
    """A brand-new empty database on the session server."""
    name = f"t{os.getpid()}_{next(_db_names)}"
    yield pg_server.create_database(name)
    with psycopg.connect(pg_server.dsn(), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def migrated_dsn(dsn: str) -> str:
    """A fresh database with the tsflow schema applied."""
    migrate_db(dsn)
    return dsn
