"""RPO and RTO of a DR promotion, measured on real processes (the tests/dr sites: Patroni, pgBackRest, S3).

Each round builds prod (``Pulumi.prod.yaml``'s rendered settings, archiving into both regions) and dr
(``Pulumi.dr.yaml``'s, a standby cluster replaying prod's archive), then:

1. a writer commits one row every ``--interval`` seconds on prod, each acknowledged id and time recorded;
2. after ``--write-seconds``, prod is lost: every member SIGKILLed at once, with no final WAL switch;
3. dr replays what reached the archive (until its replay position stops moving for two fetch retries);
4. ``python -m ops promote --source-is-down``'s command promotes dr; the first accepted write ends the RTO.

Reported, per round and as medians: ``rpo_rows`` (acknowledged on prod, absent on dr), ``rpo_seconds`` (from the
newest row dr has to the last acknowledged one), ``rto_seconds`` (from the promotion command to the first write dr
accepts), and ``archive_timeout`` (the bound on RPO this stack renders).

Usage (as root, with Debian's postgresql-15, etcd-server, pgbackrest and openssl installed)::

    .venv/bin/python bench/dr.py [--rounds 2] [--write-seconds 75] [--interval 0.05]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psycopg  # noqa: E402

from components.timescaledb.backup import ARCHIVE_TIMEOUT_S, repositories  # noqa: E402
from tests.dr.sites import ArchivingCluster, prod_and_dr, sites  # noqa: E402
from tests.dr.test_standby_cluster import TABLE, ops_for, replay_seconds  # noqa: E402
from tests.ha.cluster import missing_requirements, wait_until  # noqa: E402

REGIONS = ("eu-west-1", "eu-central-1")


class Writer(threading.Thread):
    """Commits a row every ``interval`` seconds until the server goes away; records (id, unix time) of each ack."""

    def __init__(self, cluster: ArchivingCluster, interval: float) -> None:
        super().__init__(daemon=True)
        self.cluster, self.interval = cluster, interval
        self.acknowledged: list[tuple[int, float]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        leader = self.cluster.wait_for_leader()
        try:
            with self.cluster.connect(leader) as conn:
                row_id = 0
                while not self.stop.is_set():
                    row_id += 1
                    at = conn.execute("INSERT INTO dr_rows (id, site) VALUES (%s, 'prod') RETURNING "
                                      "extract(epoch FROM at)::float", (row_id,)).fetchone()[0]  # type: ignore[index]
                    self.acknowledged.append((row_id, float(at)))
                    time.sleep(self.interval)
        except psycopg.OperationalError:
            return  # prod is gone


def replay_lsn(cluster: ArchivingCluster) -> str:
    return cluster.superuser_sql(cluster.members[0], "SELECT pg_last_wal_replay_lsn()")


def one_round(number: int, write_seconds: float, interval: float) -> dict[str, float]:
    with sites(REGIONS) as (_root, regions):
        prod, dr = prod_and_dr(regions)
        try:
            prod.start_all()
            with prod.connect(prod.wait_for_leader()) as conn:
                conn.execute(TABLE)
            assert prod.back_up(prod.wait_for_leader()) == ["full"] * len(repositories(prod.backup))
            dr.start_all()
            writer = Writer(prod, interval)
            writer.start()
            time.sleep(write_seconds)
            for member in prod.members:
                prod.kill(member)
            writer.stop.set()
            writer.join(30)
            # Let dr replay whatever reached the archive: until its position holds through two fetch retries.
            settle = replay_seconds(dr, dr.members[0]) - 60
            last, steady_since = replay_lsn(dr), time.monotonic()
            while time.monotonic() - steady_since < settle:
                time.sleep(1)
                current = replay_lsn(dr)
                if current != last:
                    last, steady_since = current, time.monotonic()
            with dr.connect(dr.members[0]) as conn:
                present = {row[0]: row[1] for row in conn.execute("SELECT id, extract(epoch FROM at)::float FROM dr_rows")}
            started = time.monotonic()
            ops_for(dr, standby=True).promote(source_is_down=True)
            leader = dr.wait_for_leader(timeout=dr.timing().switchover_seconds(30))

            def accepted() -> bool:
                try:
                    with dr.connect(leader) as conn:
                        conn.execute("INSERT INTO dr_rows (id, site) VALUES (-1, 'dr')")
                    return True
                except (psycopg.errors.ReadOnlySqlTransaction, psycopg.OperationalError):
                    return False

            wait_until(accepted, timeout=dr.timing().switchover_seconds(30), interval=0.05,
                       message="dr to take its first write", logs=dr.diagnostics)
            rto = time.monotonic() - started
        finally:
            for cluster in (dr, prod):
                cluster.stop()
    acknowledged = writer.acknowledged
    lost = [row_id for row_id, _ in acknowledged if row_id not in present]
    newest_kept = max(present.values(), default=acknowledged[0][1])
    result = {"rpo_rows": float(len(lost)), "rpo_seconds": acknowledged[-1][1] - newest_kept, "rto_seconds": rto,
              "acknowledged_rows": float(len(acknowledged))}
    assert all(row_id in present for row_id, _ in acknowledged[: len(acknowledged) - len(lost)]), "a gap, not a tail"
    print(f"round {number}: " + " ".join(f"{k}={v:.1f}" for k, v in result.items()), flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--write-seconds", type=float, default=75.0, help="prod writes this long before it is lost")
    parser.add_argument("--interval", type=float, default=0.05, help="seconds between the writer's commits")
    args = parser.parse_args()
    problem = missing_requirements()
    if problem:
        sys.exit(problem)
    results = [one_round(n, args.write_seconds, args.interval) for n in range(1, args.rounds + 1)]
    summary = {key: statistics.median(r[key] for r in results) for key in results[0]}
    print(" ".join([f"archive_timeout={ARCHIVE_TIMEOUT_S}", f"rounds={len(results)}",
                    *(f"median_{k}={v:.1f}" for k, v in summary.items()),
                    f"max_rpo_seconds={max(r['rpo_seconds'] for r in results):.1f}",
                    f"max_rto_seconds={max(r['rto_seconds'] for r in results):.1f}"]))


if __name__ == "__main__":
    main()
