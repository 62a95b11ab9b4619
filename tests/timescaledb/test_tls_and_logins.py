"""A real PostgreSQL with the pg_hba rules the component renders for TLS, and a test CA made here.

Asserts what the rules promise: a client verifying the server (``verify-full``) gets in; a plaintext
client, a client expecting another host name, the superuser over TCP (TLS or not) and the replication user
outside replication are refused; replication itself takes TLS only.

The test client necessarily comes from loopback, which the rules trust for pod-local clients (two
``127.0.0.1/::1`` lines); those two lines are left out here and loopback plays the pod network.
"""

from __future__ import annotations

import pwd
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import pq

from components.timescaledb import patroni_config as pc
from components.timescaledb.component import certificate_dns_names

from bench.pgserver import PgServer, system_bin_dir

pytestmark = [
    pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl makes the test CA"),
    pytest.mark.skipif(system_bin_dir() is None, reason="needs a PostgreSQL built with TLS (Debian's postgresql; ./scripts/test installs it as root)"),
]

HOST = certificate_dns_names("timescaledb", "timescale")[1]  # the primary Service's FQDN
PASSWORDS = {"app": "AppPassw0rd", pc.SUPERUSER: "SuperPassw0rd", pc.REPLICATION_USER: "StandbyPassw0rd"}
POD_LOCAL = {"host all all 127.0.0.1/32 scram-sha-256", "host all all ::1/128 scram-sha-256"}


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_certificates(directory: Path, dns_names: list[str]) -> None:
    """A CA and a server certificate it signs for ``dns_names`` (ca.crt, tls.crt, tls.key)."""
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "2",
             "-subj", "/CN=test-ca", "-keyout", "ca.key", "-out", "ca.crt", cwd=directory)
    _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-subj", f"/CN={dns_names[0]}",
             "-keyout", "tls.key", "-out", "tls.csr", cwd=directory)
    (directory / "san.ext").write_text("subjectAltName=" + ",".join(f"DNS:{n}" for n in dns_names) + "\n")
    _openssl("x509", "-req", "-in", "tls.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-days", "2",
             "-extfile", "san.ext", "-out", "tls.crt", cwd=directory)


@pytest.fixture(scope="module")
def server() -> Iterator[object]:
    running = PgServer(extra_conf={"password_encryption": "'scram-sha-256'"}, bin_dir=system_bin_dir())
    try:
        running.init()
        tls_dir = running.root / "tls"
        tls_dir.mkdir()
        make_certificates(tls_dir, certificate_dns_names("timescaledb", "timescale"))
        if running._user is not None:  # the server user must own its key (mode 0600)
            entry = pwd.getpwnam(running._user)
            for path in (tls_dir, *tls_dir.iterdir()):
                shutil.chown(path, entry.pw_uid, entry.pw_gid)
        (tls_dir / "tls.key").chmod(0o600)
        with open(running.pgdata / "postgresql.conf", "a", encoding="utf-8") as conf:
            conf.write(f"ssl = on\nssl_cert_file = '{tls_dir / 'tls.crt'}'\nssl_key_file = '{tls_dir / 'tls.key'}'\n"
                       "ssl_min_protocol_version = 'TLSv1.2'\n")
        running.start()
        with psycopg.connect(running.dsn(), autocommit=True) as conn:
            conn.execute(f"ALTER ROLE {pc.SUPERUSER} PASSWORD '{PASSWORDS[pc.SUPERUSER]}'")
            conn.execute(f"CREATE ROLE app LOGIN PASSWORD '{PASSWORDS['app']}'")
            conn.execute(f"CREATE ROLE {pc.REPLICATION_USER} LOGIN REPLICATION PASSWORD '{PASSWORDS[pc.REPLICATION_USER]}'")
            conn.execute("CREATE DATABASE app OWNER app")
        rules = [r for r in pc.pg_hba(["127.0.0.0/8"], tls=True) if r not in POD_LOCAL]
        # The harness itself keeps trust on its socket (it is the "pod"); the rendered rules follow.
        (running.pgdata / "pg_hba.conf").write_text("local all all trust\n" + "\n".join(rules) + "\n")
        with psycopg.connect(running.dsn().replace(f"host={running.host}", f"host={running.root}"), autocommit=True) as conn:
            conn.execute("SELECT pg_reload_conf()")
        yield running, tls_dir / "ca.crt"
    finally:
        running.cleanup()


def connect(server, *, user: str = "app", dbname: str = "app", host: str = HOST, sslmode: str = "verify-full",
            **extra: str) -> psycopg.Connection:  # type: ignore[no-untyped-def]
    running, ca = server
    return psycopg.connect(host=host, hostaddr=running.host, port=running.port, user=user, dbname=dbname,
                           password=PASSWORDS[user], sslmode=sslmode, sslrootcert=str(ca), connect_timeout=10,
                           autocommit=True, **extra)


def test_a_client_verifying_the_server_gets_in_over_tls(server) -> None:  # type: ignore[no-untyped-def]
    with connect(server) as conn:
        assert conn.execute("SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()").fetchone()[0] is True
        assert conn.pgconn.ssl_in_use


def test_a_plaintext_client_is_refused(server) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(psycopg.OperationalError, match="no encryption"):
        connect(server, sslmode="disable")


def test_a_client_expecting_another_host_name_is_refused(server) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(psycopg.OperationalError, match="does not match host name"):
        connect(server, host="timescaledb-primary.elsewhere.svc.cluster.local")


def test_the_superuser_has_no_network_login_even_with_tls_from_the_pod_networks(server) -> None:  # type: ignore[no-untyped-def]
    """Here loopback is the pod network: a verified TLS client with the right password is still refused, and
    so is plaintext; the same server admits the superuser on its socket (the harness's own session)."""
    for sslmode in ("verify-full", "disable"):
        with pytest.raises(psycopg.OperationalError, match="pg_hba.conf rejects connection|no encryption"):
            connect(server, user=pc.SUPERUSER, dbname="postgres", sslmode=sslmode)
    with pytest.raises(psycopg.OperationalError, match="pg_hba.conf rejects connection") as refused:
        connect(server, user=pc.SUPERUSER, dbname="postgres")
    assert "SSL encryption" in str(refused.value), "refused by the reject rule over TLS, not for lack of TLS"
    running, _ = server
    with psycopg.connect(running.dsn().replace(f"host={running.host}", f"host={running.root}"), autocommit=True) as conn:
        assert conn.execute("SELECT current_user").fetchone() == (running.user,)


def test_every_network_rule_for_the_superuser_is_a_reject() -> None:
    """PostgreSQL takes the first matching rule: the first TCP rule that matches the superuser rejects it,
    whatever the pod networks are."""
    rules = [r.split() for r in pc.pg_hba(["10.0.0.0/8", "fd00::/8"], tls=True)]
    superuser_tcp = [r for r in rules if r[0].startswith("host") and r[2] in (pc.SUPERUSER, "all")]
    assert superuser_tcp[0] == ["host", "all", pc.SUPERUSER, "all", "reject"]
    assert [r for r in rules if r[2] == pc.SUPERUSER and r[-1] != "reject"] == [["local", "all", pc.SUPERUSER, "peer"]]


def test_the_replication_user_only_replicates_and_only_over_tls(server) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(psycopg.OperationalError, match="pg_hba.conf rejects connection"):
        connect(server, user=pc.REPLICATION_USER, dbname="postgres")
    with connect(server, user=pc.REPLICATION_USER, dbname="postgres", replication="true") as conn:
        result = conn.pgconn.exec_(b"IDENTIFY_SYSTEM")
        assert result.status == pq.ExecStatus.TUPLES_OK
    with pytest.raises(psycopg.OperationalError, match="no encryption"):
        connect(server, user=pc.REPLICATION_USER, dbname="postgres", replication="true", sslmode="disable")


def test_without_tls_the_same_rules_take_plain_connections() -> None:
    rules = pc.pg_hba(["10.0.0.0/8"])
    assert not any(rule.startswith(("hostssl", "hostnossl")) for rule in rules)
    assert f"host all {pc.SUPERUSER} all reject" in rules and f"host all {pc.REPLICATION_USER} all reject" in rules
