"""A throwaway PgBouncer (Debian's package) in front of a throwaway PostgreSQL, both on loopback.

Used by tests/pooler/ and bench/pooler.py. Everything the pod would get is rendered by the component's
own builders; only what a pod gets from Kubernetes is replaced, and :data:`OVERRIDES` lists it:

* ``pgbouncer.ini``: ``components.pooler.pgbouncer_ini.pgbouncer_ini`` with ``host``/``port`` (the
  database Service -> 127.0.0.1, or a name the test's certificate holds, :<server port>),
  ``listen_addr``/``listen_port`` (``*:6432`` -> 127.0.0.1:<free port>), ``auth_file`` (the Secret mount
  -> a file in the temp dir) and, for TLS, ``tls_dir`` (the projected TLS volume -> a directory the test
  fills with the pooler's certificate and key and the database's CA);
* ``userlist.txt``: ``components.pooler.auth.userlist_line`` for the lookup role, as the Secret holds it;
* the database: the rendered Patroni ``post_init`` script (roles, database, grants and the pooler lookup
  block) with ``secrets_dir`` pointing at a temp dir and ``extensions`` empty (the plain PostgreSQL
  server has no TimescaleDB), run with the server's ``psql`` against a superuser URL, and the rendered
  ``pg_hba`` rules (SCRAM everywhere) with the pod networks replaced by 127.0.0.1/32, after one rule of the
  harness's own: ``trust`` for the superuser on the socket, standing in for ``peer`` (Patroni's OS user).
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg

from components.pooler import auth
from components.pooler.pgbouncer_ini import IniSettings, PoolSettings, pgbouncer_ini
from components.shared import scram
from components.timescaledb import patroni_config as pc
from pgserver import POSTGRES_BIN_PATH, PgServer, free_port

OVERRIDES = (
    "pgbouncer.ini host, port (127.0.0.1 or a name the test certificate holds:<server port>), listen_addr,"
    " listen_port (127.0.0.1:<free port>), auth_file, tls_dir (the TLS test's certificate directory)",
    "post_init secrets_dir and scripts_dir (temp dirs) and extensions (none: plain PostgreSQL)",
    "pg_hba pod networks (127.0.0.1/32); a first rule 'local all postgres trust' instead of peer",
)
PGBOUNCER = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
DATABASE = "app"
APP_USER = "app"
READER_USER = "reader"


@dataclass(frozen=True)
class Credentials:
    """Generated passwords (alphanumeric, like the component's RandomPasswords)."""

    superuser: str
    app: str
    reader: str
    monitor: str
    lookup: str

    @classmethod
    def generate(cls) -> Credentials:
        return cls(*(secrets.token_hex(16) for _ in range(5)))


def scram_server(base_dir: Path | None = None, *, bin_dir: Path | None = None,
                 tls: Path | None = None) -> tuple[PgServer, Credentials]:
    """PostgreSQL with the rendered pg_hba (SCRAM only) and the rendered bootstrap (pooler lookup included).

    ``tls``, a directory with ``tls.crt`` and ``tls.key`` (as in a ``kubernetes.io/tls`` Secret), turns on
    server TLS with a copy of them in ``<root>/tls`` (as the component's TLS_PARAMETERS do with the mounted
    Secret); it needs a server built with OpenSSL (``bin_dir``).
    """
    creds = Credentials.generate()
    conf = {"password_encryption": "'scram-sha-256'", "max_connections": "80"}
    server = PgServer(base_dir, extra_conf=conf, bin_dir=bin_dir).init()
    if tls is not None:
        tls_dir = server.root / "tls"
        tls_dir.mkdir()
        for name in ("tls.crt", "tls.key"):
            shutil.copy(tls / name, tls_dir / name)
        owner = server.pgdata.stat()
        for path in (tls_dir, *tls_dir.iterdir()):
            os.chown(path, owner.st_uid, owner.st_gid)
        (tls_dir / "tls.key").chmod(0o600)
        with open(server.pgdata / "postgresql.conf", "a", encoding="utf-8") as fh:
            fh.write(f"ssl = on\nssl_cert_file = '{tls_dir / 'tls.crt'}'\nssl_key_file = '{tls_dir / 'tls.key'}'\n")
    server.start()
    with psycopg.connect(server.dsn(), autocommit=True) as conn:
        conn.execute(f"ALTER ROLE {server.user} PASSWORD '{creds.superuser}'")
    rules = pc.pg_hba(["127.0.0.1/32"], tls=tls is not None)
    # The rendered rules admit the superuser on the socket only, by peer (OS user postgres, as Patroni runs in
    # the pod); this harness is another OS user, so trust on the socket stands in for peer, for the superuser only.
    (server.pgdata / "pg_hba.conf").write_text(f"local all {server.user} trust\n" + "\n".join(rules) + "\n")
    secrets_dir = server.root / "bootstrap-secrets"
    secrets_dir.mkdir()
    for role, password in ((APP_USER, creds.app), (READER_USER, creds.reader), (pc.MONITOR_USER, creds.monitor)):
        (secrets_dir / pc.password_file(role)).write_text(password)
    (secrets_dir / auth.VERIFIER_FILE).write_text(auth.stable_verifier(creds.lookup))
    scripts_dir = server.root / "scripts"  # post_init's verifier helper, mounted beside it in the pod
    scripts_dir.mkdir()
    shutil.copy(scram.__file__, scripts_dir / pc.SCRAM_FILE)
    script = server.root / pc.POST_INIT_FILE
    script.write_text(pc.post_init_script(pc.BootstrapRoles(
        database=DATABASE, app_user=APP_USER, reader_user=READER_USER, secrets_dir=str(secrets_dir),
        scripts_dir=str(scripts_dir), extensions=(), pooler_lookup=True,
    )))
    superuser_url = superuser_dsn(server)
    with psycopg.connect(superuser_url, autocommit=True) as conn:
        conn.execute("SELECT pg_reload_conf()")
    env = {**os.environ, "PATH": f"{POSTGRES_BIN_PATH}:{os.environ.get('PATH', '')}"}
    subprocess.run(["bash", str(script), superuser_url], check=True, capture_output=True, env=env, timeout=60)
    shutil.rmtree(secrets_dir)
    return server, creds


def superuser_dsn(server: PgServer) -> str:
    """The superuser over the server's Unix socket, the only way the rendered rules let it in."""
    return f"host={server.root} port={server.port} user={server.user} dbname=postgres"


def dsn(server_or_host: PgServer | str, port: int, user: str, password: str, dbname: str = DATABASE) -> str:
    host = server_or_host.host if isinstance(server_or_host, PgServer) else server_or_host
    return f"host={host} port={port} user={user} password={password} dbname={dbname} sslmode=disable"


class PgBouncer:
    """Debian's pgbouncer on 127.0.0.1:<free port> with the rendered configuration, run unprivileged."""

    host = "127.0.0.1"

    def __init__(self, server: PgServer, lookup_password: str, pool: PoolSettings, *,
                 max_client_connections: int = 1000, tls_dir: Path | None = None,
                 server_host: str | None = None) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="tsflow-pgbouncer-"))
        self.port = free_port(self.host)
        self.logfile = self.root / "pgbouncer.log"
        self.ini = self.root / "pgbouncer.ini"
        userlist = self.root / "userlist.txt"
        userlist.write_text(auth.userlist_line(auth.LOOKUP_ROLE, lookup_password))
        self.ini.write_text(pgbouncer_ini(IniSettings(
            database=DATABASE, host=server_host or server.host, port=server.port, pool=pool,
            max_client_connections=max_client_connections,
            listen_addr=self.host, listen_port=self.port, auth_file=str(userlist),
            tls=tls_dir is not None, **({"tls_dir": str(tls_dir)} if tls_dir is not None else {}),
        )))
        self._user: str | None = None
        if os.geteuid() == 0:  # pgbouncer refuses to run as root
            self._user = "embedded_postgres"
            entry = pwd.getpwnam(self._user)
            for path in (self.root, userlist, self.ini, *([tls_dir, *tls_dir.iterdir()] if tls_dir else [])):
                os.chown(path, entry.pw_uid, entry.pw_gid)
            self.root.chmod(0o700)
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 15.0) -> PgBouncer:
        """Start pgbouncer and wait until it accepts TCP connections."""
        log = open(self.logfile, "ab")
        self._proc = subprocess.Popen([PGBOUNCER, str(self.ini)], stdout=log, stderr=subprocess.STDOUT,
                                      user=self._user, start_new_session=True)
        log.close()
        deadline = time.monotonic() + timeout
        while True:
            try:
                with socket.create_connection((self.host, self.port), timeout=1):
                    return self
            except OSError:
                pass
            if self._proc.poll() is not None or time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"pgbouncer did not start: {self.logfile.read_text()[-2000:]}")
            time.sleep(0.1)

    @property
    def process(self) -> subprocess.Popen[bytes] | None:
        """The running pgbouncer (None before ``start``)."""
        return self._proc

    def kill(self) -> None:
        """SIGKILL, as a crashed or evicted pod: clients lose their connections mid-transaction."""
        if self._proc is not None and self._proc.poll() is None:
            os.killpg(self._proc.pid, signal.SIGKILL)
            self._proc.wait(10)

    def restart(self) -> None:
        self.kill()
        self.start()

    def cleanup(self) -> None:
        self.kill()
        shutil.rmtree(self.root, ignore_errors=True)

    def dsn(self, user: str, password: str, dbname: str = DATABASE) -> str:
        return dsn(self.host, self.port, user, password, dbname)

    def show(self, what: str, user: str, password: str) -> list[dict[str, object]]:
        """``SHOW <what>`` on the admin console (the lookup role is a stats user)."""
        # The admin console speaks only the simple query protocol: a ClientCursor uses it.
        with psycopg.connect(self.dsn(user, password, "pgbouncer"), autocommit=True,
                             cursor_factory=psycopg.ClientCursor) as conn:
            cur = conn.execute(f"SHOW {what}")
            names = [c.name for c in cur.description or []]
            return [dict(zip(names, row)) for row in cur.fetchall()]
