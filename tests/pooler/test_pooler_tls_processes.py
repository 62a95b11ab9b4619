"""TLS through the pooler for real: Debian's PgBouncer on the rendered ``pgbouncer.ini`` (TLS lines included)
in front of Debian's PostgreSQL with TLS, certificates from test CAs made by ``openssl``.

Two CAs, as with a user-made pooler Secret: the database's signs the database certificate, the pooler's signs
the pooler certificate for the names ``components.pooler.tls.certificate_dns_names`` lists, so each side
provably verifies against the right one. Asserted: a client verifying the pooler (``verify-full``) under
every Service name gets through to the database over TLS on both hops; a plaintext client, a client
expecting another host name and one trusting another CA are refused; PgBouncer refuses a database whose
certificate is not from the database's CA or does not name the host it connects to; and the exporter
container's rendered command logs in over loopback with ``sslmode=require``, where its plaintext
connection string is refused.

Overridden (``bench/pgbouncer.py`` lists them): the database Service becomes ``localhost`` (its test
certificate names it; the real one names the Service), the projected TLS volume a directory with the same
three files.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT / "bench") not in sys.path:
    sys.path.insert(0, str(ROOT / "bench"))

from pgbouncer import APP_USER, PGBOUNCER, Credentials, PgBouncer, dsn, scram_server  # noqa: E402
from pgserver import PgServer, system_bin_dir  # noqa: E402
from components.pooler import pgbouncer_ini as ini  # noqa: E402
from components.pooler.auth import LOOKUP_ROLE  # noqa: E402
from components.pooler.pgbouncer_ini import PoolSettings  # noqa: E402
from components.pooler.tls import certificate_dns_names  # noqa: E402
from stack.pooler import POOLER_NAME  # noqa: E402
from tests.pooler.test_pooler_processes import run_exporter_command  # noqa: E402
from tests.pooler.test_pooler_tls import tls_stack  # noqa: E402
from tests.stacks import run_stack  # noqa: E402
from tests.timescaledb.test_tls_and_logins import make_certificates  # noqa: E402

pytestmark = [
    pytest.mark.skipif(shutil.which("pgbouncer") is None and not Path(PGBOUNCER).exists(),
                       reason="pgbouncer (Debian package 'pgbouncer') is not installed"),
    pytest.mark.skipif(shutil.which("openssl") is None or system_bin_dir() is None,
                       reason="needs openssl and Debian's postgresql (a PostgreSQL built with TLS)"),
]

NAMESPACE = "timescale"
POOLER_NAMES = certificate_dns_names(POOLER_NAME, NAMESPACE)
POOLER_HOST = f"{POOLER_NAME}-rw.{NAMESPACE}.svc.cluster.local"  # what the workloads get as PGHOST
DATABASE_HOST = "localhost"  # stands for the database Service, whose name the database certificate holds


@dataclass(frozen=True)
class Setup:
    server: PgServer
    creds: Credentials
    base: Path
    pooler_ca: Path
    database_ca: Path

    def volume(self, name: str, *, server_ca: Path) -> Path:
        """The PgBouncer pod's projected TLS volume: the pooler's certificate and key, and ``server_ca`` as the
        database's CA (the right one, or another to show it matters)."""
        directory = self.base / name
        directory.mkdir()
        for key in (ini.CERT_FILE, ini.KEY_FILE):
            shutil.copy(self.base / "pooler" / key, directory / key)
        shutil.copy(server_ca, directory / ini.SERVER_CA_FILE)
        return directory

    def bouncer(self, name: str, *, server_ca: Path | None = None, server_host: str = DATABASE_HOST) -> PgBouncer:
        return PgBouncer(self.server, self.creds.lookup, PoolSettings(pool_size=2),
                         tls_dir=self.volume(name, server_ca=server_ca or self.database_ca), server_host=server_host)


@pytest.fixture(scope="module")
def setup() -> Iterator[Setup]:
    base = Path(tempfile.mkdtemp(prefix="pooler-tls-"))
    base.chmod(0o711)  # PgBouncer runs unprivileged (as root the harness switches users) and reads below it
    server: PgServer | None = None
    try:
        for name, names in (("database", [DATABASE_HOST]), ("pooler", POOLER_NAMES), ("other", [DATABASE_HOST])):
            (base / name).mkdir()
            make_certificates(base / name, names)
        server, creds = scram_server(bin_dir=system_bin_dir(), tls=base / "database")
        yield Setup(server=server, creds=creds, base=base, pooler_ca=base / "pooler" / "ca.crt",
                    database_ca=base / "database" / "ca.crt")
    finally:
        if server is not None:
            server.cleanup()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module")
def bouncer(setup: Setup) -> Iterator[PgBouncer]:
    running = setup.bouncer("volume").start()
    try:
        yield running
    finally:
        running.cleanup()


def connect(setup: Setup, bouncer: PgBouncer, *, host: str = POOLER_HOST, sslmode: str = "verify-full",
            ca: Path | None = None, user: str = APP_USER, dbname: str = "app") -> psycopg.Connection:
    password = setup.creds.app if user == APP_USER else setup.creds.lookup
    return psycopg.connect(host=host, hostaddr=bouncer.host, port=bouncer.port, user=user, dbname=dbname,
                           password=password, sslmode=sslmode, sslrootcert=str(ca or setup.pooler_ca),
                           connect_timeout=5, autocommit=True)


@pytest.mark.parametrize("name", POOLER_NAMES)
def test_a_client_verifying_the_pooler_gets_through_to_the_database_over_tls(
    setup: Setup, bouncer: PgBouncer, name: str
) -> None:
    with connect(setup, bouncer, host=name) as conn:
        assert conn.pgconn.ssl_in_use  # client -> PgBouncer, verified against the pooler's CA and this name
        row = conn.execute("SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()").fetchone()
    assert row is not None and row[0] is True and row[1] in ("TLSv1.2", "TLSv1.3"), row  # PgBouncer -> database


def test_pgbouncer_looks_up_passwords_over_tls_too(setup: Setup, bouncer: PgBouncer) -> None:
    with connect(setup, bouncer):
        pass
    with psycopg.connect(dsn(setup.server, setup.server.port, LOOKUP_ROLE, setup.creds.lookup) + " sslmode=require",
                         autocommit=True) as conn:
        plain = conn.execute(
            "SELECT count(*) FROM pg_stat_ssl JOIN pg_stat_activity USING (pid) "
            "WHERE usename = %s AND NOT ssl AND pid <> pg_backend_pid()", (LOOKUP_ROLE,),
        ).fetchone()
        over_tls = conn.execute(
            "SELECT count(*) FROM pg_stat_ssl JOIN pg_stat_activity USING (pid) WHERE usename = %s AND ssl "
            "AND pid <> pg_backend_pid()", (LOOKUP_ROLE,),
        ).fetchone()
    assert plain == (0,) and over_tls is not None and over_tls[0] >= 1, (plain, over_tls)


def test_a_plaintext_client_is_refused(setup: Setup, bouncer: PgBouncer) -> None:
    with pytest.raises(psycopg.OperationalError, match="SSL required"):
        connect(setup, bouncer, sslmode="disable")


def test_a_client_expecting_another_host_name_is_refused(setup: Setup, bouncer: PgBouncer) -> None:
    """The database's name, for example: the pooler's certificate does not hold it."""
    with pytest.raises(psycopg.OperationalError, match="does not match host name"):
        connect(setup, bouncer, host=f"timescaledb.{NAMESPACE}.svc.cluster.local")


def test_a_client_trusting_another_ca_is_refused(setup: Setup, bouncer: PgBouncer) -> None:
    """The database's CA, for example: the workloads must get the pooler's."""
    with pytest.raises(psycopg.OperationalError, match="certificate verify failed"):
        connect(setup, bouncer, ca=setup.database_ca)


@pytest.mark.parametrize(
    ("case", "server_host", "logged"),
    [
        ("not-from-the-ca", DATABASE_HOST, "certificate verify failed"),
        ("wrong-name", "127.0.0.1", "not present in server certificate"),
    ],
)
def test_pgbouncer_refuses_a_database_it_cannot_verify(setup: Setup, case: str, server_host: str, logged: str) -> None:
    """Not from the CA: the pod's server CA is another CA (as if the database presented a foreign certificate).
    Wrong name: PgBouncer connects to an address the database certificate does not name."""
    server_ca = setup.base / "other" / "ca.crt" if case == "not-from-the-ca" else None
    refusing = setup.bouncer(case, server_ca=server_ca, server_host=server_host).start()
    try:
        with pytest.raises(psycopg.OperationalError):
            connect(setup, refusing)
        log = refusing.logfile.read_text()
        assert logged in log, log[-2000:]
    finally:
        refusing.cleanup()


def test_the_rendered_configuration_has_the_tls_lines_the_processes_ran_with() -> None:
    """The ConfigMap of a TLS stack carries exactly these TLS settings, at the pod's paths."""
    recording = tls_stack()
    for path in ("rw", "ro"):
        text = recording.one("kubernetes:core/v1:ConfigMap", f"{POOLER_NAME}-config").manifest()["data"][f"{path}.ini"]
        rendered = [line for line in text.splitlines() if "_tls_" in line]
        assert rendered == [line for line in ini.tls_lines(ini.TLS_DIR) if not line.startswith(";")]


def test_the_exporter_logs_in_over_loopback_with_sslmode_require(
    setup: Setup, bouncer: PgBouncer, tmp_path: Path
) -> None:
    """The exporter container of a TLS stack, as the kubelet starts it (``run_exporter_command``): TLS without
    verification over the pod's loopback; the plaintext connection string of a stack without TLS is refused."""
    recording = tls_stack()
    result = run_exporter_command(recording, tmp_path / "tls", bouncer, setup.creds.lookup)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["ssl"] is True and report["rows"]["DATABASES"] >= 2, report

    refused = run_exporter_command(run_stack("prod"), tmp_path / "plain", bouncer, setup.creds.lookup)
    assert refused.returncode != 0 and "SSL required" in refused.stderr, refused.stderr
