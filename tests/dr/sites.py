"""Two sites for the DR suite: Patroni clusters that archive through pgBackRest to S3, and S3 endpoints that can fail.

Reusable by ``tests/dr`` and ``bench/dr.py``. Real processes, all on loopback: one moto S3 server over TLS
(:class:`tests.backup.support.S3Server`) holding one bucket per "region", each region reached through its own
:class:`Gate` (a TCP forwarder that can refuse connections, as an unreachable region does), and Patroni clusters
(:class:`tests.ha.cluster.PatroniCluster`) with the stack's rendered pgBackRest settings.

What comes from the stack, unchanged: the Patroni config the program renders for ``Pulumi.prod.yaml`` or
``Pulumi.dr.yaml`` and the Patroni sections and ``pgbackrest.conf`` built from that stack's own ``backup``
section (:func:`patroni_backup_config`, :func:`pgbackrest_conf`): archive and restore commands, the standby
cluster's ``restore_command`` and replica method, both repositories, retention, async archiving, bundling. What is
adapted, and only through :class:`Layout` and the repositories' endpoints: each member's paths (data, socket,
spool, lock, config file), the test CA, and each bucket's endpoint (its region's gate, path-style addressing).
The S3 key pairs are in the members' environment (the pod exports them from mounted files; ``tests/backup``
proves that path).

One limit of a single machine: the standby cluster's ``restore_command`` lives in the DCS, shared by every member,
and names the first member's paths. So the standby leader must be the first member (:meth:`ArchivingCluster.
start_all` starts it alone, then the others); the other members' archive fetches fail pgBackRest's data-directory
check (they stream from the standby leader instead). In a pod every member has the same paths.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import socket
import subprocess
import tempfile
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from components.timescaledb.backup import (
    BackupArgs, Layout, RepositoryArgs, credential_options, merge, option_env, patroni_backup_config,
    pgbackrest_conf, repositories,
)
from components.timescaledb.backup_agent import Agent, AgentConfig, parse_cron
from stack.config import parse_stack_config
from tests.backup.support import ACCESS_KEY, SECRET_KEY, S3Server, free_port
from tests.ha.cluster import (
    PATRONI_DISTRIBUTIONS, Member, PatroniCluster, RenderedDatabase, rendered_database, wait_until,
)
from tests.ha.machine import as_user, chown, postgres_bin_dir, vendor_distributions
from tests.stacks import stack_file_config


class Gate:
    """``127.0.0.1:<port>`` forwarding to an S3 server; :meth:`close` makes it refuse new connections and cuts the
    open ones (an unreachable region), :meth:`open` serves again on the same port."""

    def __init__(self, target_port: int) -> None:
        self.port = free_port()
        self._target = ("127.0.0.1", target_port)
        self._listener: socket.socket | None = None
        self._connections: set[socket.socket] = set()
        self._lock = threading.Lock()
        self.open()

    @property
    def endpoint(self) -> str:
        return f"localhost:{self.port}"

    def open(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def close(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.close()
        with self._lock:
            for connection in self._connections:
                _shut(connection)
            self._connections.clear()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # closed
            try:
                upstream = socket.create_connection(self._target, timeout=10)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._connections.update((client, upstream))
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                _shut(end)
            with self._lock:
                self._connections.discard(source)
                self._connections.discard(sink)


def _shut(connection: socket.socket) -> None:
    try:
        connection.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    connection.close()


class Regions:
    """One S3 server and, per site and region, a gate: the path from that site to that region's endpoint (so one
    site can lose its path to a bucket the other still reaches)."""

    def __init__(self, root: Path, names: Sequence[str], sites: Sequence[str] = ("prod", "dr")) -> None:
        directory = root / "s3"
        directory.mkdir()
        directory.chmod(0o755)
        self.s3 = S3Server(directory)
        self.gates = {(site, name): Gate(self.s3.port) for site in sites for name in names}

    def stop(self) -> None:
        for gate in self.gates.values():
            gate.close()
        self.s3.stop()

    def localize(self, repo: RepositoryArgs, site: str) -> RepositoryArgs:
        """The stack's repository, reached from ``site`` through its gate to the repository's region (path-style:
        moto serves no bucket domains)."""
        return dataclasses.replace(repo, endpoint=self.gates[(site, repo.region)].endpoint, uri_style="path")

    def create_buckets(self, args: BackupArgs) -> None:
        client = self.s3.client()
        existing = {b["Name"] for b in client.list_buckets().get("Buckets", [])}
        for repo in repositories(args):
            if repo.bucket not in existing:
                client.create_bucket(Bucket=repo.bucket)
                existing.add(repo.bucket)

    def keys(self, bucket: str, prefix: str) -> set[str]:
        """Every object key under ``prefix`` in ``bucket`` (read past the gates: the server itself)."""
        client, found, token = self.s3.client(), set(), None
        while True:
            page = client.list_objects_v2(Bucket=bucket, Prefix=prefix.lstrip("/"),
                                          **({"ContinuationToken": token} if token else {}))
            found.update(item["Key"] for item in page.get("Contents", []))
            token = page.get("NextContinuationToken")
            if not token:
                return found


def stack_backup(stack: str, regions: Regions, **changes: Any) -> BackupArgs:
    """The stack file's ``backup`` section with each repository reached through the gates of the site named after
    the stack."""
    raw = {key.removeprefix("timescale-k8s:"): value for key, value in stack_file_config(stack).items()}
    args = parse_stack_config(raw).database.args.backup
    assert args is not None, f"Pulumi.{stack}.yaml has no backup section"
    return dataclasses.replace(
        args, repository=regions.localize(args.repository, stack),
        secondary_repository=regions.localize(args.secondary_repository, stack) if args.secondary_repository else None,
        **changes,
    )


class ArchivingCluster(PatroniCluster):
    """A :class:`PatroniCluster` whose members run the stack's pgBackRest settings (module docstring).

    ``credentials_from``: a standby cluster's data holds its source's roles, so its members authenticate (the
    replication role among them) with the source's passwords, as the dr stack's ``passwordsFromStack`` renders
    them (``tests/timescaledb/test_source_passwords.py``)."""

    def __init__(self, rendered: RenderedDatabase, backup: BackupArgs, ca: Path, *, members: int = 2,
                 credentials_from: PatroniCluster | None = None, startup_timeout: float = 120.0) -> None:
        super().__init__(rendered, members=members, startup_timeout=startup_timeout)
        self.backup = backup
        self.ca = ca
        self._source = credentials_from
        if credentials_from is not None:
            self.passwords = dict(credentials_from.passwords)

    def layout(self, member: Member) -> Layout:
        return Layout(data_dir=str(member.data_dir), socket_dir=str(member.socket_dir), port=member.pg_port,
                      spool_dir=str(member.root / "pgbackrest-spool"), lock_dir=str(member.root / "pgbackrest-lock"),
                      config_file=str(member.root / "pgbackrest.conf"), ca_file=str(self.ca))

    def member_config(self, member: Member) -> dict[str, Any]:
        return merge(super().member_config(member), patroni_backup_config(self.backup, self.layout(member)))

    def member_env(self, member: Member) -> dict[str, str]:
        return {**super().member_env(member), **self.s3_keys()}

    def s3_keys(self) -> dict[str, str]:
        values = {"AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY}
        return {option_env(option): values[key]
                for option, key in credential_options(len(repositories(self.backup))).items()}

    def start(self, member: Member) -> None:
        layout = self.layout(member)
        member.root.mkdir(parents=True, exist_ok=True)
        chown(member.root)
        for directory in (layout.spool_dir, layout.lock_dir):
            Path(directory).mkdir(parents=True, exist_ok=True)
            chown(Path(directory))
        config = Path(layout.config_file)
        config.write_text(pgbackrest_conf(self.backup, layout))
        chown(config)
        super().start(member)

    def start_all(self) -> ArchivingCluster:
        """The first member alone until it leads (the standby leader must be the first: module docstring), then
        the others, until each streams from it."""
        vendor_distributions(self._site, PATRONI_DISTRIBUTIONS)
        self._write_secrets()
        if self._source is not None:
            self.app_passwords = dict(self._source.app_passwords)
        self._start_etcd()
        first, *others = self.members
        self.start(first)
        self.wait_for_lock(first)
        for member in others:
            self.start(member)
        self.wait_for_roles({m.name: "replica" for m in others}, timeout=self.startup_timeout, streaming=True)
        return self

    def wait_for_lock(self, member: Member) -> None:
        wait_until(lambda: self.lock_holder() == member.name and self.status(member).get("state") == "running",
                   timeout=self.startup_timeout, message=f"{member.name} to hold the leader lock, running",
                   logs=self.diagnostics)

    def diagnostics(self, tail: int = 3000) -> str:
        """Patroni's view and log tails, then each member's recent pgBackRest lines (Patroni's loop messages would
        push them out of a plain tail)."""
        parts = [super().diagnostics(tail)]
        for member in self.members:
            lines = [line for line in member.log().splitlines()
                     if ("P0" in line or "ERROR:" in line or "WARN:" in line) and "command begin" not in line]
            parts.append(f"--- {member.name}: pgBackRest ---\n" + "\n".join(lines[-40:]))
        return "\n".join(parts)

    # -- pgBackRest on a member ------------------------------------------------------------------

    def pgbackrest(self, member: Member, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        """``pgbackrest --config=<member's> --stanza=S ARGS`` as the servers' OS user, with the S3 keys."""
        return self._run_as_server(["pgbackrest", f"--config={self.layout(member).config_file}",
                                    f"--stanza={self.backup.stanza}", *args], timeout)

    def superuser_sql(self, member: Member, sql: str) -> str:
        """``sql`` as the superuser over the member's socket (peer authentication, as ``kubectl exec`` would); the
        rendered pg_hba refuses the superuser over TCP."""
        result = self._run_as_server([f"{postgres_bin_dir()}/psql", "-h", str(member.socket_dir), "-p",
                                      str(member.pg_port), "-U", "postgres", "-d", "postgres", "-AtX",
                                      "-v", "ON_ERROR_STOP=1", "-c", sql], 60)
        assert result.returncode == 0, f"{sql}: {result.stderr}"
        return result.stdout.strip()

    def _run_as_server(self, argv: Sequence[str], timeout: float) -> subprocess.CompletedProcess[str]:
        return subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, check=False,
                              cwd=self.root, env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", **self.s3_keys()},
                              **as_user())

    def agent(self, member: Member) -> Agent:
        """The backup agent of ``member`` as the pod runs it (its Patroni, its pgBackRest config, every repository),
        due a full backup whenever the repository holds none newer than Sunday 01:00."""
        layout = self.layout(member)

        def run(command: Sequence[str], timeout: float) -> subprocess.CompletedProcess[str]:
            argv = list(command)
            if argv[0] == "pgbackrest":
                argv.insert(1, f"--config={layout.config_file}")
            return self._run_as_server(argv, timeout)

        return Agent(AgentConfig(stanza=self.backup.stanza, schedules={"full": parse_cron("0 1 * * 0")},
                                 patroni_url=member.api_url, data_dir=str(member.data_dir),
                                 socket_dir=str(member.socket_dir), port=member.pg_port,
                                 repositories=len(repositories(self.backup))), run=run)

    def back_up(self, member: Member, deadline: float = 180.0) -> list[str]:
        """Run ``member``'s agent, a loop a second (the pod's loops a minute), until it has taken a full backup into
        each repository (one per loop, as in the pod), creating the stanza first. A stanza-create can lose to the
        archiver's lock (a promoted cluster retries its first archive-push every few seconds until the stanza
        exists), so this waits as the pod's agent would, next loop. Returns what it ran."""
        agent, ran = self.agent(member), []
        wanted = len(repositories(self.backup))

        def done() -> bool:
            kind = agent.tick(dt.datetime.now(dt.timezone.utc))
            if kind is not None:
                ran.append(kind)
            failures = {k: v for k, v in agent.status.runs.items() if k[1] == "failure" and v}
            assert not failures, f"backups failed: {failures}"
            return len(ran) >= wanted

        wait_until(done, timeout=deadline, interval=1.0, message=f"{member.name}'s agent to back up into {wanted}"
                   " repositories", logs=lambda: f"ran {ran}, repositories {agent.repos}\n{self.diagnostics()}")
        return ran


def prod_and_dr(regions: Regions) -> tuple[ArchivingCluster, ArchivingCluster]:
    """The two sites, not started: prod from ``Pulumi.prod.yaml``, dr from ``Pulumi.dr.yaml`` with prod's
    credentials (its data holds prod's roles), their buckets created."""
    prod_args, dr_args = stack_backup("prod", regions), stack_backup("dr", regions)
    for args in (prod_args, dr_args):
        regions.create_buckets(args)
    prod = ArchivingCluster(rendered_database("prod"), prod_args, regions.s3.ca)
    return prod, ArchivingCluster(rendered_database("dr"), dr_args, regions.s3.ca, credentials_from=prod)


@contextmanager
def sites(names: Sequence[str] = ("eu-west-1", "eu-central-1")) -> Iterator[tuple[Path, Regions]]:
    """A scratch directory (traversable by the servers' OS user) and the regions' S3 endpoints, stopped after."""
    root = Path(tempfile.mkdtemp(prefix="tsk8s-dr-", dir="/tmp"))
    root.chmod(0o755)
    regions = Regions(root, names)
    try:
        yield root, regions
    finally:
        regions.stop()
        subprocess.run(["rm", "-rf", str(root)], check=False)
