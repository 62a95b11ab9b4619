"""The TLS floor: with TLS on, PostgreSQL is told ``ssl_min_protocol_version = 'TLSv1.2'`` explicitly, no
override goes below it, and a real server with the rendered setting refuses a TLS 1.1 client.

The real-server case uses ``openssl s_client`` rather than libpq: OpenSSL 3's default security level (and
Debian's ``MinProtocol``) already stop a libpq client from offering TLS 1.1, which would prove nothing
about the server. The server is given ``ssl_ciphers = '...@SECLEVEL=0'`` so that only the protocol floor
can refuse, and lowering the floor lets the very same client in (the control).
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from bench.pgserver import PgServer, system_bin_dir
from components.timescaledb import parameters as pp
from components.timescaledb import patroni_config as pc
from components.timescaledb.component import postgresql_parameters
from stack.config import ConfigError, parse_stack_config
from tests.stack.test_config import MINIMAL, with_value
from tests.timescaledb.test_timescaledb import patroni_file, run
from tests.timescaledb.test_tls_and_logins import server  # noqa: F401 - the TLS server fixture, reused

FLOOR = "ssl_min_protocol_version"
CEILING = "ssl_max_protocol_version"


def tls_config(parameters: dict[str, str]) -> dict[str, Any]:
    return with_value("timescaledb", {"tlsSecretName": "db-tls", "parameters": parameters}, MINIMAL)


def test_with_tls_the_floor_is_rendered_explicitly() -> None:
    parameters = patroni_file(run(tls_secret_name="tsdb-tls"))["postgresql"]["parameters"]
    assert parameters[FLOOR] == pp.MIN_TLS_VERSION == "TLSv1.2"
    assert FLOOR not in patroni_file(run())["postgresql"]["parameters"]  # no TLS, nothing to bound


def test_an_override_at_or_above_the_floor_is_kept() -> None:
    args = parse_stack_config(tls_config({FLOOR: "TLSv1.3", CEILING: "TLSv1.3"})).database.args
    rendered = postgresql_parameters(args)
    assert (rendered[FLOOR], rendered[CEILING]) == ("TLSv1.3", "TLSv1.3")


@pytest.mark.parametrize(("name", "value"), [
    (FLOOR, "TLSv1"), (FLOOR, "TLSv1.1"), (FLOOR, "tlsv1.1"), (CEILING, "TLSv1.1"), (CEILING, "TLSv1"),
])
def test_an_override_below_the_floor_is_refused_naming_the_key(name: str, value: str) -> None:
    with pytest.raises(ValueError, match=rf"postgresql_parameters\['{name}'\] \('{value}'\) is below the TLS floor 'TLSv1.2'"):
        pp.check_values({name: value}, field_name="postgresql_parameters", tls=True)
    with pytest.raises(ConfigError) as caught:
        parse_stack_config(tls_config({name: value}))
    assert str(caught.value).startswith(
        f"timescale-k8s:timescaledb.parameters['{name}'] ('{value}') is below the TLS floor 'TLSv1.2'"
    ), str(caught.value)


def test_a_floor_above_the_ceiling_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"parameters\['ssl_min_protocol_version'\] \('TLSv1.3'\) is above"):
        parse_stack_config(tls_config({FLOOR: "TLSv1.3", CEILING: "TLSv1.2"}))


# --- a real PostgreSQL with the rendered floor -------------------------------------------------------------

needs_server = pytest.mark.skipif(
    shutil.which("openssl") is None or system_bin_dir() is None,
    reason="needs openssl (the CA, the old client) and a PostgreSQL built with TLS (Debian's postgresql)",
)


@pytest.fixture(scope="module")
def tls_server(server: tuple[PgServer, Path]) -> Iterator[PgServer]:
    """The TLS test server of ``test_tls_and_logins`` (rendered pg_hba, a test CA), set to the rendered floor
    and to OpenSSL's lowest security level, so that only the floor can refuse an old protocol."""
    running, _ca = server
    set_server_tls(running, ciphers="DEFAULT:@SECLEVEL=0", floor=pc.TLS_PARAMETERS[FLOOR])  # the rendered floor
    yield running


def handshake(server: PgServer, *client: str) -> tuple[bool, str]:
    """(handshake completed, output) of ``openssl s_client`` speaking PostgreSQL's STARTTLS."""
    result = subprocess.run(
        ["openssl", "s_client", "-starttls", "postgres", "-connect", f"{server.host}:{server.port}", *client],
        input="", capture_output=True, text=True, timeout=30,
    )
    return result.returncode == 0 and "Cipher is (NONE)" not in result.stdout, result.stdout + result.stderr


def set_server_tls(server: PgServer, **settings: str) -> None:
    """Append ``ssl_<name>`` settings (``floor`` is ssl_min_protocol_version) and reload until they apply."""
    names = {("ssl_" + key if key != "floor" else FLOOR): value for key, value in settings.items()}
    with open(server.pgdata / "postgresql.conf", "a", encoding="utf-8") as conf:
        conf.writelines(f"{name} = '{value}'\n" for name, value in names.items())
    socket_dsn = server.dsn().replace(f"host={server.host}", f"host={server.root}")  # TCP admits TLS only
    with psycopg.connect(socket_dsn, autocommit=True) as conn:
        conn.execute("SELECT pg_reload_conf()")
        for _ in range(50):
            if all(conn.execute(f"SHOW {name}").fetchone() == (value,) for name, value in names.items()):
                return
            time.sleep(0.1)
    raise AssertionError(f"{names} did not apply")


TLS_1_1_CLIENT = ("-tls1_1", "-cipher", "DEFAULT:@SECLEVEL=0")


@needs_server
def test_a_real_server_with_the_rendered_floor_refuses_a_tls_1_1_client(tls_server: PgServer) -> None:
    connected, output = handshake(tls_server, "-tls1_2")
    assert connected and "Protocol  : TLSv1.2" in output, output
    connected, output = handshake(tls_server, *TLS_1_1_CLIENT)
    assert not connected and "alert protocol version" in output, output
    set_server_tls(tls_server, floor="TLSv1")  # control: the same client gets in once the floor is lowered
    try:
        connected, output = handshake(tls_server, *TLS_1_1_CLIENT)
        assert connected and "Protocol  : TLSv1.1" in output, output
    finally:
        set_server_tls(tls_server, floor=pc.TLS_PARAMETERS[FLOOR])
