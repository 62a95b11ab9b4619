"""Late data through the rollup hierarchy: how many runs of the refresh job until every level holds it.

Starts its own throwaway database (TimescaleDB when installed, see benchdb.py; the background scheduler
off, so the jobs run only when called), migrates it with ``--retention 10d`` and 6-hour chunks, writes
current rows and runs every refresh job once (the materialization thresholds are set, as on a running
system). Then, for each batch size N, one statement writes N late rows 6 h apart (a backfill, as the
generator's COPY does) and the refresh job runs (1 m, 1 h, 1 d in order), one run
at a time, until each level equals a direct aggregate of the raw rows. Prints the rounds each level
needed and a last line of key=value pairs; asserts nothing. Plain PostgreSQL has no jobs: it says so.

    python bench/late_data.py [--batches 1,2,8,30] [--flavour auto]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "workloads"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import benchdb  # noqa: E402
from tsflow import schema  # noqa: E402
from tsflow.config import DbConfig, MigrateConfig  # noqa: E402
from tsflow.rollups import LEVELS  # noqa: E402
from tsflow.timescale_sql import REFRESH_PROCEDURE  # noqa: E402

MAX_ROUNDS = 5
WIDTHS = {"metrics_1m": "1 minute", "metrics_1h": "1 hour", "metrics_1d": "1 day"}


def refresh_round(conn: psycopg.Connection) -> None:
    """One run of the ordered refresh job (every level, finest first), as the scheduler makes every minute."""
    row = conn.execute("SELECT job_id FROM timescaledb_information.jobs WHERE proc_name = %s",
                       (REFRESH_PROCEDURE,)).fetchone()
    assert row is not None, REFRESH_PROCEDURE
    conn.execute(f"CALL run_job({row[0]})")


def missing(conn: psycopg.Connection, level: str, device: str) -> int:
    """Buckets of ``device`` where ``level`` differs from a direct aggregate of the raw rows."""
    direct = set(conn.execute(f"SELECT time_bucket('{WIDTHS[level]}', time), count(*) FROM metrics "
                              "WHERE device_id = %s GROUP BY 1", (device,)).fetchall())
    rolled = {(b, int(n)) for b, n in conn.execute(f"SELECT bucket, samples FROM {level} WHERE device_id = %s",
                                                     (device,)).fetchall()}
    return len(direct ^ rolled)


def rounds_until_complete(conn: psycopg.Connection, rows: int) -> dict[str, int | None]:
    """Write ``rows`` late rows in one statement; refresh rounds until each level holds them (None: not in 5)."""
    device = f"late-{rows}"
    conn.execute("INSERT INTO metrics SELECT date_bin('6 hours', now(), TIMESTAMPTZ '2000-01-01') "
                 "- make_interval(hours => 6 * i), %s, 'm', i FROM generate_series(1, %s) i", (device, rows))
    needed: dict[str, int | None] = {level.name: None for level in LEVELS}
    for round_ in range(1, MAX_ROUNDS + 1):
        refresh_round(conn)
        for level in LEVELS:
            if needed[level.name] is None and missing(conn, level.name, device) == 0:
                needed[level.name] = round_
        if all(value is not None for value in needed.values()):
            break
    return needed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", default="1,2,8,30", help="late rows per statement, comma-separated")
    benchdb.add_flavour_option(parser)
    args = parser.parse_args()
    flavour = benchdb.resolve(args.flavour)
    if flavour != "timescaledb":
        raise SystemExit("plain PostgreSQL has no refresh jobs (tsflow_refresh_rollups() recomputes every logged "
                         "range in one call): nothing to measure")
    server = benchdb.server(flavour, {"timescaledb.max_background_workers": "0"}).init().start()
    try:
        dsn = server.dsn()
        with psycopg.connect(dsn, autocommit=True) as conn:
            schema.migrate(conn, MigrateConfig(db=DbConfig(dsn=dsn), chunk_interval=6 * 3600.0,
                                               compress_after=2 * 86400.0, retention=10 * 86400.0))
            version = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'").fetchone()
            print(f"TimescaleDB {version[0] if version else '?'}, {conn.execute('SHOW server_version').fetchone()[0]}")
            conn.execute("INSERT INTO metrics SELECT now() - make_interval(secs => s), 'now', 'm', s "
                         "FROM generate_series(0, 3599, 10) s")
            refresh_round(conn)
            summary = []
            for rows in (int(n) for n in args.batches.split(",")):
                needed = rounds_until_complete(conn, rows)
                print(f"{rows} late rows in one statement: refresh rounds until complete "
                      + ", ".join(f"{name} {value if value is not None else f'>{MAX_ROUNDS}'}"
                                  for name, value in needed.items()))
                summary += [f"rounds_{rows}_{name}={value if value is not None else -1}" for name, value in needed.items()]
            print(" ".join(summary))
    finally:
        server.cleanup()


if __name__ == "__main__":
    main()
