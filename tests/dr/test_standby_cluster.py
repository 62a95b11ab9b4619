"""Disaster recovery end to end with real processes: prod archives to two regions, dr replays, promotes, fails back.

The sites (:mod:`tests.dr.sites`): prod, two Patroni members from ``Pulumi.prod.yaml``'s rendered settings, archives
and backs up through pgBackRest into both of its repositories (eu-west-1 first, eu-central-1 second); dr, two
members from ``Pulumi.dr.yaml``'s, is a standby cluster created from prod's backup in dr's own region and replaying
prod's archive. The tests run in order, each on the state the one before left:

1. rows committed on prod appear on dr's standby leader and its replica, which serve reads;
2. with dr's first repository (its own region's bucket) unreachable from dr, dr keeps replaying from the second;
3. prod is lost (SIGKILL); ``python -m ops promote --source-is-down``'s command makes dr a primary that takes writes
   and archives and backs up only into its own stanza path (/dr), in both regions;
4. the old prod site, rebuilt as a standby cluster of dr (``backup.standby`` from /dr), replays everything dr took;
   a planned switch back (dr drained and fenced, prod promoted) loses no acknowledged row, and prod archives to /prod
   again.

Every wait is derived from the settings it depends on (``wal_retrieve_retry_interval``, Patroni's timing) and prints
the members and logs on timeout.
"""

from __future__ import annotations

import dataclasses
import shutil
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import psycopg
import pytest

from components.timescaledb.backup import (
    FALLBACK_REQUESTS, IO_TIMEOUT_S, BackupArgs, SourceArgs, StandbyArgs, repositories,
)
from ops.cli import Ops
from ops.target import Target
from tests.dr.sites import ArchivingCluster, Regions, prod_and_dr, sites
from tests.ha.cluster import Member, PatroniCluster, missing_requirements, rendered_database, wait_until
from tests.ha.in_pod import InPod

pytestmark = [
    pytest.mark.ha,
    pytest.mark.skipif(missing_requirements() is not None, reason=str(missing_requirements())),
    pytest.mark.skipif(shutil.which("pgbackrest") is None or shutil.which("openssl") is None,
                       reason="needs Debian's pgbackrest and openssl (scripts/test installs them)"),
    pytest.mark.timeout(1200),
]

TABLE = "CREATE TABLE IF NOT EXISTS dr_rows (id bigint PRIMARY KEY, site text NOT NULL, at timestamptz DEFAULT now())"
DR_OWN_REGION, PROD_REGION = "eu-central-1", "eu-west-1"


@dataclass
class Scenario:
    """The sites and what every step acknowledged (the ids a later site must hold)."""

    regions: Regions
    prod_args: BackupArgs
    prod: ArchivingCluster
    dr: ArchivingCluster
    acknowledged: list[int] = field(default_factory=list)
    passed: set[str] = field(default_factory=set)

    def write(self, cluster: PatroniCluster, site: str, count: int) -> None:
        """Commit ``count`` rows, one transaction each, on the cluster's primary; remember each acknowledged id.
        Waits for the primary to take writes (Patroni reports a promoted leader before recovery has ended)."""
        leader = cluster.wait_for_leader(timeout=cluster.timing().switchover_seconds(30))
        wait_until(lambda: _writable(cluster, leader), timeout=cluster.timing().switchover_seconds(30),
                   message=f"{leader.name} to take writes", logs=cluster.diagnostics)
        with cluster.connect(leader) as conn:
            start = max(self.acknowledged, default=0) + 1
            for row_id in range(start, start + count):
                conn.execute("INSERT INTO dr_rows (id, site) VALUES (%s, %s)", (row_id, site))
                self.acknowledged.append(row_id)

    def require(self, *steps: str) -> None:
        missing = [s for s in steps if s not in self.passed]
        if missing:
            pytest.skip(f"needs the earlier step(s) {missing}, which did not pass")


def _writable(cluster: PatroniCluster, member: Member) -> bool:
    try:
        with cluster.connect(member) as conn:
            conn.execute(TABLE)
            return True
    except (psycopg.errors.ReadOnlySqlTransaction, psycopg.OperationalError):
        return False


def ids_on(cluster: PatroniCluster, member: Member) -> set[int]:
    with cluster.connect(member) as conn:
        return {row[0] for row in conn.execute("SELECT id FROM dr_rows")}


def switch_wal(cluster: ArchivingCluster) -> str:
    """Close the current WAL segment on the primary so it is archived now (not at archive_timeout)."""
    return cluster.superuser_sql(cluster.wait_for_leader(), "SELECT pg_switch_wal()")


def replay_seconds(cluster: PatroniCluster, member: Member) -> float:
    """How long a standby takes to see a newly archived segment: the async push, then up to one
    ``wal_retrieve_retry_interval`` before it asks the archive again, several segments in a row, plus a margin for
    a busy machine."""
    with cluster.connect(member) as conn:
        retry = conn.execute(
            "SELECT setting::float / 1000 FROM pg_settings WHERE name = 'wal_retrieve_retry_interval'").fetchone()
    return 6 * float(retry[0]) + 60  # type: ignore[index]


def wait_for_rows(cluster: PatroniCluster, member: Member, expected: list[int], deadline: float, what: str) -> None:
    def holds() -> bool:
        try:
            return set(expected) <= ids_on(cluster, member)
        except psycopg.errors.UndefinedTable:
            return False

    wait_until(holds, timeout=deadline, interval=0.5, message=f"{member.name} to hold {len(expected)} rows ({what})",
               logs=cluster.diagnostics)


def ops_for(cluster: PatroniCluster, *, standby: bool) -> Ops:
    target = Target(stack="dr-test", context="test", namespace="test", members=tuple(m.name for m in cluster.members),
                    stanza="timescaledb", standby=standby)
    return Ops(target, runner=InPod(cluster), out=lambda line: None)


def role(cluster: PatroniCluster, member: Member) -> str:
    return str(cluster.status(member).get("role"))


def archived(regions: Regions, args: BackupArgs, path: str, timeline: int) -> dict[str, int]:
    """WAL segments (and history files) of ``timeline`` under ``path`` in each of ``args``' buckets."""
    prefix = f"{path}/archive/{args.stanza}/"
    tag = f"{timeline:08X}"
    return {repo.bucket: sum(1 for key in regions.keys(repo.bucket, prefix) if key.rsplit("/", 1)[-1].startswith(tag))
            for repo in repositories(args)}


@pytest.fixture(scope="module")
def scenario() -> Iterator[Scenario]:
    with sites((PROD_REGION, DR_OWN_REGION)) as (_root, regions):
        prod, dr = prod_and_dr(regions)
        prod_args = prod.backup
        try:
            with prod.explained():
                prod.start_all()
            state = Scenario(regions=regions, prod_args=prod_args, prod=prod, dr=dr)
            state.write(prod, "prod", 50)
            # The standby is created from a backup: the prod leader's agent takes one into each repository.
            with prod.explained():
                assert prod.back_up(prod.wait_for_leader()) == ["full"] * len(repositories(prod_args))
            with dr.explained():
                dr.start_all()
            yield state
        finally:
            for cluster in (dr, prod):
                cluster.stop()


def test_the_standby_cluster_replays_prods_archive_and_serves_reads(scenario: Scenario) -> None:
    prod, dr = scenario.prod, scenario.dr
    leader, replica = dr.members
    with dr.explained():
        assert role(dr, leader) == "standby_leader" and role(dr, replica) == "replica"
        assert dr.leader() is None  # no member of a standby cluster is writable
        scenario.write(prod, "prod", 100)
        switch_wal(prod)
        for member in (leader, replica):
            wait_for_rows(dr, member, scenario.acknowledged, replay_seconds(dr, member), "replayed from the archive")
    scenario.passed.add("replay")


def test_the_standby_keeps_replaying_when_its_first_repository_is_unreachable(scenario: Scenario) -> None:
    scenario.require("replay")
    prod, dr, gate = scenario.prod, scenario.dr, scenario.regions.gates[("dr", DR_OWN_REGION)]
    assert dr.backup.repository.endpoint == gate.endpoint  # dr's repo1 is its own region's bucket
    gate.close()
    try:
        with dr.explained():
            scenario.write(prod, "prod", 100)
            switch_wal(prod)
            leader = dr.members[0]
            # Each fetch retries the refused repository first (FALLBACK_REQUESTS * IO_TIMEOUT_S); a segment can need
            # two fetch runs (one that started before it was archived), on top of the standby's own wait.
            started = time.monotonic()
            wait_for_rows(dr, leader, scenario.acknowledged,
                          replay_seconds(dr, leader) + 2 * FALLBACK_REQUESTS * IO_TIMEOUT_S,
                          f"replayed from repo2 ({PROD_REGION}) while repo1 ({DR_OWN_REGION}) refuses connections")
            print(f"fallback: rows on the standby {time.monotonic() - started:.1f} s after the switch")
    finally:
        gate.open()
    scenario.passed.add("fallback")


def test_promotion_takes_writes_and_archives_only_into_its_own_stanza_path(scenario: Scenario) -> None:
    scenario.require("replay")
    prod, dr, regions = scenario.prod, scenario.dr, scenario.regions
    with dr.explained():
        switch_wal(prod)
        wait_for_rows(dr, dr.members[0], scenario.acknowledged, replay_seconds(dr, dr.members[0]), "before the loss")
        prod_archive = {repo.bucket: regions.keys(repo.bucket, f"{repo.path}/") for repo in repositories(scenario.prod_args)}
        for member in prod.members:
            prod.kill(member)  # prod is lost: nothing it had not archived reaches dr
        started = time.monotonic()
        ops_for(dr, standby=True).promote(source_is_down=True)
        scenario.write(dr, "dr", 1)
        print(f"promotion: {time.monotonic() - started:.1f} s from the command to the first accepted write")
        assert "standby_cluster" not in dr.dcs_settings()
        dr.wait_for_roles({dr.members[1].name: "replica"}, timeout=dr.timing().switchover_seconds(30))
        scenario.write(dr, "dr", 100)
        # The promoted cluster's agent creates its own stanza (/dr in both regions) and backs up into each.
        assert dr.back_up(dr.wait_for_leader()) == ["full"] * len(repositories(dr.backup))
        switch_wal(dr)
        wait_until(lambda: all(count >= 2 for count in archived(regions, dr.backup, "/dr", 2).values()),
                   timeout=replay_seconds(dr, dr.members[0]), interval=0.5,
                   message="dr's timeline-2 WAL in /dr in both regions", logs=dr.diagnostics)
        # Nothing of dr's went into prod's path: no timeline-2 WAL or history, no backup. (Keys prod's own async
        # archiver pushed after the kill may appear: it runs detached from the killed postmaster here, as it could not
        # in a pod that is gone.)
        for repo in repositories(scenario.prod_args):
            new = regions.keys(repo.bucket, f"{repo.path}/") - prod_archive[repo.bucket]
            of_dr = [key for key in new if key.rsplit("/", 1)[-1].startswith("00000002") or "/backup/" in key]
            assert not of_dr, f"dr wrote into prod's path {repo.bucket}{repo.path}: {sorted(of_dr)}"
        wait_for_rows(dr, dr.members[1], scenario.acknowledged, replay_seconds(dr, dr.members[1]), "streamed")
    scenario.passed.add("promotion")


def test_old_prod_rejoins_as_a_standby_of_dr_and_a_planned_switch_back_loses_nothing(scenario: Scenario) -> None:
    scenario.require("promotion")
    dr, regions = scenario.dr, scenario.regions
    # The old prod site, rebuilt: its data (which may hold writes dr never received) is discarded and it bootstraps
    # as a standby cluster of dr's stanza path, as Pulumi.prod.yaml with backup.standby {fromPath: /dr} renders it.
    scenario.prod.stop()
    rejoin_args = dataclasses.replace(scenario.prod_args, standby=StandbyArgs(source=SourceArgs(stanza="timescaledb", path="/dr")))
    prod = ArchivingCluster(rendered_database("prod"), rejoin_args, regions.s3.ca, credentials_from=scenario.prod)
    scenario.prod = prod
    with prod.explained():
        prod.start_all()
        leader = prod.members[0]
        assert role(prod, leader) == "standby_leader"
        wait_for_rows(prod, leader, scenario.acknowledged, replay_seconds(prod, leader), "dr's writes replayed")
    with dr.explained():
        # Planned switch back: the last writes on dr, its WAL closed and archived, then dr fenced.
        scenario.write(dr, "dr", 100)
        switch_wal(dr)
    with prod.explained():
        wait_for_rows(prod, leader, scenario.acknowledged, replay_seconds(prod, leader), "drained before the switch")
    for member in dr.members:
        dr.kill(member, signal.SIGTERM)
    with prod.explained():
        ops_for(prod, standby=True).promote(source_is_down=True)
        scenario.write(prod, "prod", 10)
        assert ids_on(prod, prod.wait_for_leader()) == set(scenario.acknowledged)
        assert prod.back_up(prod.wait_for_leader()) == ["full"] * len(repositories(rejoin_args))
        switch_wal(prod)
        wait_until(lambda: all(count >= 2 for count in archived(regions, rejoin_args, "/prod", 3).values()),
                   timeout=replay_seconds(prod, leader), interval=0.5,
                   message="prod's timeline-3 WAL in /prod in both regions", logs=prod.diagnostics)
