"""Dashboard benchmark: every SQL query of the analysis dashboard at 3 h, 24 h, 7 d and 30 d over 10M rows.

Starts its own throwaway database (TimescaleDB when installed, see benchdb.py, with the parameters the prod
stack's database pod gets; else plain PostgreSQL), migrates it, loads --rows raw samples spread evenly over
the last 30 days (--devices x 4 metrics), brings every rollup up to date (TimescaleDB:
refresh_continuous_aggregate per level, finest first, as the refresh job does; plain:
tsflow_refresh_rollups()), plants anomalies, then runs each query --runs times per range with Grafana's
macros expanded as Grafana would (bench/grafana_sql.py: the auto interval for the panels' maxDataPoints).
Three variable selections: `one` (1 device, 1 metric), `few` (4 devices, all metrics: 16 series) and `all`
(every device and metric, the variables' All option). Prints p50/p95 and the rows returned per query, range
and selection, and a last line of key=value pairs with the worst query's p50/p95 and the most rows any query
returned, per range and selection.

    python bench/dashboards.py [--rows 10000000] [--devices 100] [--runs 15] [--flavour auto]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "workloads"))
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import benchdb  # noqa: E402
from grafana_sql import expand, grafana_interval  # noqa: E402
from components.monitoring.dashboards import timeseries_analysis as ta  # noqa: E402
from components.timescaledb.tuning import TuneInput, tune  # noqa: E402
from tsflow import schema  # noqa: E402
from tsflow.config import DbConfig, MigrateConfig  # noqa: E402
from tsflow.timescale_sql import REFRESH_PROCEDURE  # noqa: E402

RANGES = {"3h": timedelta(hours=3), "24h": timedelta(hours=24), "7d": timedelta(days=7), "30d": timedelta(days=30)}
METRICS = 4
SPAN = timedelta(days=30)
QUERIES = {name: getattr(ta, name) for name in (
    "WEIGHTED_AVERAGE", "ENVELOPE", "SAMPLES", "ANOMALY_RATE", "ANOMALY_COUNT", "NEWEST_BUCKET_AGE",
    "RECENT_ANOMALIES", "DEVICES", "METRICS")}

LOAD_SQL = """
INSERT INTO metrics (time, device_id, metric, value)
SELECT now() - make_interval(secs => (i * %(step)s)::double precision + d),
       'dev-' || lpad(d::text, 4, '0'), 'metric_' || k, 20 + 5 * sin(i / 50.0 + d) + random()
FROM generate_series(0, %(per_series)s::integer - 1) i, generate_series(%(first)s::integer, %(last)s::integer) d,
     generate_series(0, %(metrics)s::integer - 1) k
"""


def _schedule_refresh_jobs(conn: psycopg.Connection, on: bool) -> None:
    conn.execute("SELECT alter_job(job_id, scheduled => %s) FROM timescaledb_information.jobs "
                 "WHERE proc_name = %s", (on, REFRESH_PROCEDURE))


def _load(dsn: str, flavour: str, rows: int, devices: int) -> None:
    per_series = rows // (devices * METRICS)
    step = SPAN.total_seconds() / per_series
    with psycopg.connect(dsn, autocommit=True) as conn:
        if flavour == "timescaledb":  # the policies would race the manual refreshes below (and fail them)
            _schedule_refresh_jobs(conn, False)
        for first in range(0, devices, 10):  # in slices: bounded transactions and WAL
            conn.execute(LOAD_SQL, {"step": step, "per_series": per_series, "first": first,
                                    "last": min(first + 10, devices) - 1, "metrics": METRICS})
        conn.execute("INSERT INTO anomalies (time, device_id, metric, value, zscore) "
                     "SELECT now() - make_interval(mins => i), 'dev-' || lpad((i %% %s)::text, 4, '0'), "
                     "'metric_' || (i %% 4), 99, 5 FROM generate_series(1, 40000) i", (devices,))
        if flavour == "timescaledb":
            for rollup in ta.ROLLUPS:
                conn.execute(f"CALL refresh_continuous_aggregate('{rollup[0]}', NULL, now() - INTERVAL '1 minute')")
            _schedule_refresh_jobs(conn, True)
        else:
            conn.execute("SELECT tsflow_refresh_rollups()")
        conn.execute("VACUUM ANALYZE")


def _time(conn: psycopg.Connection, sql: str, runs: int) -> tuple[list[float], int]:
    """Milliseconds of each of `runs` executions (after a warm-up), and the rows the query returned."""
    returned = len(conn.execute(sql).fetchall())  # warm-up: plan and cache
    out = []
    for _ in range(runs):
        started = time.perf_counter()
        conn.execute(sql).fetchall()
        out.append((time.perf_counter() - started) * 1000)
    return out, returned


def prod_tuning() -> dict[str, str]:
    """The parameters the component renders for the prod stack's database pod (2 CPUs, 8 GiB, a 50 GiB WAL disk):
    the planner's costs (random_page_cost 1.1, effective_cache_size) decide which index a panel query uses."""
    return tune(TuneInput(memory_bytes=8 * 2**30, cpus=2, wal_disk_bytes=50 * 2**30))


def _p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20, method="inclusive")[-1]


def main() -> int:
    """Run the benchmark and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--devices", type=int, default=100)
    parser.add_argument("--runs", type=int, default=15)
    benchdb.add_flavour_option(parser)
    args = parser.parse_args()
    flavour = benchdb.resolve(args.flavour)
    summary: dict[str, object] = {"flavour": flavour, "rows": args.rows}
    all_devices = [f"dev-{d:04d}" for d in range(args.devices)]
    metrics = [f"metric_{k}" for k in range(METRICS)]
    selections = {"one": (all_devices[:1], metrics[:1]), "few": (all_devices[:4], metrics), "all": (all_devices, metrics)}
    with benchdb.server(flavour, prod_tuning() if flavour == "timescaledb" else None) as server:
        dsn = server.dsn()
        with psycopg.connect(dsn, autocommit=True) as conn:
            schema.migrate(conn, MigrateConfig(db=DbConfig(dsn=dsn)))
        started = time.perf_counter()
        _load(dsn, flavour, args.rows, args.devices)
        with psycopg.connect(dsn) as conn:
            counts = {r: conn.execute(f"SELECT count(*) FROM {r}").fetchone()[0]  # type: ignore[index]
                      for r in ("metrics", *(name for name, _ in ta.ROLLUPS))}
        print(f"flavour {flavour}; loaded in {time.perf_counter() - started:.0f} s: "
              + ", ".join(f"{k} {v:,} rows" for k, v in counts.items()))
        now = datetime.now(timezone.utc)
        with psycopg.connect(dsn, autocommit=True) as conn:
            for sel_name, (devices, mets) in selections.items():
                for range_name, range_ in RANGES.items():
                    interval = grafana_interval(range_, ta.MAX_DATA_POINTS)
                    worst50 = worst95 = 0.0
                    most_rows = 0
                    for q_name, query in QUERIES.items():
                        timings, returned = _time(conn, expand(query, now, range_, interval, devices, mets), args.runs)
                        p50, p95 = statistics.median(timings), _p95(timings)
                        worst50, worst95, most_rows = max(worst50, p50), max(worst95, p95), max(most_rows, returned)
                        print(f"{sel_name:>4} {range_name:>4} {q_name:<18} p50 {p50:8.2f} ms  p95 {p95:8.2f} ms  "
                              f"rows {returned:>6}")
                    summary[f"p50_ms_{range_name}_{sel_name}"] = round(worst50, 1)
                    summary[f"p95_ms_{range_name}_{sel_name}"] = round(worst95, 1)
                    summary[f"rows_{range_name}_{sel_name}"] = most_rows
    print(" ".join(f"{k}={v}" for k, v in summary.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
