"""tsflow hardening: settings checked even from the environment, no password in errors, the password
read from a mounted file, and a metrics server that idle connections cannot exhaust."""

from __future__ import annotations

import socket
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from prometheus_client import CollectorRegistry

from pgserver import PgServer
from tsflow.http import Health, ProbeServer
from wl_support import run_tsflow

SECRET = "Sup3rSecretPassw0rd"


def _one_line_error(result: object) -> str:
    err = result.stderr  # type: ignore[attr-defined]
    assert result.returncode == 2, err  # type: ignore[attr-defined]
    assert "Traceback" not in err + result.stdout  # type: ignore[attr-defined]
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tsflow: error: "), err
    return lines[0]


@pytest.mark.parametrize(("command", "env", "fragment"), [
    ("migrate", {"TSFLOW_LOG_LEVEL": "verbose"}, "TSFLOW_LOG_LEVEL: must be one of DEBUG, INFO, WARNING, ERROR, got 'verbose'"),
    ("generate", {"TSFLOW_SHAPE": "square"}, "TSFLOW_SHAPE: must be one of sine, walk, mixed, got 'square'"),
])
def test_environment_values_are_checked_like_flags(command: str, env: dict[str, str], fragment: str) -> None:
    assert fragment in _one_line_error(run_tsflow([command], timeout=30, **env))


def test_environment_values_in_another_case_still_work() -> None:
    result = run_tsflow(["generate", "--help"], TSFLOW_LOG_LEVEL="debug", TSFLOW_SHAPE="Walk")
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("dsn", [
    f"host=db user=app {SECRET}",  # the key forgotten: libpq's message quotes the value
    f"host=db user=app password={SECRET[:9]} {SECRET[9:]}",  # a space in an unquoted password
])
def test_a_malformed_dsn_is_refused_without_echoing_it(dsn: str) -> None:
    line = _one_line_error(run_tsflow(["migrate"], TSFLOW_DSN=dsn))
    assert "--dsn/TSFLOW_DSN is not a valid libpq connection string" in line
    assert SECRET[:9] not in line and SECRET[9:] not in line


# -- the password from a mounted file --------------------------------------------------------------


@pytest.fixture(scope="module")
def scram_server() -> Iterator[PgServer]:
    """A server where role ``app`` must authenticate with its password (SCRAM)."""
    server = PgServer().init().start()
    try:
        with psycopg.connect(server.dsn(), autocommit=True) as conn:
            conn.execute(f"CREATE ROLE app LOGIN PASSWORD '{SECRET}'")
            conn.execute("CREATE DATABASE app OWNER app")
        (server.pgdata / "pg_hba.conf").write_text(
            f"host all {server.user} 127.0.0.1/32 trust\nhost all all 127.0.0.1/32 scram-sha-256\n"
        )
        with psycopg.connect(server.dsn(), autocommit=True) as conn:
            conn.execute("SELECT pg_reload_conf()")
        yield server
    finally:
        server.cleanup()


def _libpq_env(server: PgServer) -> dict[str, str]:
    return {"PGHOST": server.host, "PGPORT": str(server.port), "PGUSER": "app", "PGDATABASE": "app",
            "TSFLOW_STARTUP_TIMEOUT": "0", "TSFLOW_CONNECT_TIMEOUT": "3"}


def test_the_password_comes_from_the_mounted_file(scram_server: PgServer, tmp_path: Path) -> None:
    password_file = tmp_path / "password"
    password_file.write_text(SECRET)  # as a Secret volume writes it: no line break
    result = run_tsflow(["migrate"], timeout=60, TSFLOW_PASSWORD_FILE=str(password_file), **_libpq_env(scram_server))
    assert result.returncode == 0, result.stderr
    assert SECRET not in result.stdout + result.stderr


def test_without_the_file_the_server_refuses(scram_server: PgServer) -> None:
    result = run_tsflow(["migrate"], timeout=60, **_libpq_env(scram_server))
    assert result.returncode == 1 and "password" in result.stderr, result.stderr


def test_an_unreadable_password_file_is_a_usage_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    line = _one_line_error(run_tsflow(["migrate"], TSFLOW_PASSWORD_FILE=str(missing)))
    assert f"TSFLOW_PASSWORD_FILE ('{missing}') cannot be read" in line


# -- the metrics server under idle connections -----------------------------------------------------


def _get(port: int, path: str) -> int:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
        return int(response.status)


def test_idle_connections_neither_pile_up_threads_nor_stay_open() -> None:
    health = Health()
    health.set_ready(True)
    before = threading.active_count()
    with ProbeServer(CollectorRegistry(), health, "127.0.0.1", 0, io_timeout=0.5, max_connections=8) as server:
        idle = [socket.create_connection(("127.0.0.1", server.port), timeout=10) for _ in range(300)]
        try:
            time.sleep(0.2)
            assert threading.active_count() <= before + 1 + 8, "one thread per idle connection"
            deadline = time.monotonic() + 10
            for sock in idle:  # every idle connection is closed by the server: refused or timed out
                sock.settimeout(max(0.1, deadline - time.monotonic()))
                try:
                    assert sock.recv(1) == b""
                except ConnectionResetError:
                    pass
        finally:
            for sock in idle:
                sock.close()
        assert _get(server.port, "/healthz") == 200
        assert _get(server.port, "/readyz") == 200
