"""``pgbouncer.ini`` for one pooled path (read-write or read-only), built as text from typed settings.

Pure: the component renders it into a ConfigMap, the real-process tests run Debian's PgBouncer on it.
Only settings PgBouncer 1.18 already knows are used, so the same file runs on Debian 12's package (the
tests) and on the pinned image (1.25).

Pool mode, per path, for what runs through it (``transaction`` by default on both):

* the generator commits each batch's ledger row and its binary ``COPY`` in one transaction, and the
  consumer reads and writes in single statements or short transactions; none of them keeps session
  state (no ``SET``, advisory locks, ``LISTEN``, temporary tables or ``WITH HOLD`` cursors), so a
  server connection is needed only for the length of a transaction and ``pool_size`` server
  connections serve any number of clients;
* server-side named prepared statements would break in transaction mode (the next transaction may
  run on another server connection); tsflow therefore disables psycopg's automatic preparation;
* migrations keep a direct connection: they hold a session-level advisory lock.

``session`` mode is available for clients that need session state; a server connection is then held
for the whole client session.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from .auth import AUTH_QUERY, LOOKUP_ROLE
from ..shared.validate import check_range

PoolMode = Literal["transaction", "session"]
POOL_MODES: tuple[PoolMode, ...] = ("transaction", "session")
LISTEN_PORT = 6432
CONFIG_DIR = "/etc/pgbouncer"
CONFIG_FILE = "pgbouncer.ini"
AUTH_DIR = "/etc/pgbouncer/auth"
AUTH_FILE = f"{AUTH_DIR}/userlist.txt"
TLS_DIR = "/etc/pgbouncer/tls"
"""The pooler's own ``tls.crt``/``tls.key`` and the database's CA as ``SERVER_CA_FILE`` (one projected volume)."""
CERT_FILE = "tls.crt"
KEY_FILE = "tls.key"
SERVER_CA_FILE = "server-ca.crt"


@dataclass(frozen=True, kw_only=True)
class PoolSettings:
    """One path's pool (read-write or read-only)."""

    instances: int = 2
    """PgBouncer pods of this path (the HPA floor when autoscaled); default 2."""
    pool_size: int = 10
    """Server connections per PgBouncer pod to the database (all users together); default 10."""
    mode: PoolMode = "transaction"
    """``transaction`` (a server connection per transaction) or ``session``; default ``transaction``."""

    def check(self, path: str) -> PoolSettings:
        """Raise ``ValueError`` naming ``path.<field>`` for a value PgBouncer or the cluster would reject."""
        check_range(f"{path}.instances", self.instances, 1, 50)
        check_range(f"{path}.pool_size", self.pool_size, 1, 1000)
        if self.mode not in POOL_MODES:
            raise ValueError(f"{path}.mode ({self.mode!r}) must be one of {list(POOL_MODES)}")
        return self


@dataclass(frozen=True, kw_only=True)
class IniSettings:
    """Everything one ``pgbouncer.ini`` depends on; the defaults are the pod's paths and port."""

    database: str
    """The one database clients may ask for (the application database)."""
    host: str
    """Server host: the database's read-write or read-only Service."""
    port: int
    """Server port."""
    pool: PoolSettings
    max_client_connections: int = 1000
    """Client connections one PgBouncer accepts."""
    tls: bool = False
    """The database has TLS: clients must use TLS (PgBouncer presents the pooler's own certificate from
    ``tls_dir``), and PgBouncer connects to the server with ``verify-full`` against the database's CA;
    default False (plaintext on both sides)."""
    listen_addr: str = "*"
    listen_port: int = LISTEN_PORT
    auth_file: str = AUTH_FILE
    tls_dir: str = TLS_DIR


def pgbouncer_ini(settings: IniSettings) -> str:
    """The configuration file text (one pooled database, ``auth_query`` through the lookup role)."""
    s = settings
    pool = s.pool
    tls = tls_lines(s.tls_dir) if s.tls else ["server_tls_sslmode = disable", "client_tls_sslmode = disable"]
    lines = [
        "; Rendered by timescale-k8s (components/pooler/pgbouncer_ini.py); do not edit.",
        "[databases]",
        f"{s.database} = host={s.host} port={s.port} dbname={s.database}",
        "",
        "[pgbouncer]",
        f"listen_addr = {s.listen_addr}",
        f"listen_port = {s.listen_port}",
        "; no Unix socket: the root filesystem is read-only and every client connects over TCP",
        "unix_socket_dir =",
        "auth_type = scram-sha-256",
        f"auth_file = {s.auth_file}",
        f"auth_user = {LOOKUP_ROLE}",
        f"auth_query = {AUTH_QUERY}",
        f"stats_users = {LOOKUP_ROLE}",
        f"pool_mode = {pool.mode}",
        f"default_pool_size = {pool.pool_size}",
        "; every user of the database together (app, reader, the lookup role) stays within pool_size",
        f"max_db_connections = {pool.pool_size}",
        "min_pool_size = 0",
        "reserve_pool_size = 0",
        f"max_client_conn = {s.max_client_connections}",
        "; drivers that send it (the exporter's lib/pq, JDBC) would otherwise be refused",
        "ignore_startup_parameters = extra_float_digits",
        "; reconnect within seconds after a failover instead of the default 15 s",
        "server_login_retry = 2",
        "server_connect_timeout = 5",
        "query_wait_timeout = 120",
        "server_idle_timeout = 600",
        *tls,
        "",
    ]
    return "\n".join(lines)


def tls_lines(tls_dir: str) -> list[str]:
    """TLS on both sides, with settings PgBouncer 1.18 and 1.25 spell alike (their ``doc/config.md``).

    Clients: TLS only (``require``: a plaintext client is refused, loopback included; PgBouncer has no
    per-address exemption), with the pooler's certificate, which clients verify (``verify-full``
    against the pooler Services' names). PgBouncer's ``client_tls_sslmode`` modes beyond ``require`` ask
    for client certificates, which nobody presents. The server: TLS only, its certificate checked
    against the database's CA and the host name in ``[databases]`` (``verify-full``); PgBouncer sends
    no client certificate. Protocols are pinned to ``secure`` (TLS 1.2 and 1.3, the default of both
    versions) so a changed default cannot lower them. PgBouncer reads the files at start and on
    ``RELOAD``; a renewed certificate takes effect when the pod restarts.
    """
    return [
        "; clients: TLS only, with the pooler's own certificate (clients verify it: verify-full)",
        "client_tls_sslmode = require",
        f"client_tls_cert_file = {tls_dir}/{CERT_FILE}",
        f"client_tls_key_file = {tls_dir}/{KEY_FILE}",
        "client_tls_protocols = secure",
        "; the database: TLS only, its certificate verified against its CA and host name",
        "server_tls_sslmode = verify-full",
        f"server_tls_ca_file = {tls_dir}/{SERVER_CA_FILE}",
        "server_tls_protocols = secure",
    ]
