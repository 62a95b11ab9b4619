"""The unplanned-failover scenario on a :class:`~tests.ha.cluster.PatroniCluster`, shared by ``tests/ha`` and
``bench/failover.py``.

:func:`fail_over`: commit rows on the leader (each acknowledged), let the streaming replicas replay them,
keep a writer committing until the instant of the kill, SIGKILL the leader's Patroni and PostgreSQL
(nothing restarts them: the worst case, a lost node), time the election of a new leader and the first
write it accepts, wait for the other replicas to stream from it, and check every row. Throughout,
background samplers poll the surviving replicas' readiness endpoints and read from their PostgreSQL.
:func:`rejoin` restarts killed members and times their return as streaming replicas (pg_rewind when
they diverged).
"""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Self

import psycopg

from tests.ha.cluster import ClusterError, Member, PatroniCluster, wait_until

TABLE = "ha_rows"
OLD_READINESS_PATH = "/readiness"
"""Patroni's own readiness endpoint, which needs a live replication stream (sampled for comparison)."""


@dataclass(frozen=True)
class Sample:
    at: float
    member: str
    what: str
    """An HTTP path, or ``"read"`` for a SELECT against the member's PostgreSQL."""
    ok: bool


class _Background:
    """A daemon thread running ``_run`` inside a ``with`` block; ``_stop`` is set on exit."""

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=type(self).__name__, daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        raise NotImplementedError


class Sampler(_Background):
    """Polls readiness paths and a read query on members in a background thread until stopped."""

    def __init__(self, cluster: PatroniCluster, members: Sequence[Member], paths: Sequence[str], *,
                 interval: float = 0.25, timeout: float = 2.0) -> None:
        self.cluster, self.members, self.paths, self.interval = cluster, list(members), list(paths), interval
        self.timeout = timeout
        """Seconds an HTTP check may take (the probe's ``timeoutSeconds``)."""
        self.samples: list[Sample] = []
        super().__init__()

    def _run(self) -> None:
        connections: dict[str, psycopg.Connection[Any]] = {}
        try:
            while not self._stop.is_set():
                for member in self.members:
                    for path in self.paths:
                        status = member.get(path, timeout=self.timeout)[0]
                        self.samples.append(Sample(time.monotonic(), member.name, path, status == 200))
                    self.samples.append(Sample(time.monotonic(), member.name, "read", self._read(member, connections)))
                self._stop.wait(self.interval)
        finally:
            for conn in connections.values():
                conn.close()

    def _read(self, member: Member, connections: dict[str, psycopg.Connection[Any]]) -> bool:
        try:
            conn = connections.get(member.name)
            if conn is None or conn.closed:
                conn = connections[member.name] = psycopg.connect(self.cluster.dsn(member), autocommit=True)
            conn.execute(f"SELECT count(*) FROM {TABLE}").fetchone()
            return True
        except psycopg.Error:
            connections.pop(member.name, None)
            return False

    def failures(self, member: str, what: str) -> int:
        return sum(1 for s in self.samples if s.member == member and s.what == what and not s.ok)

    def count(self, member: str, what: str) -> int:
        return sum(1 for s in self.samples if s.member == member and s.what == what)

    def longest_outage(self, member: str, what: str) -> float:
        """Longest stretch (seconds) between the first and last of consecutive failed samples."""
        longest, start = 0.0, None
        for sample in (s for s in self.samples if s.member == member and s.what == what):
            if not sample.ok:
                start = sample.at if start is None else start
                longest = max(longest, sample.at - start)
            else:
                start = None
        return longest


class Writer(_Background):
    """Commits one row per transaction on a member until it fails or is stopped; remembers acknowledged ids."""

    def __init__(self, cluster: PatroniCluster, member: Member, first_id: int, *, pause: float = 0.02) -> None:
        self.cluster, self.member, self.next_id, self.pause = cluster, member, first_id, pause
        self.acknowledged: list[int] = []
        super().__init__()

    def _run(self) -> None:
        try:
            with self.cluster.connect(self.member) as conn:
                while not self._stop.is_set():
                    conn.execute(f"INSERT INTO {TABLE} (id) VALUES (%s)", (self.next_id,))
                    self.acknowledged.append(self.next_id)
                    self.next_id += 1
                    self._stop.wait(self.pause)
        except psycopg.Error:
            return


@dataclass
class Round:
    """What one kill measured."""

    killed: str
    new_leader: str
    lock_released_after: float
    """Seconds from the SIGKILL to etcd deleting the dead leader's lock (its lease expired; sampled every 0.1 s)."""
    leader_after: float
    """Seconds from the SIGKILL to a new member holding the lock as a writable primary."""
    writable_after: float
    """Seconds from the SIGKILL to the first commit on the new leader."""
    replicated_rows: int
    """Rows committed and replayed by every streaming replica before the kill (all must survive)."""
    missing_replicated: list[int]
    in_flight_acknowledged: int
    """Rows the writer had acknowledged after the replay check, up to the kill (async replication)."""
    missing_in_flight: list[int]
    sampler: Sampler = field(repr=False)
    survivors: list[str] = field(default_factory=list)
    """The replicas that streamed from the killed leader (sampled throughout)."""
    restarted_at: float | None = None
    """When the killed member was started again (``time.monotonic()``), if it was."""
    rejoined_after: float | None = None
    """Seconds from restarting the killed member to it streaming from the leader (set by :func:`rejoin`)."""


def prepare(cluster: PatroniCluster) -> None:
    """The table the rounds write to (created by the application role on the leader)."""
    with cluster.connect(cluster.wait_for_leader()) as conn:
        conn.execute(f"CREATE TABLE IF NOT EXISTS {TABLE} (id bigint PRIMARY KEY, at timestamptz DEFAULT now())")


def commit_rows(cluster: PatroniCluster, leader: Member, ids: Iterable[int]) -> str:
    """Commit each id in its own transaction; return the leader's WAL position afterwards."""
    with cluster.connect(leader) as conn:
        for row_id in ids:
            conn.execute(f"INSERT INTO {TABLE} (id) VALUES (%s)", (row_id,))
        lsn = conn.execute("SELECT pg_current_wal_lsn()::text").fetchone()
    assert lsn is not None
    return str(lsn[0])


def wait_replayed(cluster: PatroniCluster, members: Iterable[Member], lsn: str, timeout: float = 20.0) -> None:
    """Wait until every member's replay position reached ``lsn``."""

    def replayed() -> bool:
        for member in members:
            with cluster.connect(member) as conn:
                row = conn.execute("SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", (lsn,)).fetchone()
                if not row or not row[0]:
                    return False
        return True

    wait_until(replayed, timeout=timeout, interval=0.05, message=f"replicas did not replay {lsn}", logs=cluster.logs)


def first_commit(cluster: PatroniCluster, member: Member, row_id: int, timeout: float) -> None:
    """Retry one INSERT on ``member`` until it commits."""

    def committed() -> bool:
        try:
            with cluster.connect(member) as conn:
                conn.execute(f"INSERT INTO {TABLE} (id) VALUES (%s) ON CONFLICT DO NOTHING", (row_id,))
            return True
        except psycopg.Error:
            return False

    wait_until(committed, timeout=timeout, interval=0.05, message=f"{member.name} accepted no write", logs=cluster.logs)


def present(cluster: PatroniCluster, member: Member, ids: Sequence[int]) -> set[int]:
    with cluster.connect(member) as conn:
        rows = conn.execute(f"SELECT id FROM {TABLE} WHERE id = ANY(%s)", (list(ids),)).fetchall()
    return {int(r[0]) for r in rows}


def lock_released(cluster: PatroniCluster, holder: Member) -> bool:
    """etcd no longer names ``holder`` in the leader key; False while etcd does not answer (a busy machine)."""
    try:
        return cluster.lock_holder() != holder.name
    except ClusterError:
        return False


def streaming_replicas(cluster: PatroniCluster, leader: Member, *, timeout: float, message: str) -> list[Member]:
    """Every running member but ``leader``, once each streams from it (a replica that just followed a new leader
    reconnects in its next HA loop); raises with Patroni's member list and the logs after ``timeout``."""
    def all_streaming() -> list[Member] | None:
        running = [m for m in cluster.members if m is not leader and m.running]
        return running if running and all(cluster.is_streaming_replica(m) for m in running) else None

    return wait_until(all_streaming, timeout=timeout, message=message, logs=cluster.diagnostics)


def fail_over(cluster: PatroniCluster, round_no: int, *, failover_bound: float, readiness_paths: Sequence[str],
              probe_timeout: float = 2.0, rows: int = 50, restart: bool = False, synchronous: bool = False) -> Round:
    """Kill the leader and measure its replacement (see the module docstring); raises past ``failover_bound``.
    With ``restart`` the killed member is started again as soon as the new leader accepted a write; with
    ``synchronous`` the kill waits until a survivor is the synchronous standby."""
    leader = cluster.wait_for_leader()
    survivors = streaming_replicas(cluster, leader, timeout=failover_bound,
                                   message=f"round {round_no}: not every running replica streams from {leader.name}")
    if synchronous:  # Patroni names a synchronous standby in its HA loop after a failover or a rejoin
        wait_until(lambda: any(m.get("role") == "sync_standby" and m.get("name") in {s.name for s in survivors}
                               for m in leader.get("/cluster")[1].get("members", [])),
                   timeout=failover_bound, message=f"round {round_no}: no synchronous standby before the kill")
    base = round_no * 1_000_000
    replicated = list(range(base, base + rows))
    wait_replayed(cluster, survivors, commit_rows(cluster, leader, replicated))
    with Sampler(cluster, survivors, readiness_paths, timeout=probe_timeout) as sampler:
        with Writer(cluster, leader, base + rows) as writer:
            time.sleep(0.5)
            killed_at = time.monotonic()
            cluster.kill(leader)
        wait_until(lambda: lock_released(cluster, leader), timeout=failover_bound + cluster.timing().ttl,
                   message=f"round {round_no}: etcd kept {leader.name}'s leader lock", logs=cluster.diagnostics)
        lock_released_after = time.monotonic() - killed_at
        new_leader = cluster.wait_for_leader(exclude={leader.name}, timeout=failover_bound)
        leader_after = time.monotonic() - killed_at
        first_commit(cluster, new_leader, base + 900_000, timeout=failover_bound)
        writable_after = time.monotonic() - killed_at
        restarted_at = None
        if restart:
            cluster.start(leader)
            restarted_at = time.monotonic()
        followers = {m.name: "replica" for m in survivors if m is not new_leader}
        cluster.wait_for_roles(followers, timeout=failover_bound)  # sampled until they stream again
    in_flight = list(writer.acknowledged)
    return Round(
        killed=leader.name, new_leader=new_leader.name, lock_released_after=lock_released_after,
        leader_after=leader_after, writable_after=writable_after,
        replicated_rows=len(replicated), missing_replicated=sorted(set(replicated) - present(cluster, new_leader, replicated)),
        in_flight_acknowledged=len(in_flight), missing_in_flight=sorted(set(in_flight) - present(cluster, new_leader, in_flight)),
        sampler=sampler, survivors=[m.name for m in survivors], restarted_at=restarted_at,
    )


def rejoin(cluster: PatroniCluster, rounds: Sequence[Round], *, timeout: float) -> None:
    """Start the members these rounds killed (unless already restarted) and wait until each streams from
    the leader; ``timeout`` counts from now."""
    for result in rounds:
        if result.restarted_at is None:
            cluster.start(cluster.member(result.killed))
            result.restarted_at = time.monotonic()
    pending = {r.killed: r for r in rounds}
    deadline = time.monotonic() + timeout
    while pending:
        for name in [n for n in pending if cluster.is_streaming_replica(cluster.member(n))]:
            result = pending.pop(name)
            result.rejoined_after = time.monotonic() - (result.restarted_at or 0.0)
        if pending and time.monotonic() > deadline:
            raise AssertionError(f"{sorted(pending)} did not rejoin as streaming replicas within {timeout:.0f}s\n{cluster.logs()}")
        time.sleep(0.1)


def summary(rounds: Sequence[Round], readiness_path: str) -> str:
    """Median and range of the failover times, and what the read path did, as text."""
    leader = [r.leader_after for r in rounds]
    writable = [r.writable_after for r in rounds]
    released = [r.lock_released_after for r in rounds]
    lines = [
        f"lock released by etcd:    median {statistics.median(released):.1f}s, range {min(released):.1f}-{max(released):.1f}s",
        f"new leader after SIGKILL: median {statistics.median(leader):.1f}s, range {min(leader):.1f}-{max(leader):.1f}s",
        f"first write on it:        median {statistics.median(writable):.1f}s, range {min(writable):.1f}-{max(writable):.1f}s",
        "killed member streaming again after restart: "
        + ", ".join(f"{r.rejoined_after:.1f}s" if r.rejoined_after is not None else "not restarted" for r in rounds),
    ]
    for number, r in enumerate(rounds, 1):
        reads = ", ".join(
            f"{name}: {readiness_path} {r.sampler.failures(name, readiness_path)}/{r.sampler.count(name, readiness_path)} failed "
            f"(longest {r.sampler.longest_outage(name, readiness_path):.1f}s), "
            f"{OLD_READINESS_PATH} {r.sampler.failures(name, OLD_READINESS_PATH)}/{r.sampler.count(name, OLD_READINESS_PATH)} failed "
            f"(longest {r.sampler.longest_outage(name, OLD_READINESS_PATH):.1f}s), "
            f"reads {r.sampler.failures(name, 'read')}/{r.sampler.count(name, 'read')} failed"
            for name in r.survivors
        )
        lines.append(
            f"round {number}: killed {r.killed}, new leader {r.new_leader}; {r.replicated_rows} replicated rows, "
            f"{len(r.missing_replicated)} lost; {r.in_flight_acknowledged} in-flight acknowledged rows, "
            f"{len(r.missing_in_flight)} lost; {reads}"
        )
    return "\n".join(lines)
