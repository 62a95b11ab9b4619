"""A renewed certificate gets served without a pod restart: real PostgreSQL (Debian's, with OpenSSL) and the
installed Patroni's own REST API server, both with TLS from files that are replaced in place (as the kubelet
does when cert-manager renews the Secret). The role agent's round sees the old certificate still served,
asks Patroni for an authenticated ``POST /reload`` and, once Patroni has reloaded (done here by the test, as
Patroni's main loop would), the next round is quiet."""

from __future__ import annotations

import io
import pwd
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import psycopg
import pytest

from bench.pgserver import PgServer, free_port, system_bin_dir
from components.reconciler.tsreconcile import certs
from components.reconciler.tsreconcile.desired import TlsReload
from components.reconciler.tsreconcile.report import Report
from components.reconciler.tsreconcile.sql import ReconcileError
from components.timescaledb import patroni_config as pc
from tests.patroni_import import patroni_module
from tests.timescaledb.test_tls_and_logins import make_certificates

pytestmark = [
    pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl makes the test certificates"),
    pytest.mark.skipif(system_bin_dir() is None, reason="needs a PostgreSQL built with TLS (Debian's postgresql)"),
]

RESTAPI_PASSWORD = "RestPassw0rd"


def install(source: Path, live: Path, owner: str | None) -> None:
    """Put a certificate and key where the servers read them (the kubelet swaps a mounted Secret's files)."""
    for name in ("tls.crt", "tls.key"):
        shutil.copy(source / name, live / name)
        if owner is not None:
            entry = pwd.getpwnam(owner)
            shutil.chown(live / name, entry.pw_uid, entry.pw_gid)
    (live / "tls.key").chmod(0o600)


class Member:
    """PostgreSQL and Patroni's REST API, serving the certificate in ``live``; ``reload()`` is what Patroni's
    main loop does after a ``POST /reload`` (re-read the REST API certificate, reload PostgreSQL)."""

    def __init__(self, root: Path) -> None:
        self.sets = {name: root / name for name in ("first", "renewed")}
        for directory in self.sets.values():
            directory.mkdir()
            make_certificates(directory, ["localhost"])
        self.server = PgServer(bin_dir=system_bin_dir()).init()
        self.live = self.server.root / "tls"
        self.live.mkdir()
        install(self.sets["first"], self.live, self.server._user)
        if self.server._user is not None:
            entry = pwd.getpwnam(self.server._user)
            shutil.chown(self.live, entry.pw_uid, entry.pw_gid)
        with open(self.server.pgdata / "postgresql.conf", "a", encoding="utf-8") as conf:
            conf.write(f"ssl = on\nssl_cert_file = '{self.live / 'tls.crt'}'\nssl_key_file = '{self.live / 'tls.key'}'\n")
        self.server.start()
        self.reload_requested = threading.Event()
        patroni = mock.MagicMock()
        patroni.sighup_handler.side_effect = self.reload_requested.set
        self.section = {"listen": f"127.0.0.1:{free_port()}", "certfile": str(self.live / "tls.crt"),
                        "keyfile": str(self.live / "tls.key"), "auth": f"{pc.RESTAPI_USER}:{RESTAPI_PASSWORD}"}
        self.api = patroni_module("patroni.api").RestApiServer(patroni, self.section)
        self.api.start()

    def spec(self, password_file: Path) -> TlsReload:
        return TlsReload(cert_file=str(self.live / "tls.crt"), restapi_user=pc.RESTAPI_USER,
                         restapi_password_file=str(password_file), postgres_port=self.server.port,
                         patroni_port=int(self.section["listen"].rsplit(":", 1)[1]))

    def reload(self) -> None:
        assert self.reload_requested.wait(10), "no POST /reload reached Patroni"
        self.reload_requested.clear()
        assert self.api.reload_local_certificate(), "Patroni sees the renewed certificate"
        self.api.reload_config(self.section)
        with psycopg.connect(host=str(self.server.root), port=self.server.port, user=self.server.user,
                             dbname="postgres", autocommit=True) as conn:
            conn.execute("SELECT pg_reload_conf()")

    def close(self) -> None:
        self.api.shutdown()
        self.api.server_close()
        self.server.cleanup()


@pytest.fixture
def member(tmp_path: Path) -> Iterator[Member]:
    running = Member(tmp_path)
    try:
        yield running
    finally:
        running.close()


def round_on(spec: TlsReload) -> list[dict[str, Any]]:
    report = Report(io.StringIO())
    certs.reload_if_renewed(spec, report)
    return report.changes


def test_a_renewed_certificate_is_served_after_one_reload_and_only_then(member: Member, tmp_path: Path) -> None:
    password = tmp_path / "restapi"
    password.write_text(RESTAPI_PASSWORD)
    spec = member.spec(password)
    first = certs.file_certificate(str(member.sets["first"] / "tls.crt"))
    renewed = certs.file_certificate(str(member.sets["renewed"] / "tls.crt"))
    assert first != renewed
    assert certs.served_by_postgres("127.0.0.1", spec.postgres_port) == first
    assert round_on(spec) == [], "serving the mounted certificate: nothing to do"
    assert not member.reload_requested.is_set()

    install(member.sets["renewed"], member.live, member.server._user)  # cert-manager renewed the Secret
    (change,) = round_on(spec)
    assert change["kind"] == "certificate" and change["stale"] == ["postgresql", "patroni-rest-api"]
    member.reload()
    assert certs.served_by_postgres("127.0.0.1", spec.postgres_port) == renewed
    assert certs.served_by_https("127.0.0.1", spec.patroni_port) == renewed
    assert round_on(spec) == [] and not member.reload_requested.is_set()


def test_the_reload_request_is_authenticated(member: Member, tmp_path: Path) -> None:
    wrong = tmp_path / "restapi"
    wrong.write_text("not-the-password")
    install(member.sets["renewed"], member.live, member.server._user)
    with pytest.raises(ReconcileError, match="answered 401"):
        round_on(member.spec(wrong))
    assert not member.reload_requested.is_set()
