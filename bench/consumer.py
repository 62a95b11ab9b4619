"""Consumer memory benchmark: peak RSS of one `tsflow consume --once` at 1k, 16k and 100k series.

Starts its own throwaway database (TimescaleDB when installed, see benchdb.py; else plain PostgreSQL),
migrates it, then grows the fleet step by step: each step adds series (4 metrics per device) with one
sample per minute over the last 62 minutes, brings the 1-minute rollup up to date (TimescaleDB:
refresh_continuous_aggregate, as the policy would; plain: the consumer's own refresh), and runs one
analysis in a fresh process with the default one-hour window. The peak RSS is that process's
ru_maxrss (os.wait4), so it covers imports, connections and the whole run.

    python bench/consumer.py [--series 1000,16000,100000] [--flavour auto]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "workloads"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import benchdb  # noqa: E402
from tsflow import schema  # noqa: E402
from tsflow.config import DbConfig, MigrateConfig  # noqa: E402

METRICS_PER_DEVICE = 4
MINUTES = 62  # the one-hour window, the latest minute and one spare

FILL_SQL = """
INSERT INTO metrics (time, device_id, metric, value)
SELECT date_trunc('minute', now()) - make_interval(mins => m) + INTERVAL '30 seconds',
       'dev-' || lpad(d::text, 6, '0'), 'metric_' || k, 20 + 5 * sin(d + m / 7.0) + random()
FROM generate_series(0, %(minutes)s::integer - 1) m, generate_series(%(first)s::integer, %(last)s::integer) d,
     generate_series(0, %(metrics)s::integer - 1) k
"""


def _fill(dsn: str, flavour: str, first_device: int, last_device: int) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(FILL_SQL, {"minutes": MINUTES, "first": first_device, "last": last_device,
                                "metrics": METRICS_PER_DEVICE})
        if flavour == "timescaledb":
            conn.execute("CALL refresh_continuous_aggregate('metrics_1m', now() - INTERVAL '3 hours', "
                         "date_trunc('minute', now()))")
        conn.execute("VACUUM ANALYZE")


def _consume_once(dsn: str) -> tuple[float, float, dict[str, object]]:
    """(peak RSS MiB, wall seconds, the run's 'analysis run done' log line) of one consume --once process."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TSFLOW_", "PG"))}
    env["PYTHONPATH"] = str(ROOT / "workloads")
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-m", "tsflow", "consume", "--once", "--dsn", dsn,
                                 "--metrics-host", "127.0.0.1", "--metrics-port", "0"],
                                env=env, stdout=out, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)  # reaps the child itself: its own rusage, not all children's
        proc.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - started
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(), err.read().decode()
    if proc.returncode != 0:
        raise RuntimeError(f"consume failed ({proc.returncode}): {stderr[-2000:]}")
    done = next(json.loads(line) for line in stdout.splitlines() if '"analysis run done"' in line)
    return usage.ru_maxrss / 1024, wall, done


def main() -> int:
    """Run the benchmark and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--series", default="1000,16000,100000",
                        help="comma-separated series counts, ascending (multiples of 4)")
    benchdb.add_flavour_option(parser)
    args = parser.parse_args()
    steps = [int(s) for s in args.series.split(",")]
    flavour = benchdb.resolve(args.flavour)
    summary: dict[str, object] = {"flavour": flavour}
    with benchdb.server(flavour) as server:
        dsn = server.dsn()
        with psycopg.connect(dsn, autocommit=True) as conn:
            schema.migrate(conn, MigrateConfig(db=DbConfig(dsn=dsn)))
        devices = 0
        for series in steps:
            target = series // METRICS_PER_DEVICE
            started = time.perf_counter()
            _fill(dsn, flavour, devices, target - 1)
            devices = target
            fill_s = time.perf_counter() - started
            rss, wall, done = _consume_once(dsn)
            if done["series"] != series:
                raise RuntimeError(f"expected {series} series, the run saw {done['series']}")
            label = f"{series // 1000}k"
            print(f"{series:>7} series ({done['buckets']} buckets in the window): peak RSS {rss:.1f} MiB, "
                  f"run {wall:.2f} s (data load {fill_s:.0f} s)")
            summary.update({f"peak_rss_mib_{label}": round(rss, 1), f"run_s_{label}": round(wall, 2)})
    print(" ".join(f"{k}={v}" for k, v in summary.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
