"""Real HA: three Patroni 4.1 members and PostgreSQL on loopback, from the prod stack's rendered settings.

Exercised from the rendered ConfigMap and pod env, unchanged: ``bootstrap.dcs`` (ttl, loop_wait,
retry_timeout, maximum_lag_on_failover, use_pg_rewind, use_slots, the DCS-only parameters), initdb and
basebackup options (data checksums, separate WAL directory), authentication and the Patroni env the pod
gets, ``use_unix_socket``/``use_unix_socket_repl``, the pg_hba rules (socket and loopback rules, rejects,
client rules; pod-network replication rules are pointed at the loopback test network), the rewind and
data-directory policies, the post_init bootstrap (roles, database, grants), and the readiness probe's path.
Not exercised: the Kubernetes DCS itself (etcd stands in: no API server here), so the Endpoints that
route the read-write Service, the pod labels and the RBAC are covered by the manifest tests; TimescaleDB
(Debian ships none: left out of shared_preload_libraries); the tuned memory sizes (shared_buffers is
capped so three members fit a CI machine).

Timing figures are printed (``-s``) and recorded as properties; ``bench/failover.py`` reports them
without assertions. The assertions are correctness bounds derived from the rendered configuration.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.ha.cluster import PatroniCluster, RenderedDatabase, missing_requirements, rendered_database
from tests.ha.scenario import OLD_READINESS_PATH, Round, fail_over, prepare, rejoin, summary, wait_replayed

pytestmark = [
    pytest.mark.ha,
    pytest.mark.skipif(missing_requirements() is not None, reason=str(missing_requirements())),
]

REPLICATION_REFUSED = ("pg_hba.conf rejects replication connection", "no pg_hba.conf entry for replication connection")
LOCAL_TIMELINE_FAILURE = "Can not fetch local timeline and lsn from replication connection"


SERVER_NOT_UP = ("server closed the connection unexpectedly", "the database system is starting up",
                 "the database system is shutting down", "Connection refused", "No such file or directory")
"""Causes of a failed local replication check that mean the member's own PostgreSQL was restarting (a killed
member's crash recovery, pg_rewind's restart), not refusing: Patroni retries in its next loop."""


def local_timeline_failures(logs: str) -> list[str]:
    """Every failed local replication check whose cause is not a restarting server, with that cause."""
    lines = logs.splitlines()
    failures = []
    for index, line in enumerate(lines):
        if LOCAL_TIMELINE_FAILURE not in line:
            continue
        cause = next((" ".join(lines[i:i + 3]) for i in range(index + 1, min(index + 60, len(lines)))
                      if "OperationalError:" in lines[i] or "Error:" in lines[i].split(" ", 1)[0]), "no cause logged")
        if not any(phrase in cause for phrase in SERVER_NOT_UP):
            failures.append(f"{line.strip()}: {cause.strip()}")
    return failures


def assert_replication_never_refused(cluster: PatroniCluster) -> None:
    """No pg_hba refusal of a replication connection anywhere, and no local replication check (Patroni reads a
    replica's timeline and LSN over the socket) failing for any reason but its own server restarting."""
    logs = cluster.logs(tail=10**7)
    for message in REPLICATION_REFUSED:
        assert message not in logs, message
    assert local_timeline_failures(logs) == []


@pytest.fixture(scope="module")
def rendered() -> RenderedDatabase:
    return rendered_database("prod")


@pytest.fixture(scope="module")
def cluster(rendered: RenderedDatabase) -> Iterator[PatroniCluster]:
    with PatroniCluster(rendered, members=3, startup_timeout=60) as running:
        prepare(running)
        yield running


def test_the_rendered_failure_detection_is_what_patroni_runs(cluster: PatroniCluster, rendered: RenderedDatabase) -> None:
    dcs = cluster.dcs_settings()
    rendered_dcs = rendered.config["bootstrap"]["dcs"]
    for key in ("ttl", "loop_wait", "retry_timeout", "maximum_lag_on_failover"):
        assert dcs[key] == rendered_dcs[key], key
    assert dcs["loop_wait"] + 2 * dcs["retry_timeout"] <= dcs["ttl"]


def test_replicas_read_their_own_timeline_over_the_local_replication_connection(cluster: PatroniCluster) -> None:
    """Patroni reads a running replica's timeline through a replication connection to its own PostgreSQL
    (``use_unix_socket_repl``: the socket); pg_hba must admit it, or ``timeline`` is null."""
    leader = cluster.wait_for_leader()
    leader_timeline = cluster.status(leader)["timeline"]
    for member in cluster.members:
        if member is not leader:
            status = cluster.status(member)
            assert status["role"] == "replica" and status["replication_state"] == "streaming", status
            assert status.get("timeline") == leader_timeline, status
    assert_replication_never_refused(cluster)


def check_round(number: int, result: Round, rendered: RenderedDatabase, bound: float) -> None:
    assert result.new_leader != result.killed
    # etcd (the stand-in DCS) may revoke an expired lease late on a busy machine; the Kubernetes DCS cannot (the
    # replicas judge the lock's age by their own clocks). Only the time etcd held the lock past ttl is excused:
    # the last renewal came before the kill, so this never excuses Patroni's own election.
    dcs_late = max(0.0, result.lock_released_after - rendered.config["bootstrap"]["dcs"]["ttl"])
    assert result.leader_after - dcs_late <= bound, (
        f"round {number}: new leader after {result.leader_after:.1f}s > {bound}s "
        f"(etcd released the dead leader's lock after {result.lock_released_after:.1f}s)"
    )
    assert result.missing_replicated == [], f"round {number}: committed, replicated rows lost"
    if rendered.config["bootstrap"]["dcs"].get("synchronous_mode"):  # acknowledged means on the sync standby too
        assert result.in_flight_acknowledged > 0, f"round {number}: the writer got nothing acknowledged to check"
        assert result.missing_in_flight == [], f"round {number}: acknowledged commits lost: {result.missing_in_flight}"
    # The kubelet marks a pod NotReady after failureThreshold failed probes in a row, periodSeconds apart.
    not_ready_after = (rendered.readiness_failures - 1) * rendered.readiness_period
    for name in result.survivors:
        sampled = result.sampler.count(name, rendered.readiness_path)
        assert sampled > 10, f"round {number}: {name} sampled {sampled} times"
        outage = result.sampler.longest_outage(name, rendered.readiness_path)
        assert outage < not_ready_after - 0.5, f"round {number}: {name} would have gone NotReady ({outage:.1f}s)"
        assert result.sampler.failures(name, "read") == 0, f"round {number}: reads failed on {name}"
    # Patroni's /readiness (the old probe) needs a live stream: it drops replicas while the leader is dead.
    assert any(result.sampler.failures(name, OLD_READINESS_PATH) for name in result.survivors), (
        "Patroni's /readiness never failed: this scenario would not tell the probes apart"
    )


def check_rejoined(cluster: PatroniCluster, rounds: list[Round]) -> None:
    leader_timeline = cluster.status(cluster.wait_for_leader())["timeline"]
    for result in rounds:
        status = cluster.status(cluster.member(result.killed))
        assert status["role"] == "replica" and status["replication_state"] == "streaming", status
        assert status["timeline"] == leader_timeline, status


@pytest.mark.timeout(240)
def test_sigkilled_leader_is_replaced_without_losing_rows_and_rejoins_while_reads_continue(
    cluster: PatroniCluster, rendered: RenderedDatabase, record_property: pytest.RecordProperty
) -> None:
    """Three kills. The first killed member restarts once a new leader took writes and rejoins before the
    second kill; the second stays down through the third kill (so the third failover has a single
    candidate, as with a member already lost), then both rejoin."""
    dcs = rendered.config["bootstrap"]["dcs"]
    # The dead leader's lock expires at most ttl after the kill; then one election (a loop at most). check_round
    # excuses only the time etcd itself keeps an expired lock.
    bound = dcs["ttl"] + dcs["loop_wait"]

    synchronous = bool(dcs.get("synchronous_mode"))
    assert synchronous, "prod renders synchronous replication: the in-flight check below must apply"

    def round_(number: int, *, restart: bool) -> Round:
        result = fail_over(cluster, number, failover_bound=bound, probe_timeout=2.0, restart=restart,
                           readiness_paths=[rendered.readiness_path, OLD_READINESS_PATH], synchronous=synchronous)
        check_round(number, result, rendered, bound)
        return result

    first = round_(1, restart=True)
    rejoin(cluster, [first], timeout=45)
    check_rejoined(cluster, [first])
    second, third = round_(2, restart=False), round_(3, restart=True)
    rejoin(cluster, [second, third], timeout=45)
    check_rejoined(cluster, [second, third])
    rounds = [first, second, third]
    text = summary(rounds, rendered.readiness_path)
    print("\n" + text)
    record_property("failover", text)

    leader = cluster.wait_for_leader()
    with cluster.connect(leader) as conn:
        conn.execute("INSERT INTO ha_rows (id) VALUES (-1)")
        lsn = conn.execute("SELECT pg_current_wal_lsn()::text").fetchone()
        total = conn.execute("SELECT count(*) FROM ha_rows WHERE id BETWEEN 1000000 AND 3999999").fetchone()
    assert total is not None and total[0] >= sum(r.replicated_rows for r in rounds)
    assert lsn is not None
    wait_replayed(cluster, [m for m in cluster.members if m is not leader], str(lsn[0]))
    assert_replication_never_refused(cluster)


RESTARTING = '''2026-12-07 10:08:49,919 ERROR: Can not fetch local timeline and lsn from replication connection
Traceback (most recent call last):
  File "/site/patroni/postgresql/__init__.py", line 1119, in get_replica_timeline
psycopg.OperationalError: connection failed: connection to server on socket "/run/.s.PGSQL.5432" failed: server closed the connection unexpectedly
	This probably means the server terminated abnormally
2026-12-07 10:08:50,001 INFO: no action. I am (timescaledb-2), a secondary, and following a leader (timescaledb-0)'''


def test_the_log_check_tells_a_restarting_member_from_a_refused_check() -> None:
    assert local_timeline_failures(RESTARTING) == []
    refused = RESTARTING.replace("server closed the connection unexpectedly",
                                 'FATAL:  no pg_hba.conf entry for replication connection from host "[local]"')
    wrong_password = RESTARTING.replace("server closed the connection unexpectedly",
                                        'FATAL:  password authentication failed for user "standby"')
    for log in (refused, wrong_password):
        [failure] = local_timeline_failures(log)
        assert LOCAL_TIMELINE_FAILURE in failure and "FATAL" in failure
    assert local_timeline_failures(RESTARTING.split("\n")[0]) == [RESTARTING.split("\n")[0] + ": no cause logged"]
