"""Failover times of the rendered prod database on a real Patroni cluster (tests/ha harness), as figures.

Two kinds of unplanned primary loss, SIGKILL of the leader's Patroni and PostgreSQL each time:

* ``lost``: nothing restarts the killed member until a new leader took writes (a lost node; the
  worst case): the new leader is elected once the dead leader's lock expires (ttl).
* ``restarted``: the killed member is started again at once, as the kubelet restarts a container
  whose processes died: Patroni finds its own lock still valid and recovers the primary in place.

Usage (as root, with Debian's postgresql-15 and etcd-server installed)::

    .venv/bin/python bench/failover.py [--kills 3] [--stack prod]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.ha.cluster import PatroniCluster, missing_requirements, rendered_database  # noqa: E402
from tests.ha.scenario import OLD_READINESS_PATH, fail_over, first_commit, prepare, rejoin, summary  # noqa: E402


def lost_member_kills(cluster: PatroniCluster, kills: int, readiness_path: str, bound: float) -> str:
    rounds = []
    for number in range(1, kills + 1):
        result = fail_over(cluster, number, failover_bound=bound, readiness_paths=[readiness_path, OLD_READINESS_PATH],
                           restart=True, synchronous=bool(cluster.rendered.config["bootstrap"]["dcs"].get("synchronous_mode")))
        rejoin(cluster, [result], timeout=90)
        rounds.append(result)
    return summary(rounds, readiness_path)


def restarted_member_kills(cluster: PatroniCluster, kills: int, bound: float) -> str:
    """Kill the leader and start it again immediately; time until the cluster takes writes again."""
    times, same = [], 0
    for number in range(1, kills + 1):
        leader = cluster.wait_for_leader()
        killed_at = time.monotonic()
        cluster.kill(leader)
        cluster.start(leader)
        new_leader = cluster.wait_for_leader(timeout=bound + 30)
        first_commit(cluster, new_leader, 10_000_000 + number, timeout=bound)
        times.append(time.monotonic() - killed_at)
        same += new_leader is leader
        cluster.wait_for_roles({m.name: "replica" for m in cluster.members if m is not new_leader}, timeout=90)
    return (f"writable again after SIGKILL + immediate restart: median {statistics.median(times):.1f}s, "
            f"range {min(times):.1f}-{max(times):.1f}s; the killed member stayed leader in {same}/{kills}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kills", type=int, default=3)
    parser.add_argument("--stack", default="prod")
    args = parser.parse_args()
    problem = missing_requirements()
    if problem:
        sys.exit(problem)
    rendered = rendered_database(args.stack)
    dcs = rendered.config["bootstrap"]["dcs"]
    bound = dcs["ttl"] + dcs["loop_wait"]
    print(f"stack {args.stack}: ttl {dcs['ttl']}s, loop_wait {dcs['loop_wait']}s, retry_timeout {dcs['retry_timeout']}s")
    with PatroniCluster(rendered, members=3) as cluster:
        prepare(cluster)
        print("lost member (no restart until a new leader took writes):")
        print(lost_member_kills(cluster, args.kills, rendered.readiness_path, bound))
        print("restarted member (kubelet-style restart right after the kill):")
        print(restarted_member_kills(cluster, args.kills, bound))


if __name__ == "__main__":
    main()
