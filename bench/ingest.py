"""Ingest benchmark: the tsflow generator end to end vs a bare binary COPY of the same rows.

Starts its own throwaway PostgreSQL, migrates it, then alternates (per round):
  * bare COPY  - the same simulated rows, pre-built in memory, in one binary COPY, one transaction;
  * generator  - `Generator.run` end to end: simulation thread + bounded queue + batches of
                 --batch-rows, each with its ledger row in its own transaction.
Prints rows/s of each (best and median of --rounds) and the ratio generator / bare COPY.

    python bench/ingest.py [--rows 500000] [--rounds 5] [--batch-rows 20000]
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import threading
import time
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "workloads"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from pgserver import PgServer  # noqa: E402
from prometheus_client import CollectorRegistry  # noqa: E402
from tsflow import schema  # noqa: E402
from tsflow.config import DbConfig, GeneratorConfig, HttpConfig, MigrateConfig, SimulationConfig  # noqa: E402
from tsflow.generator import COPY_SQL, COPY_TYPES, Generator  # noqa: E402
from tsflow.http import Health  # noqa: E402
from tsflow.metrics import GeneratorMetrics  # noqa: E402
from tsflow.simulate import Fleet, Row  # noqa: E402

log = logging.getLogger("bench")


def _config(dsn: str, rows: int, batch_rows: int) -> GeneratorConfig:
    return GeneratorConfig(
        db=DbConfig(dsn=dsn, startup_timeout=10), http=HttpConfig("127.0.0.1", 0),
        sim=SimulationConfig(devices=100, metrics_per_device=4, interval=1.0, seed=42),
        generator_id="bench", batch_rows=batch_rows, batch_age=5.0, buffer_batches=GeneratorConfig.buffer_batches,
        max_rows=rows, pace=False, backfill=0.0,
    )


def _reset(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("TRUNCATE metrics, ingest_batches")
        conn.execute("CHECKPOINT")


def _count(dsn: str) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT count(*) FROM metrics").fetchone()
        return int(row[0]) if row else 0


def _rows(cfg: GeneratorConfig) -> list[Row]:
    fleet = Fleet(cfg.sim, cfg.generator_id, time.time())
    out: list[Row] = []
    tick = 0
    while len(out) < cfg.max_rows:
        out.extend(fleet.tick(tick))
        tick += 1
    return out[: cfg.max_rows]


def bare_copy(dsn: str, rows: list[Row]) -> float:
    """Seconds for one binary COPY of `rows` in one transaction."""
    with psycopg.connect(dsn) as conn:
        started = time.perf_counter()
        with conn.cursor() as cur, cur.copy(COPY_SQL) as copy:
            copy.set_types(COPY_TYPES)
            for row in rows:
                copy.write_row(row)
        conn.commit()
        return time.perf_counter() - started


def generator(cfg: GeneratorConfig) -> float:
    """Seconds for the generator to simulate and commit cfg.max_rows rows."""
    gen = Generator(cfg, GeneratorMetrics(CollectorRegistry()), Health())
    started = time.perf_counter()
    result = gen.run(threading.Event())
    elapsed = time.perf_counter() - started
    if result.rows_written != cfg.max_rows:
        raise RuntimeError(f"generator wrote {result.rows_written} rows, expected {cfg.max_rows}")
    return elapsed


def main() -> int:
    """Run the benchmark and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=500_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batch-rows", type=int, default=GeneratorConfig.batch_rows)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    with PgServer() as server:
        dsn = server.dsn()
        with psycopg.connect(dsn, autocommit=True) as conn:
            schema.migrate(conn, MigrateConfig(db=DbConfig(dsn=dsn)))
        cfg = _config(dsn, args.rows, args.batch_rows)
        rows = _rows(cfg)
        copy_times: list[float] = []
        gen_times: list[float] = []
        for round_no in range(1, args.rounds + 1):
            _reset(dsn)
            t_copy = bare_copy(dsn, rows)
            assert _count(dsn) == args.rows
            _reset(dsn)
            t_gen = generator(cfg)
            assert _count(dsn) == args.rows
            copy_times.append(t_copy)
            gen_times.append(t_gen)
            print(f"round {round_no}: bare COPY {args.rows / t_copy:,.0f} rows/s, "
                  f"generator {args.rows / t_gen:,.0f} rows/s")
        print(f"rows per run: {args.rows:,}  batch rows: {args.batch_rows:,}  rounds: {args.rounds}")
        for label, pick in (("best", min), ("median", statistics.median)):
            copy_rate, gen_rate = args.rows / pick(copy_times), args.rows / pick(gen_times)
            print(f"{label:>6}: bare binary COPY {copy_rate:,.0f} rows/s | tsflow generator {gen_rate:,.0f} rows/s"
                  f" | ratio {gen_rate / copy_rate:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
