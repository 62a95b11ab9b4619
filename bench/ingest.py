"""Ingest benchmark: the tsflow generator end to end vs a bare binary COPY of the same rows.

Starts its own throwaway database (TimescaleDB when installed, see benchdb.py, its job scheduler off; else
plain PostgreSQL; its data on tmpfs /dev/shm when there is one, so disk writeback does not decide which
contender a round favours), migrates it, then alternates (per round):
  * bare COPY    - the same simulated rows, pre-built in memory as tuples, written with the driver's
                   binary write_row in one COPY, one transaction (the issue's "bare binary COPY");
  * encoded COPY - the same rows pre-encoded in memory, one binary COPY of bytes, one transaction: no
                   client work at all, the server-bound ceiling;
  * generator    - `Generator.run` end to end: simulation thread + bounded queue + batches of
                   --batch-rows, each with its ledger row and lease renewal in its own transaction.
Each round starts with the next contender in turn. Prints rows/s of each (best and median of --rounds), the
ratios, and a last line of key=value pairs
(`ratio` = median generator / median bare COPY; `ratio_vs_encoded` against the ceiling).
--profile FILE writes a cProfile of one extra generator run (writer and producer threads) to FILE.

    python bench/ingest.py [--rows 500000] [--rounds 5] [--batch-rows 20000] [--flavour auto] [--profile F]
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import threading
import time
from functools import partial
from pathlib import Path
from typing import Any, Callable

import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "workloads"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import benchdb  # noqa: E402
from prometheus_client import CollectorRegistry  # noqa: E402
from tsflow import schema  # noqa: E402
from tsflow.config import DbConfig, GeneratorConfig, HttpConfig, MigrateConfig, SimulationConfig  # noqa: E402
from tsflow.generator import COPY_SQL, Batch, Generator, Producer  # noqa: E402
from tsflow.http import Health  # noqa: E402
from tsflow.metrics import GeneratorMetrics  # noqa: E402
from tsflow.simulate import Fleet, Row  # noqa: E402

log = logging.getLogger("bench")
COPY_TYPES = ("timestamptz", "text", "text", "float8")


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
        conn.execute("UPDATE generator_leases SET expires_at = now()")
        conn.execute("CHECKPOINT")


def _count(dsn: str) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT count(*) FROM metrics").fetchone()
        return int(row[0]) if row else 0


def _rows(cfg: GeneratorConfig, encoded: bool = False) -> list[Any]:
    """cfg.max_rows simulated rows: tuples, or binary COPY rows with `encoded`."""
    fleet = Fleet(cfg.sim, cfg.generator_id, time.time())
    tick_rows = fleet.tick_copy if encoded else fleet.tick
    out: list[Any] = []
    tick = 0
    while len(out) < cfg.max_rows:
        out.extend(tick_rows(tick))
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


def encoded_copy(dsn: str, payload: bytes) -> float:
    """Seconds for one binary COPY of a pre-encoded stream in one transaction."""
    with psycopg.connect(dsn) as conn:
        started = time.perf_counter()
        with conn.cursor() as cur, cur.copy(COPY_SQL) as copy:
            copy.write(payload)
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


def profile(cfg: GeneratorConfig, path: str) -> None:
    """cProfile of one generator run: the writer (calling thread) into `path`, the producer into `path`.producer."""
    import cProfile
    import pstats

    original = Producer._run

    def profiled(self: Producer) -> None:
        prof = cProfile.Profile()
        prof.enable()
        try:
            original(self)
        finally:
            prof.disable()
            prof.dump_stats(f"{path}.producer")

    Producer._run = profiled  # type: ignore[method-assign]
    try:
        writer = cProfile.Profile()
        writer.enable()
        generator(cfg)
        writer.disable()
        writer.dump_stats(path)
    finally:
        Producer._run = original  # type: ignore[method-assign]
    for label, stats_path in (("writer (main thread)", path), ("producer thread", f"{path}.producer")):
        print(f"--- {label}: top 10 by own time")
        pstats.Stats(stats_path).sort_stats("tottime").print_stats(10)


def main() -> int:
    """Run the benchmark and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=500_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batch-rows", type=int, default=GeneratorConfig.batch_rows)
    parser.add_argument("--profile", metavar="FILE", help="also profile one generator run into FILE")
    benchdb.add_flavour_option(parser)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    flavour = benchdb.resolve(args.flavour)

    # The job scheduler off: a refresh job run (every minute, over the rows just written) would land in one
    # contender's round and not the next one's.
    quiet = {"timescaledb.max_background_workers": "0"} if flavour == "timescaledb" else None
    memory = Path("/dev/shm")  # tmpfs: the disk's writeback stalls made rounds differ by a third (0.67-1.34)
    with benchdb.server(flavour, quiet, base_dir=memory if memory.is_dir() else None) as server:
        dsn = server.dsn()
        with psycopg.connect(dsn, autocommit=True) as conn:
            schema.migrate(conn, MigrateConfig(db=DbConfig(dsn=dsn)))
        cfg = _config(dsn, args.rows, args.batch_rows)
        contenders: dict[str, Callable[[], float]] = {
            "copy": partial(bare_copy, dsn, _rows(cfg)),
            "encoded": partial(encoded_copy, dsn, Batch.of("bench", 0, _rows(cfg, encoded=True)).payload),
            "generator": partial(generator, cfg),
        }
        times: dict[str, list[float]] = {name: [] for name in contenders}
        names = list(contenders)
        for round_no in range(1, args.rounds + 1):
            # Each round starts with the next contender: whatever the first run after a round's start meets
            # (a cold cache, the previous round's leftovers) falls on each in turn.
            shift = (round_no - 1) % len(names)
            for name in names[shift:] + names[:shift]:
                _reset(dsn)
                times[name].append(contenders[name]())
                assert _count(dsn) == args.rows
            print(f"round {round_no}: " + ", ".join(f"{name} {args.rows / t[-1]:,.0f} rows/s"
                                                    for name, t in times.items()))
        if args.profile:
            _reset(dsn)
            profile(cfg, args.profile)
        print(f"flavour: {flavour}  rows per run: {args.rows:,}  batch rows: {args.batch_rows:,}  "
              f"rounds: {args.rounds}")
        summary: dict[str, object] = {"flavour": flavour, "rows": args.rows, "rounds": args.rounds}
        for label, pick in (("best", min), ("median", statistics.median)):
            rates = {name: args.rows / pick(t) for name, t in times.items()}
            print(f"{label:>6}: bare binary COPY {rates['copy']:,.0f} rows/s | encoded COPY {rates['encoded']:,.0f} "
                  f"rows/s | tsflow generator {rates['generator']:,.0f} rows/s | ratio "
                  f"{rates['generator'] / rates['copy']:.2f}")
            summary.update({f"{label}_{name}_rows_s": round(rate) for name, rate in rates.items()})
        median = {name: statistics.median(t) for name, t in times.items()}
        per_round = [c / g for c, g in zip(times["copy"], times["generator"])]  # back-to-back pairs
        summary.update({"ratio": round(median["copy"] / median["generator"], 3),
                        "ratio_rounds_median": round(statistics.median(per_round), 3),
                        "ratio_rounds_min": round(min(per_round), 3), "ratio_rounds_max": round(max(per_round), 3),
                        "ratio_vs_encoded": round(median["encoded"] / median["generator"], 3)})
        print(" ".join(f"{k}={v}" for k, v in summary.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
