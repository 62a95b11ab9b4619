"""Measure one reconciler run on a real 3-member Patroni cluster: a restart-only parameter change.

    .venv/bin/python bench/reconcile.py [--members 3]

Starts etcd + Patroni + PostgreSQL on loopback (``tests/ha/cluster.py``, from the prod stack's rendered
configuration), keeps a writer committing one row every 20 ms to whichever member is the leader, and
runs the reconciler with ``max_connections`` raised (replicas restarted, then a switchover). Prints the
run's duration, when each step finished, and the longest gap between two committed writes (how long
writes paused). Nothing is asserted: these are figures to report.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import tempfile
import threading
import time
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from components.reconciler.tsreconcile.desired import Desired  # noqa: E402
from components.reconciler.tsreconcile.report import Report  # noqa: E402
from components.reconciler.tsreconcile.run import reconcile  # noqa: E402
from components.timescaledb import patroni_config as pc  # noqa: E402
from tests.ha.cluster import PatroniCluster, rendered_database  # noqa: E402

WRITE_INTERVAL = 0.02


class Writer(threading.Thread):
    """Commits a row every WRITE_INTERVAL to the current leader; records commit times."""

    def __init__(self, cluster: PatroniCluster) -> None:
        super().__init__(daemon=True)
        self.cluster = cluster
        self.commits: list[float] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            leader = self.cluster.leader()
            if leader is None:
                time.sleep(WRITE_INTERVAL)
                continue
            try:
                with psycopg.connect(self.cluster.dsn(leader), autocommit=True) as conn:  # the application role
                    conn.execute("CREATE TABLE IF NOT EXISTS bench_writes (at timestamptz)")
                    while not self.stop.is_set():
                        conn.execute("INSERT INTO bench_writes VALUES (now())")
                        self.commits.append(time.monotonic())
                        time.sleep(WRITE_INTERVAL)
            except psycopg.Error:
                time.sleep(WRITE_INTERVAL)

    def longest_gap(self, start: float, end: float) -> float:
        times = [t for t in self.commits if start <= t <= end]
        return max((b - a for a, b in zip(times, times[1:])), default=float("nan"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--members", type=int, default=3)
    options = parser.parse_args()
    rendered = rendered_database("prod")
    declared = dict(rendered.config["bootstrap"]["dcs"]["postgresql"]["parameters"])
    with PatroniCluster(rendered, members=options.members) as cluster:
        leader = cluster.wait_for_leader()
        database, _ = cluster.application()
        with cluster.connect(leader, user=pc.MONITOR_USER, dbname=database) as conn:
            declared["max_connections"] = str(int(conn.execute("SHOW max_connections").fetchone()[0]) + 10)
        secrets = Path(tempfile.mkdtemp(prefix="bench-reconcile-"))
        (secrets / "restapi").write_text(cluster.passwords["PATRONI_RESTAPI_PASSWORD"])
        (secrets / "settings").write_text(cluster.app_passwords[pc.MONITOR_USER])
        desired = Desired(
            patroni_url=leader.api_url, restapi_user=pc.RESTAPI_USER, restapi_password_file=str(secrets / "restapi"),
            settings_user=pc.MONITOR_USER, settings_password_file=str(secrets / "settings"), settings_database=database,
            dcs_parameters=declared, timeout_seconds=180,
        )
        writer = Writer(cluster)
        writer.start()
        time.sleep(2)
        stream = io.StringIO()
        start = time.monotonic()
        reconcile(desired, Report(stream))
        end = time.monotonic()
        time.sleep(2)
        writer.stop.set()
        writer.join(10)
        steps = [json.loads(line) for line in stream.getvalue().splitlines()]
        print(f"members: {options.members}; reconcile run: {end - start:.1f} s")
        for step in steps:
            if step["event"] == "changed":
                detail = {k: v for k, v in step.items() if k not in ("event", "seconds")}
                print(f"  t={step['seconds']:6.1f} s  {detail}")
        print(f"longest gap between committed writes during the run: {writer.longest_gap(start, end):.2f} s "
              f"({len(writer.commits)} commits, one every {WRITE_INTERVAL * 1000:.0f} ms)")


if __name__ == "__main__":
    main()
