"""Ingest through PgBouncer next to direct, in the same run: the tsflow generator end to end.

Starts a throwaway PostgreSQL bootstrapped like the cluster (SCRAM, the rendered post_init with the pooler
lookup role; see bench/pgbouncer.py for what is overridden) and Debian's PgBouncer on the rendered
read-write pgbouncer.ini (transaction mode, pool of 10), then alternates per round: the generator writing
--rows rows directly to PostgreSQL, and the same through PgBouncer (each batch: ledger row + binary COPY
in one transaction). Prints each round, then one ``key=value`` summary line (best and median rows/s).

    python bench/pooler.py [--rows 200000] [--rounds 5] [--batch-rows 20000]
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
for _path in (ROOT, ROOT / "workloads", Path(__file__).resolve().parent):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

import ingest  # noqa: E402  (its generator config, reset, count and timed generator run)
from components.pooler.pgbouncer_ini import PoolSettings  # noqa: E402
from pgbouncer import APP_USER, PgBouncer, dsn, scram_server, superuser_dsn  # noqa: E402
from tsflow import schema  # noqa: E402
from tsflow.config import DbConfig, MigrateConfig  # noqa: E402

import psycopg  # noqa: E402


def main() -> int:
    """Run the benchmark and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batch-rows", type=int, default=20_000)
    parser.add_argument("--pool-size", type=int, default=10)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    server, creds = scram_server()
    bouncer: PgBouncer | None = None
    try:
        direct = dsn(server, server.port, APP_USER, creds.app)
        admin = superuser_dsn(server)  # TRUNCATE + CHECKPOINT between runs (the superuser: socket only)
        with psycopg.connect(direct, autocommit=True) as conn:
            schema.migrate(conn, MigrateConfig(db=DbConfig(dsn=direct)))
        bouncer = PgBouncer(server, creds.lookup, PoolSettings(pool_size=args.pool_size)).start()
        targets = {"direct": direct, "pooled": bouncer.dsn(APP_USER, creds.app)}
        times: dict[str, list[float]] = {name: [] for name in targets}
        for round_no in range(1, args.rounds + 1):
            rates = []
            for name, conninfo in targets.items():
                ingest._reset(admin)
                elapsed = ingest.generator(ingest._config(conninfo, args.rows, args.batch_rows))
                if ingest._count(admin) != args.rows:
                    raise RuntimeError(f"{name}: expected {args.rows} rows")
                times[name].append(elapsed)
                rates.append(f"{name} {args.rows / elapsed:,.0f} rows/s")
            print(f"round {round_no}: " + ", ".join(rates))
        summary = {"rows": args.rows, "rounds": args.rounds, "batch_rows": args.batch_rows, "pool_size": args.pool_size}
        for label, pick in (("best", min), ("median", statistics.median)):
            for name in targets:
                summary[f"{name}_rows_per_s_{label}"] = round(args.rows / pick(times[name]))
            summary[f"pooled_over_direct_{label}"] = round(pick(times["direct"]) / pick(times["pooled"]), 3)
        print("pooler_bench " + " ".join(f"{key}={value}" for key, value in summary.items()))
    finally:
        if bouncer is not None:
            bouncer.cleanup()
        server.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
