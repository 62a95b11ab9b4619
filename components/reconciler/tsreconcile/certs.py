"""Certificate renewal, on every member: make PostgreSQL and Patroni's REST API serve the mounted certificate.

cert-manager (or you) replace the TLS Secret's files in place and the kubelet refreshes the mounted copy,
but PostgreSQL and Patroni's REST API read their certificate only at start and on a reload, so a renewed
certificate would otherwise be served only after the pod restarts (and an expired one until then). Each
round the role agent compares the certificate each server presents on loopback (a TLS handshake, nothing
else: PostgreSQL's ``SSLRequest``, then the REST API's port) with the first certificate of the mounted
``tls.crt``; when either differs it asks its own Patroni for ``POST /reload`` (authenticated as the REST
API user). Patroni then re-reads its REST API certificate and reloads PostgreSQL, which re-reads
``ssl_cert_file``. The comparison is stateless, so a renewal that happened while the agent was down is
still caught, and a member that already serves the file's certificate is left alone.

The handshakes do not verify: they only read what is served, to compare bytes with our own file. The
reload request goes to 127.0.0.1, where only this pod can listen, and is not verified either: the server
may still present the old certificate, possibly from a CA the mounted ``ca.crt`` no longer holds, which is
exactly when it must be reloaded.
"""

from __future__ import annotations

import socket
import ssl
import struct
from typing import Callable, List

from .desired import TlsReload
from .patroni import PatroniAPI
from .report import Report
from ...shared.scram import read_password

SSL_REQUEST = struct.pack("!ii", 8, 80877103)
"""PostgreSQL's SSLRequest message: the server answers ``S`` and starts the TLS handshake."""
TIMEOUT_SECONDS = 5.0


def _reader() -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def file_certificate(path: str) -> bytes:
    """DER of the first certificate in a PEM file (the leaf; a chain may follow it)."""
    with open(path, encoding="ascii") as handle:
        text = handle.read()
    end = text.find("-----END CERTIFICATE-----")
    if end < 0:
        raise ValueError(f"{path} holds no PEM certificate")
    return ssl.PEM_cert_to_DER_cert(text[: end + len("-----END CERTIFICATE-----")] + "\n")


def _presented(raw: socket.socket) -> bytes:
    """The certificate (DER) the server presents in a TLS handshake on ``raw``, unverified."""
    with _reader().wrap_socket(raw) as tls:
        return tls.getpeercert(binary_form=True) or b""


def served_by_https(host: str, port: int) -> bytes:
    """The certificate a TLS server presents (DER), read from its handshake."""
    with socket.create_connection((host, port), timeout=TIMEOUT_SECONDS) as raw:
        return _presented(raw)


def served_by_postgres(host: str, port: int) -> bytes:
    """The certificate PostgreSQL presents after an SSLRequest (DER); empty when it has TLS off."""
    with socket.create_connection((host, port), timeout=TIMEOUT_SECONDS) as raw:
        raw.sendall(SSL_REQUEST)
        return _presented(raw) if raw.recv(1) == b"S" else b""


def stale_servers(spec: TlsReload) -> List[str]:
    """Which of the member's servers present another certificate than the mounted file's."""
    expected = file_certificate(spec.cert_file)
    stale = []
    if served_by_postgres(spec.host, spec.postgres_port) != expected:
        stale.append("postgresql")
    if served_by_https(spec.host, spec.patroni_port) != expected:
        stale.append("patroni-rest-api")
    return stale


def loopback_patroni(spec: TlsReload) -> PatroniAPI:
    """This member's REST API on loopback, authenticated, certificate not verified (see the module notes)."""
    return PatroniAPI(f"https://{spec.host}:{spec.patroni_port}", spec.restapi_user,
                      read_password(spec.restapi_password_file), tls=_reader())


def reload_if_renewed(spec: TlsReload, report: Report, *, patroni: Callable[[TlsReload], PatroniAPI] = loopback_patroni) -> None:
    """Ask this member's Patroni to reload when a server still presents an older certificate than the file's."""
    stale = stale_servers(spec)
    if not stale:
        report.unchanged("certificate", "member", action="PostgreSQL and the REST API serve the mounted certificate")
        return
    patroni(spec).request("POST", "/reload", {})
    report.change("certificate", "member", action="reload requested: the mounted certificate was renewed", stale=stale)
