"""A real Patroni cluster on loopback: etcd + N Patroni members + PostgreSQL, started from rendered settings.

Reusable harness for real-process HA tests (``tests/ha/``) and benchmarks (``bench/failover.py``).

What is real: Patroni 4.1 (the pinned wheel), PostgreSQL (Debian's server binaries), etcd (Debian's
``etcd-server``) as the DCS. Each member gets its own loopback address (``127.a.b.c``) and the ports the
pod uses (5432, 8008), its own data, WAL and socket directories in a fresh temp dir outside the clone,
and runs as Debian's unprivileged ``postgres`` user (PostgreSQL refuses root; the rendered
``local all postgres peer`` rule needs that OS user name).

What comes from the component, unchanged: the rendered ``patroni.yaml`` (``bootstrap.dcs`` timing and
PostgreSQL settings, ``initdb``/``basebackup`` options, authentication, pg_hba, ``use_unix_socket*``,
rewind and data-directory policies), the Patroni container's environment (names of the roles, which
secrets go where) and the ``post_init`` bootstrap script. What is adapted, and why (see
:func:`member_config`): the DCS section (``kubernetes`` → ``etcd3``: no API server here), pod identity and
paths (name, addresses, directories, ``bin_dir``), pod-network replication rules pointed at the loopback
test network, ``timescaledb`` left out of ``shared_preload_libraries`` (Debian ships no TimescaleDB) and
``shared_buffers`` capped so three members fit a small CI machine.

Typical use::

    rendered = rendered_database("prod")
    with PatroniCluster(rendered, members=3) as cluster:   # bootstraps; waits for streaming replicas
        leader = cluster.wait_for_leader()
        cluster.kill(leader)                             # SIGKILL Patroni and PostgreSQL
        new_leader = cluster.wait_for_leader(exclude={leader.name}, timeout=30)
        cluster.start(leader)                            # rejoins (pg_rewind) as a replica
        cluster.wait_for_roles({leader.name: "replica"}, timeout=30)
        with cluster.connect(new_leader) as conn: ...    # the app role over TCP

Every process is started in its own process group and killed on ``stop()``/context exit (and at
interpreter exit), PostgreSQL's postmaster included (Patroni runs it in a session of its own). The
machine side (binaries, the unprivileged user, process groups, loopback ports) is in
:mod:`tests.ha.machine`.
"""

from __future__ import annotations

import atexit
import base64
import copy
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import psycopg
import yaml

from tests.ha.machine import (
    RUN_AS,
    alive,
    as_user,
    chown,
    etcd_binary,
    free_loopback_network,
    killpg,
    missing_requirements,
    postgres_bin_dir,
    process_group,
    processes_under,
    python_for,
    reap,
    vendor_distributions,
    wait_gone,
)
from tests.waits import poll

__all__ = [
    "ClusterError", "Member", "PatroniCluster", "RenderedDatabase", "http_get", "missing_requirements",
    "rendered_database", "test_network_hba", "wait_until",
]

TEST_NETWORK = "127.0.0.0/8"
"""The network the members replicate over here (stands in for the pod networks in pg_hba)."""
TEST_SHARED_BUFFERS = "128MB"
PATRONI_DISTRIBUTIONS = ("patroni", "python-etcd", "psycopg", "psycopg-binary")
"""Distributions (with their dependencies) copied next to the cluster for the unprivileged user."""

T = TypeVar("T")


class ClusterError(RuntimeError):
    """The cluster did not reach an expected state in time; the message carries the recent logs."""


@dataclass(frozen=True)
class Timing:
    """Patroni's HA timing (``ttl``, ``loop_wait``, ``retry_timeout``) and the waits derived from it."""

    ttl: float
    loop_wait: float
    retry_timeout: float

    @classmethod
    def of(cls, dcs: Mapping[str, Any]) -> Timing:
        return cls(float(dcs["ttl"]), float(dcs["loop_wait"]), float(dcs["retry_timeout"]))

    def switchover_seconds(self, margin: float) -> float:
        """Budget for one switchover: the leader acts in its next HA loop (``loop_wait``), Patroni's API polls
        the outcome for up to ``2 * max(10, loop_wait)``, the demoted primary restarts as a replica and may
        retry the DCS for ``retry_timeout``; a lost lock expires after ``ttl``; plus ``margin`` for PostgreSQL
        restarts on a busy machine."""
        return self.loop_wait + 2 * max(10.0, self.loop_wait) + self.retry_timeout + self.ttl + margin


# -- rendered input --------------------------------------------------------------------------------


@dataclass(frozen=True)
class RenderedDatabase:
    """What the TimescaleDB component renders for Patroni: config file, container env, post_init script."""

    config: Mapping[str, Any]
    """The parsed ``patroni.yaml`` of the ConfigMap."""
    env: Mapping[str, str]
    """The Patroni container's literal env values; Secret and downward-API references are left out."""
    secret_env: tuple[str, ...]
    """Names of env vars the pod gets from Secrets (the harness generates values for them)."""
    post_init: str
    """The ``post_init.sh`` of the ConfigMap."""
    readiness_path: str
    """HTTP path of the Patroni container's readiness probe."""
    readiness_period: int
    readiness_failures: int
    pod_spec: Mapping[str, Any] = field(default_factory=dict)
    """The StatefulSet's pod spec (every container, volume and probe)."""
    files: Mapping[str, str] = field(default_factory=dict)
    """The Patroni ConfigMap's data (the role agent's program and declaration among it)."""


def rendered_database(stack: str) -> RenderedDatabase:
    """The database the program renders for ``Pulumi.<stack>.yaml`` (under the test harness's mocks)."""
    from tests.stacks import run_stack

    manifests = run_stack(stack).manifests()
    statefulset = next(m for m in manifests if m["kind"] == "StatefulSet" and _patroni_container(m) is not None)
    container = _patroni_container(statefulset)
    assert container is not None
    config_map = next(
        m for m in manifests if m["kind"] == "ConfigMap" and "patroni.yaml" in (m.get("data") or {})
    )
    env = {e["name"]: e["value"] for e in container.get("env") or [] if "value" in e}
    secret_env = (
        *(e["name"] for e in container.get("env") or [] if "secretKeyRef" in e.get("valueFrom", {})),
        # Patroni's passwords, which the start command exports from mounted files before exec patroni.
        *re.findall(r"\b(PATRONI_[A-Z_]+)=\"\$\$\(<", " ".join(container.get("command") or [])),
    )
    probe = container["readinessProbe"]
    return RenderedDatabase(
        config=yaml.safe_load(config_map["data"]["patroni.yaml"]),
        env=env,
        secret_env=secret_env,
        post_init=config_map["data"]["post_init.sh"],
        readiness_path=probe["httpGet"]["path"],
        readiness_period=int(probe.get("periodSeconds", 10)),
        readiness_failures=int(probe.get("failureThreshold", 3)),
        pod_spec=statefulset["spec"]["template"]["spec"],
        files=config_map["data"],
    )


def _patroni_container(statefulset: Mapping[str, Any]) -> dict[str, Any] | None:
    for container in statefulset["spec"]["template"]["spec"]["containers"]:
        if any(e["name"] == "PATRONI_SCOPE" for e in container.get("env") or []):
            return container
    return None


# -- members ---------------------------------------------------------------------------------------


@dataclass
class Member:
    """One Patroni member: a loopback address, the pod's ports, its directories and its processes."""

    name: str
    host: str
    root: Path
    pg_port: int = 5432
    api_port: int = 8008
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    starts: int = 0

    @property
    def data_dir(self) -> Path:
        return self.root / "pgdata" / "data"

    @property
    def wal_dir(self) -> Path:
        return self.root / "pgwal" / "pg_wal"

    @property
    def socket_dir(self) -> Path:
        return self.root / "run"

    @property
    def config_file(self) -> Path:
        return self.root / "patroni.yaml"

    @property
    def log_file(self) -> Path:
        return self.root / "patroni.log"

    @property
    def api_url(self) -> str:
        return f"http://{self.host}:{self.api_port}"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def postmaster_pid(self) -> int | None:
        """PID of this member's running postmaster, from its pid file."""
        try:
            pid = int((self.data_dir / "postmaster.pid").read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            return None
        return pid if alive(pid) else None

    def log(self) -> str:
        try:
            return self.log_file.read_text(errors="replace")
        except OSError:
            return ""

    def get(self, path: str, timeout: float = 1.0) -> tuple[int, dict[str, Any]]:
        """GET a Patroni REST API path: (HTTP status, JSON body or {}); status 0 when unreachable."""
        return http_get(self.api_url + path, timeout=timeout)


def http_get(url: str, timeout: float = 1.0, *, json_body: Mapping[str, Any] | None = None) -> tuple[int, dict[str, Any]]:
    """(status, JSON body) of a GET, or of a POST of ``json_body``; (0, {}) when nothing answers."""
    data = None if json_body is None else json.dumps(json_body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"} if data else {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 (loopback test URL)
            return response.status, _json(response.read())
    except urllib.error.HTTPError as error:
        return error.code, _json(error.read())
    except (OSError, ValueError):
        return 0, {}


def _json(body: bytes) -> dict[str, Any]:
    try:
        value = json.loads(body or b"{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


# -- the cluster -----------------------------------------------------------------------------------


class PatroniCluster:
    """etcd plus ``members`` Patroni members built from a :class:`RenderedDatabase`.

    ``start()`` (or ``with``) bootstraps: the first member initdb's and runs ``post_init``, the others
    ``pg_basebackup`` from it; it returns once there is a leader and every other member streams.
    """

    def __init__(
        self,
        rendered: RenderedDatabase,
        *,
        members: int = 3,
        dcs_overrides: Mapping[str, Any] | None = None,
        startup_timeout: float = 90.0,
    ) -> None:
        problem = missing_requirements()
        if problem:
            raise ClusterError(problem)
        self.rendered = rendered
        self.dcs_overrides = dict(dcs_overrides or {})
        self.startup_timeout = startup_timeout
        self.scope = str(rendered.config["scope"])
        self.root = Path(tempfile.mkdtemp(prefix="tsk8s-ha-", dir="/tmp"))
        self.root.chmod(0o755)
        self.passwords = {name: secrets.token_urlsafe(18) for name in rendered.secret_env}
        self.app_passwords: dict[str, str] = {}
        self._network = free_loopback_network()
        self.members = [
            Member(name=f"{self.scope}-{i}", host=f"{self._network}.{10 + i}", root=self.root / f"{self.scope}-{i}")
            for i in range(members)
        ]
        self._etcd: subprocess.Popen[bytes] | None = None
        self._etcd_data = etcd_data_directory(self.root)
        self.etcd_url = f"http://{self._network}.2:2379"
        self._site = self.root / "site"
        self._python = python_for(RUN_AS)
        self._postmasters: set[int] = set()
        self._stopped = False
        atexit.register(self.stop)

    # -- lifecycle --------------------------------------------------------------------------------

    def __enter__(self) -> PatroniCluster:
        try:
            return self.start_all()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start_all(self) -> PatroniCluster:
        """Start etcd and every member at once (one wins the initialize race and bootstraps, the others
        clone it); wait for a leader and for every other member to stream from it."""
        vendor_distributions(self._site, PATRONI_DISTRIBUTIONS)
        self._write_secrets()
        self._start_etcd()
        for member in self.members:
            self.start(member)
        leader = self.wait_for_leader(timeout=self.startup_timeout)
        others = {m.name: "replica" for m in self.members if m is not leader}
        self.wait_for_roles(others, timeout=self.startup_timeout, streaming=True)
        return self

    def start(self, member: Member) -> None:
        """(Re)start a member's Patroni on its existing data (a new member bootstraps or clones)."""
        if member.running:
            raise ClusterError(f"{member.name} is already running")
        for directory in (member.root, member.socket_dir, member.data_dir.parent, member.wal_dir.parent):
            directory.mkdir(parents=True, exist_ok=True)
            chown(directory)
        member.config_file.write_text(json.dumps(self.member_config(member), indent=2))
        chown(member.config_file)
        log = open(member.log_file, "ab")
        try:
            member.process = subprocess.Popen(
                [str(self._python), "-s", "-m", "patroni", str(member.config_file)],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env=self.member_env(member), cwd=member.root, start_new_session=True, **as_user(),
            )
        finally:
            log.close()
        member.starts += 1

    def kill(self, member: Member, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` to the member's Patroni and its PostgreSQL (both process groups), like a pod's
        processes dying at once; waits until Patroni is gone."""
        postmaster = member.postmaster_pid()
        if member.process is not None:
            killpg(member.process.pid, sig)
        if postmaster is not None:
            self._postmasters.add(postmaster)
            killpg(process_group(postmaster), sig)
        if member.process is not None:
            reap(member.process, grace=30, timeout=10)
        if postmaster is not None:
            wait_gone(postmaster, timeout=30)

    def stop(self) -> None:
        """Kill every process this cluster started and delete its directory (idempotent)."""
        if self._stopped:
            return
        self._stopped = True
        for member in self.members:
            postmaster = member.postmaster_pid()
            if postmaster is not None:
                self._postmasters.add(postmaster)
            if member.process is not None:
                reap(member.process, timeout=10)
        for pid in self._postmasters:
            if alive(pid):
                killpg(process_group(pid), signal.SIGKILL)
        for pid in processes_under(self.root):  # anything else of ours (e.g. a postmaster mid-start)
            killpg(process_group(pid), signal.SIGKILL)
        for pid in self._postmasters | set(processes_under(self.root)):
            wait_gone(pid, timeout=10)
        if self._etcd is not None:
            reap(self._etcd, timeout=10)
        shutil.rmtree(self._etcd_data, ignore_errors=True)
        shutil.rmtree(self.root, ignore_errors=True)

    # -- configuration ----------------------------------------------------------------------------

    def member_config(self, member: Member) -> dict[str, Any]:
        """The rendered ``patroni.yaml`` adapted to this member (see the module docstring for what changes)."""
        config = copy.deepcopy(dict(self.rendered.config))
        config.pop("kubernetes", None)
        config["etcd3"] = {"hosts": [self.etcd_url.removeprefix("http://")]}
        config["name"] = member.name
        config["bootstrap"]["dcs"].update(self.dcs_overrides)
        config["bootstrap"]["post_init"] = str(self.root / "post_init.sh")
        for options in (config["bootstrap"].get("initdb", []), config["postgresql"].get("basebackup", [])):
            for option in options:
                if isinstance(option, dict) and "waldir" in option:
                    option["waldir"] = str(member.wal_dir)
        postgresql = config["postgresql"]
        postgresql.update({
            "listen": f"{member.host}:{member.pg_port}",
            "connect_address": f"{member.host}:{member.pg_port}",
            "data_dir": str(member.data_dir),
            "bin_dir": str(postgres_bin_dir()),
            "pgpass": str(member.root / "pgpass"),
            "pg_hba": test_network_hba(postgresql["pg_hba"]),
        })
        for parameters in (postgresql["parameters"], config["bootstrap"]["dcs"]["postgresql"]["parameters"]):
            _without_timescaledb(parameters)
        postgresql["parameters"]["unix_socket_directories"] = str(member.socket_dir)
        postgresql["parameters"]["shared_buffers"] = TEST_SHARED_BUFFERS
        config["restapi"] = {
            **config.get("restapi", {}),
            "listen": f"{member.host}:{member.api_port}",
            "connect_address": f"{member.host}:{member.api_port}",
        }
        return config

    def member_env(self, member: Member) -> dict[str, str]:
        """The pod's Patroni env with pod identity, paths and secrets of this member (no Kubernetes vars)."""
        env = {k: v for k, v in self.rendered.env.items() if not k.startswith("PATRONI_KUBERNETES_")}
        env.update(self.passwords)
        config = self.member_config(member)
        env.update({
            "PATRONI_NAME": member.name,
            "PATRONI_POSTGRESQL_DATA_DIR": str(member.data_dir),
            "PATRONI_POSTGRESQL_PGPASS": config["postgresql"]["pgpass"],
            "PATRONI_POSTGRESQL_LISTEN": config["postgresql"]["listen"],
            "PATRONI_POSTGRESQL_CONNECT_ADDRESS": config["postgresql"]["connect_address"],
            "PATRONI_RESTAPI_LISTEN": config["restapi"]["listen"],
            "PATRONI_RESTAPI_CONNECT_ADDRESS": config["restapi"]["connect_address"],
            "PATRONICTL_CONFIG_FILE": str(member.config_file),
            "PGDATA": str(member.data_dir),
            "PGHOST": str(member.socket_dir),
            "HOME": str(member.root),
            "PATH": f"{postgres_bin_dir()}:/usr/bin:/bin",
            "PYTHONPATH": str(self._site),
            "PYTHONDONTWRITEBYTECODE": "1",
            "LANG": "C.UTF-8",
        })
        return {k: v for k, v in env.items() if "$(" not in v}

    def run_python(self, args: list[str], *, pythonpath: list[Path], env: Mapping[str, str] | None = None,
                   timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """``python -s <args>`` as the servers' OS user (what the pod's containers run as), with the
        vendored drivers after ``pythonpath``: e.g. a sidecar program reaching a member over its socket."""
        search = ":".join(str(p) for p in [*pythonpath, self._site])
        return subprocess.run(
            [str(self._python), "-s", *args], cwd=self.root, capture_output=True, text=True, timeout=timeout,
            env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": str(self.root), "PYTHONDONTWRITEBYTECODE": "1",
                 "PYTHONPATH": search, **(env or {})},
            **as_user(),
        )

    def _write_secrets(self) -> None:
        """post_init's password files (generated) and the script itself, pointed at them."""
        secrets_dir = self.root / "secrets"
        secrets_dir.mkdir()
        script = self.rendered.post_init
        for helper in set(re.findall(r"(/[^\s`]+/(?:scram\.py))\b", script)):  # post_init's verifier helper
            local = self.root / Path(helper).name
            shutil.copy(Path(__file__).resolve().parents[2] / "components" / "shared" / local.name, local)
            local.chmod(0o644)
            script = script.replace(helper, str(local))
        for directory, filename in set(re.findall(r"(/[^\s`]+)/([a-z_][a-z0-9_]*-password)\b", script)):
            password = secrets.token_urlsafe(18)
            (secrets_dir / filename).write_text(password + "\n")
            self.app_passwords[filename.removesuffix("-password")] = password
            script = script.replace(f"{directory}/{filename}", str(secrets_dir / filename))
        script = "\n".join(
            line for line in script.splitlines() if line.strip() != "CREATE EXTENSION IF NOT EXISTS timescaledb;"
        ) + "\n"
        post_init = self.root / "post_init.sh"
        post_init.write_text(script)
        post_init.chmod(0o755)
        for path in (secrets_dir, *secrets_dir.iterdir()):
            chown(path)
            path.chmod(0o700 if path.is_dir() else 0o400)

    def _start_etcd(self) -> None:
        data = self._etcd_data
        data.mkdir(exist_ok=True)
        chown(data)
        data.chmod(0o700)
        peer = f"http://{self._network}.2:2380"
        log = open(self.root / "etcd.log", "ab")
        try:
            self._etcd = subprocess.Popen(
                [str(etcd_binary()), "--name", "etcd", "--data-dir", str(data),
                 "--listen-client-urls", self.etcd_url, "--advertise-client-urls", self.etcd_url,
                 "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
                 "--initial-cluster", f"etcd={peer}", "--initial-cluster-state", "new",
                 "--log-level", "warn"],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                cwd=self.root, start_new_session=True, **as_user(),
            )
        finally:
            log.close()
        wait_until(lambda: http_get(self.etcd_url + "/health")[0] == 200, timeout=30,
                   message="etcd did not become healthy", logs=self.logs)

    # -- observation ------------------------------------------------------------------------------

    def member(self, name: str) -> Member:
        return next(m for m in self.members if m.name == name)

    def topology(self) -> dict[str, dict[str, Any]]:
        """``GET /cluster`` from the first reachable member: name → {role, state, timeline, lag, ...}."""
        for member in self.members:
            if member.running:
                status, body = member.get("/cluster")
                if status == 200 and "members" in body:
                    return {m["name"]: m for m in body["members"]}
        return {}

    def leader(self, exclude: Iterable[str] = ()) -> Member | None:
        """The running member that holds the leader lock and runs as a writable primary (``GET /primary``)."""
        excluded = set(exclude)
        for member in self.members:
            if member.name not in excluded and member.running and member.get("/primary")[0] == 200:
                return member
        return None

    def lock_holder(self) -> str | None:
        """The member named in the leader key in etcd (Patroni's lock), or None once it is gone."""
        key = f"{self.rendered.config.get('namespace', '/service/').rstrip('/')}/{self.scope}/leader"
        status, body = http_get(self.etcd_url + "/v3/kv/range", json_body={"key": base64.b64encode(key.encode()).decode()})
        if status != 200:
            raise ClusterError(f"etcd answered {status} to a range request for {key}")
        values = [base64.b64decode(kv["value"]).decode() for kv in body.get("kvs", [])]
        return values[0] if values else None

    def wait_for_leader(self, *, exclude: Iterable[str] = (), timeout: float = 60.0, interval: float = 0.1) -> Member:
        """Wait for a leader (not in ``exclude``); raises :class:`ClusterError` with the logs on timeout."""
        excluded = set(exclude)
        return wait_until(lambda: self.leader(excluded), timeout=timeout, interval=interval,
                          message=f"no leader outside {sorted(excluded)}", logs=self.logs)

    def status(self, member: Member) -> dict[str, Any]:
        """The member's own live view (``GET /patroni``): role, state, timeline, replication_state, xlog."""
        return member.get("/patroni")[1] if member.running else {}

    def is_streaming_replica(self, member: Member) -> bool:
        """A running replica whose WAL receiver streams from the current leader."""
        status = self.status(member)
        return status.get("role") == "replica" and status.get("replication_state") == "streaming"

    def wait_for_roles(self, roles: Mapping[str, str], *, timeout: float = 60.0, streaming: bool = True) -> None:
        """Wait until every named member has the role: ``leader`` (holds the lock, writable) or ``replica``
        (running as a standby; with ``streaming``, also receiving WAL from the leader)."""

        def reached() -> bool:
            for name, role in roles.items():
                member = self.member(name)
                if role == "leader":
                    if not (member.running and member.get("/primary")[0] == 200):
                        return False
                elif streaming and not self.is_streaming_replica(member):
                    return False
                elif not streaming and self.status(member).get("role") != "replica":
                    return False
            return True

        wait_until(reached, timeout=timeout, interval=0.1, message=f"roles not reached: {dict(roles)}", logs=self.logs)

    def dcs_settings(self) -> dict[str, Any]:
        """The dynamic configuration Patroni runs with (``GET /config``)."""
        for member in self.members:
            if member.running:
                status, body = member.get("/config")
                if status == 200:
                    return body
        return {}

    # -- SQL --------------------------------------------------------------------------------------

    def dsn(self, member: Member, *, user: str | None = None, dbname: str | None = None) -> str:
        """libpq conninfo for a member over TCP; default the application role and database."""
        database, app_user = self.application()
        user = user or app_user
        password = self.app_passwords.get(user) or self.passwords.get("PATRONI_SUPERUSER_PASSWORD", "")
        return psycopg.conninfo.make_conninfo(
            host=member.host, port=member.pg_port, user=user, dbname=dbname or database, password=password,
            connect_timeout=2, sslmode="disable", application_name="tests-ha",
        )

    @contextmanager
    def connect(self, member: Member, **kwargs: Any) -> Iterator[psycopg.Connection[Any]]:
        with psycopg.connect(self.dsn(member, **kwargs), autocommit=True) as conn:
            yield conn

    def application(self) -> tuple[str, str]:
        """(database, application role) that post_init creates."""
        script = self.rendered.post_init
        database = re.search(r"CREATE DATABASE %I OWNER %I', '([^']+)', '([^']+)'", script)
        if database is None:
            raise ClusterError("post_init creates no database")
        return database.group(1), database.group(2)

    # -- timing -------------------------------------------------------------------------------------

    def timing(self) -> Timing:
        """The Patroni timing the cluster runs with (its DCS config), else the rendered ``bootstrap.dcs``."""
        return Timing.of({**self.rendered.config["bootstrap"]["dcs"], **self.dcs_settings()})

    # -- diagnostics ------------------------------------------------------------------------------

    def diagnostics(self, tail: int = 3000) -> str:
        """Patroni's member list (``GET /cluster``) and the tail of every member's and etcd's log."""
        members = "\n".join(f"  {name}: role={m.get('role')} state={m.get('state')} timeline={m.get('timeline')} "
                             f"lag={m.get('lag')}" for name, m in self.topology().items()) or "  (no member answers)"
        return f"--- Patroni members ---\n{members}\n{self.logs(tail)}"

    @contextmanager
    def explained(self) -> Iterator[None]:
        """Re-raise any failure inside the block with :meth:`diagnostics` appended (for CI logs)."""
        try:
            yield
        except Exception as error:
            raise ClusterError(f"{type(error).__name__}: {error}\n{self.diagnostics()}") from error

    def logs(self, tail: int = 3000) -> str:
        """The tail of every member's log and etcd's, for failure messages."""
        parts = [f"--- {m.name} ---\n{m.log()[-tail:]}" for m in self.members]
        try:
            parts.append("--- etcd ---\n" + (self.root / "etcd.log").read_text(errors="replace")[-tail:])
        except OSError:
            pass
        return "\n".join(parts)


def etcd_data_directory(root: Path) -> Path:
    """Where etcd keeps its data: on tmpfs (``/dev/shm``) when there is one, else under ``root``. etcd revokes an
    expired lease (Patroni's leader lock) through a raft entry it must fsync, and retries only every 3 s when that
    lags; on a disk busy with the suite's PostgreSQL servers this delayed a dead leader's lock beyond ttl. The
    Kubernetes DCS has no such step (replicas judge the lock's age by their own clocks), so the stand-in must
    not add one."""
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK | os.X_OK):
        return Path(tempfile.mkdtemp(prefix=f"{root.name}-etcd-", dir=shm))
    return root / "etcd"


def test_network_hba(rules: Iterable[str]) -> list[str]:
    """The rendered rules with pod-network rules (replication, the superuser's) pointed at :data:`TEST_NETWORK`
    (deduplicated, in place); every other rule (socket, loopback, rejects, client rules) stays as rendered."""
    out: list[str] = []
    for rule in rules:
        fields = rule.split()
        if (len(fields) >= 5 and fields[0].startswith("host") and (fields[1] == "replication" or fields[2] == "postgres")
                and fields[-1] != "reject" and fields[3] not in ("127.0.0.1/32", "::1/128")):
            rule = " ".join([*fields[:3], TEST_NETWORK, *fields[4:]])
        if rule not in out:
            out.append(rule)
    return out


def _without_timescaledb(parameters: dict[str, Any]) -> None:
    libraries = parameters.get("shared_preload_libraries")
    if libraries is not None:
        kept = [lib.strip() for lib in str(libraries).split(",") if lib.strip() and lib.strip() != "timescaledb"]
        parameters["shared_preload_libraries"] = ",".join(kept)
    for name in [n for n in parameters if n.startswith("timescaledb.")]:
        del parameters[name]


# -- helpers ---------------------------------------------------------------------------------------


def wait_until(
    check: Callable[[], T | None | bool],
    *,
    timeout: float,
    interval: float = 0.1,
    message: str = "condition not reached",
    logs: Callable[[], str] | None = None,
) -> T:
    """Poll ``check`` until it returns something truthy; raise :class:`ClusterError` after ``timeout``
    (:func:`tests.waits.poll`, with ``logs()`` as the diagnostic state)."""
    return poll(check, deadline=timeout, interval=interval, what=message, state=logs, error=ClusterError)
