"""Patroni's REST API over HTTPS with the rendered ``restapi`` section: the installed Patroni's own REST API
server (``patroni.api.RestApiServer``, its HTTPS set-up is what runs in the pod) with a test CA, and the
clients we configure: the reconciler Job verifies the certificate and the host name and refuses to send
the REST API password over plain HTTP; the backup agent verifies the chain on loopback."""

from __future__ import annotations

import shutil
import ssl
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import pytest

from bench.pgserver import free_port
from components.reconciler.tsreconcile.patroni import PatroniAPI
from components.reconciler.tsreconcile.sql import ReconcileError
from components.timescaledb import patroni_config as pc
from components.timescaledb.backup_agent import Agent, AgentConfig
from tests.patroni_import import patroni_module
from tests.timescaledb.test_tls_and_logins import make_certificates
from tests.timescaledb.test_tls_rendering import patroni, tls  # noqa: F401 (tls: the module fixture)

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl makes the test CA")

NAME = "localhost"  # stands in for the member's DNS name, which the certificate holds


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("rest-tls")
    make_certificates(directory, [NAME])
    other = directory / "other"
    other.mkdir()
    make_certificates(other, [NAME])  # another CA: its ca.crt must not verify our server
    return directory


@pytest.fixture(scope="module")
def server(tls: Any, certificates: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Patroni's REST API server, configured from the TLS stack's rendered section (files moved here)."""
    section = dict(patroni(tls)["restapi"])
    assert section["certfile"] == pc.CERT_FILE and section["keyfile"] == pc.KEY_FILE
    port = free_port()
    section |= {key: section[key].replace(pc.TLS_DIR, str(certificates)) for key in ("certfile", "keyfile")}
    section |= {"listen": f"127.0.0.1:{port}", "connect_address": f"{NAME}:{port}"}
    api = patroni_module("patroni.api").RestApiServer(mock.MagicMock(), section)
    api.start()
    try:
        yield port, {"connection_string": api.connection_string}
    finally:
        api.shutdown()
        api.server_close()


def test_patroni_serves_https_and_advertises_an_https_api_url(server: tuple[int, dict[str, Any]]) -> None:
    port, facts = server
    assert facts["connection_string"] == f"https://{NAME}:{port}/patroni", "members find each other at this URL"
    with pytest.raises((urllib.error.URLError, ConnectionError)):  # no plain HTTP beside it (the TLS handshake fails)
        urllib.request.urlopen(f"http://{NAME}:{port}/liveness", timeout=5)


def test_the_reconciler_verifies_the_certificate_and_the_name(server: tuple[int, dict[str, Any]], certificates: Path) -> None:
    port, _ = server
    ca = str(certificates / "ca.crt")
    cluster = PatroniAPI(f"https://{NAME}:{port}", pc.RESTAPI_USER, "secret", ca_file=ca).cluster()
    assert "members" in cluster
    with pytest.raises(ReconcileError, match="CERTIFICATE_VERIFY_FAILED"):
        PatroniAPI(f"https://{NAME}:{port}", pc.RESTAPI_USER, "secret", ca_file=str(certificates / "other" / "ca.crt")).cluster()
    with pytest.raises(ReconcileError, match="IP address mismatch|CERTIFICATE_VERIFY_FAILED"):
        PatroniAPI(f"https://127.0.0.1:{port}", pc.RESTAPI_USER, "secret", ca_file=ca).cluster()
    with pytest.raises(ReconcileError, match="refusing to send the REST API password over plain HTTP"):
        PatroniAPI(f"http://{NAME}:{port}", pc.RESTAPI_USER, "secret", ca_file=ca).cluster()


def test_the_backup_agent_verifies_the_chain_on_loopback(server: tuple[int, dict[str, Any]], certificates: Path) -> None:
    port, _ = server

    def liveness(ca: Path) -> int:
        agent = Agent(AgentConfig(stanza="s", schedules={}, patroni_url=f"https://127.0.0.1:{port}", patroni_ca=str(ca)))
        with urllib.request.urlopen(f"{agent.config.patroni_url}/liveness", timeout=5, context=agent._tls()) as response:
            return response.status

    assert liveness(certificates / "ca.crt") == 200
    with pytest.raises(urllib.error.URLError, match="CERTIFICATE_VERIFY_FAILED"):
        liveness(certificates / "other" / "ca.crt")
    assert ssl.create_default_context().check_hostname, "only the agent's loopback context skips the name"
