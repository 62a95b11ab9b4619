"""Real processes for the backup tests: a TLS S3 server (moto) and PostgreSQL 15 clusters, on loopback.

Everything runs from a fresh temp dir outside the clone. Servers run as an unprivileged user when the
tests run as root (PostgreSQL refuses root; pgBackRest must run as the cluster's owner).
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

from tests.patroni_import import patroni_module
from tests.waits import poll

PG_BIN = Path("/usr/lib/postgresql/15/bin")
"""Debian's PostgreSQL 15 (pgBackRest 2.45 from the same release supports it)."""
RUN_AS = "embedded_postgres"
S3_SERVER = Path(__file__).with_name("s3server.py")
ACCESS_KEY, SECRET_KEY = "test-access-key", "test-secret-key"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def service_user() -> str | None:
    """The unprivileged user servers run as (None: the current, non-root user)."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(RUN_AS)
    except KeyError:
        subprocess.run(["useradd", "--no-create-home", "-s", "/usr/sbin/nologin", RUN_AS], check=True, capture_output=True)
    return RUN_AS


def give_to(path: Path, user: str | None) -> None:
    if user is not None:
        entry = pwd.getpwnam(user)
        os.chown(path, entry.pw_uid, entry.pw_gid)


def make_certificates(directory: Path) -> tuple[Path, Path, Path]:
    """A throwaway CA and a server certificate for ``localhost`` signed by it: (ca, cert, key)."""
    ca_key, ca, key, csr, cert = (directory / n for n in ("ca.key", "ca.crt", "server.key", "server.csr", "server.crt"))
    run = lambda *args: subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)  # noqa: E731
    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(ca_key), "-out", str(ca), "-days", "1",
        "-subj", "/CN=timescale-k8s test CA")
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(csr), "-subj", "/CN=localhost")
    (directory / "san.cnf").write_text("subjectAltName=DNS:localhost\n")
    run("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key), "-CAcreateserial", "-out", str(cert),
        "-days", "1", "-extfile", str(directory / "san.cnf"))
    ca.chmod(0o644)
    return ca, cert, key


class S3Server:
    """moto's S3 on https://localhost:<port>, certificate from :func:`make_certificates`; it refuses
    requests signed with any access key id but ``ACCESS_KEY``."""

    def __init__(self, directory: Path) -> None:
        self.ca, cert, key = make_certificates(directory)
        self.port = free_port()
        self.log = directory / "s3.log"
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, str(S3_SERVER), "127.0.0.1", str(self.port), str(cert), str(key), ACCESS_KEY],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )
        self.endpoint = f"localhost:{self.port}"
        self._wait()

    def _wait(self, timeout: float = 60.0) -> None:
        context = ssl.create_default_context(cafile=str(self.ca))

        def answers() -> bool:
            exited(self.proc, "the S3 server", self.log)
            try:
                urllib.request.urlopen(f"https://{self.endpoint}/", context=context, timeout=2).close()
            except urllib.error.HTTPError:  # it answers (an unsigned request: 403)
                pass
            return True

        poll(answers, deadline=timeout, interval=0.2, what="the S3 server to answer over TLS", retry_on=(OSError,),
             state=lambda: log_tail(self.log), error=RuntimeError)

    def client(self):  # type: ignore[no-untyped-def]
        import boto3

        return boto3.client("s3", endpoint_url=f"https://{self.endpoint}", verify=str(self.ca), region_name="us-east-1",
                            aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY)

    def stop(self) -> None:
        stop_group(self.proc)


def log_tail(path: Path, chars: int = 3000) -> str:
    """The end of a server log, for timeout messages."""
    try:
        return f"--- {path} ---\n" + path.read_text(errors="replace")[-chars:]
    except OSError as error:
        return f"--- {path}: {error} ---"


def exited(proc: subprocess.Popen[bytes] | None, name: str, log: Path) -> None:
    """Raise (stop waiting) if the process already exited: waiting longer cannot help."""
    if proc is not None and proc.poll() is not None:
        raise RuntimeError(f"{name} exited with {proc.returncode}\n{log_tail(log)}")


def stop_group(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(10)


class Cluster:
    """A PostgreSQL 15 cluster in ``root`` on 127.0.0.1:<port>, socket in ``root``."""

    def __init__(self, root: Path, user: str | None, env: Mapping[str, str]) -> None:
        self.root, self.user, self.env = root, user, dict(env)
        self.data = root / "data"
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        root.mkdir(parents=True, exist_ok=True)
        give_to(root, user)

    def run(self, command: Sequence[str], timeout: float = 300,
            env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        """Run a command as the cluster's owner with its environment (pgBackRest credentials), or ``env``."""
        return subprocess.run(list(command), capture_output=True, text=True, timeout=timeout, user=self.user,
                              env={**os.environ, **(self.env if env is None else env)}, check=False)

    def initdb(self) -> None:
        result = self.run([str(PG_BIN / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust", "--no-sync"])
        assert result.returncode == 0, result.stderr

    def configure(self, settings: Mapping[str, str]) -> None:
        """Append settings to postgresql.conf (later lines win), plus this cluster's port and socket."""
        lines = {**settings, "port": str(self.port), "listen_addresses": "'127.0.0.1'",
                 "unix_socket_directories": f"'{self.root}'", "fsync": "off", "timezone": "'UTC'"}
        with open(self.data / "postgresql.conf", "a", encoding="utf-8") as conf:
            conf.writelines(f"{key} = {value}\n" for key, value in lines.items())

    def start(self, timeout: float = 60.0) -> None:
        with open(self.root / "server.log", "ab") as log:
            self.proc = subprocess.Popen([str(PG_BIN / "postgres"), "-D", str(self.data)], stdout=log,
                                         stderr=subprocess.STDOUT, user=self.user, env={**os.environ, **self.env},
                                         start_new_session=True)
        proc = self.proc

        def accepts() -> bool:
            exited(proc, "postgres", self.root / "server.log")
            with psycopg.connect(self.dsn, connect_timeout=2):
                return True

        poll(accepts, deadline=timeout, interval=0.1, what="postgres to accept connections",
             retry_on=(psycopg.OperationalError,), state=lambda: log_tail(self.root / "server.log"), error=RuntimeError)

    def wait_promoted(self, timeout: float = 120.0) -> None:
        """Until recovery (restore_command, recovery target) ends in a promotion; the log on timeout."""
        poll(lambda: self.query("SELECT pg_is_in_recovery()") == [(False,)], deadline=timeout, interval=0.1,
             what="the restored cluster to promote", retry_on=(psycopg.OperationalError,),
             state=lambda: log_tail(self.root / "server.log"), error=RuntimeError)

    @property
    def dsn(self) -> str:
        return f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres"

    def query(self, sql: str, *params: object) -> list[tuple]:
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            cursor = conn.execute(sql, params or None)
            return cursor.fetchall() if cursor.description else []

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGQUIT)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)


def remove(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


# -- the pod's start commands ------------------------------------------------------------------------


def kubelet_expand(text: str) -> str:
    """A command argument as the kubelet hands it to the runtime when the container defines no env it
    references: ``$$`` becomes ``$``, an unknown ``$(VAR)`` stays as written."""
    return text.replace("$$", "$")


@dataclass(frozen=True)
class Started:
    """What the program a start command execs received."""

    argv: list[str]
    exported: dict[str, str]
    """Variables the command added to the environment it was started with."""


_BASH_OWN = {"PWD", "OLDPWD", "SHLVL", "_"}


def run_start_command(pod_spec: Mapping[str, Any], container: str, secret_values: Mapping[str, str], root: Path,
                      *, program: str) -> Started:
    """Run a rendered container's command with bash as the pod would, on this machine.

    Each projected Secret volume the container mounts becomes a directory under ``root`` holding the
    volume's files (item paths, the volume's mode), a file's content being ``secret_values[key]``; the
    command's mount paths point there. Stand-ins on ``PATH`` take the place of ``install`` (the data
    directories) and of ``program``, the program the command execs: it records its arguments and its
    environment from a child process. Nothing else of the command is changed.
    """
    spec = next(c for c in pod_spec["containers"] if c["name"] == container)
    volumes = {v["name"]: v for v in pod_spec["volumes"]}
    command = [kubelet_expand(part) for part in spec["command"]]
    for mount in spec.get("volumeMounts") or []:
        projected = volumes.get(mount["name"], {}).get("projected")  # claims (data, WAL) are no pod volumes
        if projected is None:
            continue
        directory = root / mount["name"]
        directory.mkdir(parents=True)
        for source in projected["sources"]:
            for item in source["secret"]["items"]:
                (directory / item["path"]).write_text(secret_values.get(item["key"], f"sample-{item['key']}"))
                (directory / item["path"]).chmod(projected["defaultMode"])
        command = [part.replace(mount["mountPath"] + "/", f"{directory}/") for part in command]
    stand_ins = root / "bin"
    stand_ins.mkdir()
    for name in ("install", program):
        (stand_ins / name).write_text(
            f"#!/bin/sh\nprintf '%s\\0' \"$@\" > {root}/{name}.argv\n/usr/bin/env -0 > {root}/{name}.env\n"
        )
        (stand_ins / name).chmod(0o755)
    started_with = {"PATH": f"{stand_ins}:/usr/bin:/bin"}
    result = subprocess.run(command, env=started_with, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0 and not result.stderr, result.stderr
    environment = dict(
        entry.split("=", 1) for entry in (root / f"{program}.env").read_text().split("\0") if entry
    )
    return Started(
        argv=(root / f"{program}.argv").read_text().split("\0")[:-1],
        exported={k: v for k, v in environment.items() if k not in started_with and k not in _BASH_OWN},
    )


def patroni_postgres_env(patroni_env: Mapping[str, str]) -> dict[str, str]:
    """The environment Patroni starts PostgreSQL with when its own is ``patroni_env``.

    Computed by the installed Patroni's own ``PostmasterProcess.start`` (``patroni/postgresql/postmaster.py``),
    stopped where it hands the environment to the process that would exec ``postgres``.
    """
    from unittest import mock

    postmaster = patroni_module("patroni.postgresql.postmaster")

    handed: dict[str, dict[str, str]] = {}

    class Context:
        def Pipe(self, duplex: bool) -> tuple[Any, Any]:  # noqa: N802
            connection = mock.Mock()
            connection.recv.return_value = None  # "postgres did not start": start() returns None
            return connection, connection

        def Process(self, target: Any, args: tuple[Any, ...]) -> Any:  # noqa: N802
            handed["env"] = args[2]
            return mock.Mock()

    with mock.patch.dict(os.environ, patroni_env, clear=True), \
            mock.patch.object(postmaster.multiprocessing, "get_context", return_value=Context()):
        assert postmaster.PostmasterProcess.start("postgres", "/nonexistent", "postgresql.conf", []) is None
    return handed["env"]
