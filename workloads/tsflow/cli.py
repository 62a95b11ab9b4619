"""Command line: `tsflow migrate|generate|consume`; every option can also come from TSFLOW_<OPTION>."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from types import FrameType
from typing import Any, Callable, NoReturn, Sequence

from prometheus_client import CollectorRegistry

from . import __version__, db, identity, schema
from .rollups import MIN_RETENTION_S
from .config import (
    SHAPES, ConsumerConfig, DbConfig, GeneratorConfig, HttpConfig, MigrateConfig, SimulationConfig,
    boolean, duration, env_name, identifier, log_level, non_negative_float, non_negative_int,
    port, positive_duration, positive_float, positive_int, probability, shape,
)
from .http import Health, ProbeServer
from .logs import setup_logging
from .metrics import ConsumerMetrics, GeneratorMetrics

log = logging.getLogger("tsflow.cli")

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2


class UsageError(Exception):
    """Bad command line or environment value."""


class _Parser(argparse.ArgumentParser):
    """argparse that reports errors as one line instead of usage + message."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def _opt(p: argparse.ArgumentParser, flag: str, conv: Callable[[str], Any], default: Any, help_: str,
         **kw: Any) -> None:
    """Add `flag` whose default comes from TSFLOW_<FLAG> when set (parsed by the same converter)."""
    env = env_name(flag)
    raw = os.environ.get(env)
    if raw is not None:
        try:
            default = conv(raw)
        except (argparse.ArgumentTypeError, ValueError) as exc:
            raise UsageError(f"{env}: {exc}") from None
    p.add_argument(flag, type=conv, default=default, help=f"{help_} [env {env}, default: %(default)s]", **kw)


def _flag(p: argparse.ArgumentParser, flag: str, default: bool, help_: str) -> None:
    env = env_name(flag)
    raw = os.environ.get(env)
    if raw is not None:
        try:
            default = boolean(raw)
        except argparse.ArgumentTypeError as exc:
            raise UsageError(f"{env}: {exc}") from None
    p.add_argument(flag, action=argparse.BooleanOptionalAction, default=default,
                   help=f"{help_} [env {env}, default: %(default)s]")


def _common(p: argparse.ArgumentParser) -> None:
    _opt(p, "--dsn", str, "", "libpq conninfo/URI of the primary; empty: PGHOST, PGPORT, PGDATABASE, "
         "PGUSER, PGPASSWORD, PGSSLMODE")
    _opt(p, "--connect-timeout", positive_duration, 5.0, "seconds to wait for one connection attempt")
    _opt(p, "--startup-timeout", duration, 60.0, "seconds to keep retrying the first connection")
    _opt(p, "--max-backoff", positive_duration, 30.0, "cap of the reconnect backoff, seconds")
    _opt(p, "--log-level", log_level, "INFO", "DEBUG, INFO, WARNING or ERROR")


def _http(p: argparse.ArgumentParser) -> None:
    _opt(p, "--metrics-host", str, "0.0.0.0", "address for /metrics, /healthz, /readyz")
    _opt(p, "--metrics-port", port, 8000, "port for /metrics, /healthz, /readyz (0: any free port)")


def build_parser() -> argparse.ArgumentParser:
    """The full parser (raises UsageError for bad TSFLOW_* values)."""
    parser = _Parser(prog="tsflow", description=__doc__)
    parser.add_argument("--version", action="version", version=f"tsflow {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    m = sub.add_parser("migrate", help="create or upgrade the schema (safe to run concurrently)")
    _common(m)
    _opt(m, "--chunk-interval", positive_duration, 86400.0, "hypertable chunk interval, seconds or 1d/6h")
    _opt(m, "--compress-after", positive_duration, 7 * 86400.0, "compress chunks older than this")
    _opt(m, "--retention", positive_duration, 30 * 86400.0, "drop raw data older than this")

    g = sub.add_parser("generate", help="simulate devices and ingest their samples exactly once")
    _common(g)
    _http(g)
    _opt(g, "--generator-id", identifier, identity.AUTO, "identity of this generator, leased in the database; "
         "auto: the lowest free gen-<n>, so restarts reuse identities and series")
    _opt(g, "--lease-ttl", positive_duration, GeneratorConfig.lease_ttl,
         "seconds the identity lease outlives the last write (a crashed pod's identity frees after this)")
    _opt(g, "--devices", positive_int, 10, "number of simulated devices")
    _opt(g, "--metrics-per-device", positive_int, 3, "metrics per device")
    _opt(g, "--interval", positive_duration, 1.0, "seconds between two samples of a series")
    _opt(g, "--shape", shape, "mixed", f"value shape: {', '.join(SHAPES)}")
    _opt(g, "--noise", non_negative_float, 0.5, "standard deviation of the noise")
    _opt(g, "--spike-probability", probability, 0.001, "chance that a sample is a spike")
    _opt(g, "--spike-magnitude", non_negative_float, 8.0, "spike size in multiples of the amplitude")
    _opt(g, "--seed", int, None, "random seed (default: derived from the generator id)")
    _opt(g, "--batch-rows", positive_int, GeneratorConfig.batch_rows, "flush a batch at this many rows")
    _opt(g, "--batch-age", positive_duration, 1.0, "flush a batch at this age, seconds")
    _opt(g, "--buffer-batches", positive_int, GeneratorConfig.buffer_batches,
         "batches buffered while the database is away (memory: about 60 B x batch-rows x this)")
    _opt(g, "--max-rows", non_negative_int, 0, "stop after this many rows (0: run until signalled)")
    _flag(g, "--pace", True, "emit samples in real time (--no-pace: as fast as possible)")
    _opt(g, "--backfill", duration, 0.0, "start this many seconds in the past")
    _opt(g, "--shutdown-timeout", positive_duration, 25.0, "seconds to flush after SIGTERM")
    _opt(g, "--ledger-retention", positive_duration, GeneratorConfig.ledger_retention,
         "forget this generator's ledger rows older than this (retries happen within minutes)")

    c = sub.add_parser("consume", help="detect anomalies in the 1-minute rollup")
    _common(c)
    _http(c)
    _opt(c, "--read-dsn", str, "", "conninfo for reads (e.g. 'host=db-ro'), merged with PG* variables; "
         "empty: the primary")
    _opt(c, "--interval", positive_duration, 30.0, "seconds between analysis runs")
    _opt(c, "--window", positive_duration, 3600.0, "trailing baseline window, seconds")
    _opt(c, "--threshold", positive_float, 4.0, "|z-score| at or above which a minute is an anomaly")
    _opt(c, "--min-samples", positive_int, 10, "minimum baseline minutes before judging a series")
    _flag(c, "--once", False, "run one analysis and exit (status 1 if it failed)")
    return parser


def _db(ns: argparse.Namespace) -> DbConfig:
    db.check_password_file()
    return DbConfig(dsn=db.check_dsn(ns.dsn, "--dsn/TSFLOW_DSN"), connect_timeout=ns.connect_timeout,
                    startup_timeout=ns.startup_timeout, max_backoff=ns.max_backoff)


def to_migrate_config(ns: argparse.Namespace) -> MigrateConfig:
    """Namespace -> MigrateConfig."""
    if ns.compress_after >= ns.retention:
        raise UsageError(f"--compress-after ({ns.compress_after:g}s) must be < --retention ({ns.retention:g}s)")
    if ns.retention < MIN_RETENTION_S:
        raise UsageError(
            f"--retention ({ns.retention:g}s) must be >= {MIN_RETENTION_S}s (3d): the rollups refresh over the "
            "raw retention, and the daily rollup needs two days past its 1-day end offset"
        )
    return MigrateConfig(db=_db(ns), chunk_interval=ns.chunk_interval, compress_after=ns.compress_after,
                         retention=ns.retention)


def to_generator_config(ns: argparse.Namespace) -> GeneratorConfig:
    """Namespace -> GeneratorConfig."""
    sim = SimulationConfig(devices=ns.devices, metrics_per_device=ns.metrics_per_device, interval=ns.interval,
                           shape=ns.shape, noise=ns.noise, spike_probability=ns.spike_probability,
                           spike_magnitude=ns.spike_magnitude, seed=ns.seed)
    return GeneratorConfig(db=_db(ns), http=HttpConfig(ns.metrics_host, ns.metrics_port), sim=sim,
                           generator_id=ns.generator_id, batch_rows=ns.batch_rows, batch_age=ns.batch_age,
                           buffer_batches=ns.buffer_batches, max_rows=ns.max_rows, pace=ns.pace,
                           backfill=ns.backfill, shutdown_timeout=ns.shutdown_timeout,
                           ledger_retention=ns.ledger_retention, lease_ttl=ns.lease_ttl)


def to_consumer_config(ns: argparse.Namespace) -> ConsumerConfig:
    """Namespace -> ConsumerConfig."""
    read_dsn = db.check_dsn(ns.read_dsn, "--read-dsn/TSFLOW_READ_DSN") if ns.read_dsn else ""
    return ConsumerConfig(db=_db(ns), http=HttpConfig(ns.metrics_host, ns.metrics_port), read_dsn=read_dsn,
                          interval=ns.interval, window=ns.window, threshold=ns.threshold,
                          min_samples=ns.min_samples, once=ns.once)


def _install_signals(stop: threading.Event) -> None:
    def handler(signum: int, _frame: FrameType | None) -> None:
        log.info("signal received, shutting down", extra={"signal": signal.Signals(signum).name})
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


def _run_migrate(cfg: MigrateConfig, _stop: threading.Event) -> int:
    conn = db.connect_with_retry(cfg.db.dsn, "tsflow-migrate", cfg.db.connect_timeout, cfg.db.startup_timeout,
                                 cfg.db.max_backoff, autocommit=True)
    try:
        applied = schema.migrate(conn, cfg)
    finally:
        db.safe_close(conn)
    log.info("migrate done", extra={"applied": applied, "version": schema.LATEST_VERSION})
    return EXIT_OK


def _run_generate(cfg: GeneratorConfig, stop: threading.Event) -> int:
    from .generator import Generator  # imported late: keeps `--help` fast

    registry = CollectorRegistry()
    metrics, health = GeneratorMetrics(registry), Health()
    with ProbeServer(registry, health, cfg.http.host, cfg.http.port):
        result = Generator(cfg, metrics, health).run(stop)
    return EXIT_OK if result.unflushed_rows == 0 else EXIT_FAILURE


def _run_consume(cfg: ConsumerConfig, stop: threading.Event) -> int:
    from .consumer import Consumer

    registry = CollectorRegistry()
    metrics, health = ConsumerMetrics(registry), Health()
    with ProbeServer(registry, health, cfg.http.host, cfg.http.port):
        ok = Consumer(cfg, metrics, health).run(stop)
    if cfg.once and not ok:
        return _fail("the analysis run failed (see the JSON log on stdout)", EXIT_FAILURE)
    return EXIT_OK


def _fail(message: str, code: int) -> int:
    sys.stderr.write(f"tsflow: error: {message}\n")
    sys.stderr.flush()
    return code


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit status (0 ok, 1 failure, 2 bad usage)."""
    try:
        ns = build_parser().parse_args(argv)
        builders: dict[str, tuple[Callable[[argparse.Namespace], Any], Callable[[Any, threading.Event], int]]] = {
            "migrate": (to_migrate_config, _run_migrate),
            "generate": (to_generator_config, _run_generate),
            "consume": (to_consumer_config, _run_consume),
        }
        to_config, run = builders[ns.command]
        cfg = to_config(ns)
    except (UsageError, db.ConfigError) as exc:
        return _fail(str(exc), EXIT_USAGE)
    setup_logging(ns.log_level)
    stop = threading.Event()
    _install_signals(stop)
    try:
        return run(cfg, stop)
    except db.StartupError as exc:
        if stop.is_set():  # signalled while still waiting for the database: a clean stop
            log.info("stopped before start-up completed", extra={"error": str(exc)})
            return EXIT_OK
        log.error("start-up failed", extra={"error": str(exc)})
        return _fail(str(exc), EXIT_FAILURE)
    except OSError as exc:  # e.g. metrics port already in use
        log.error("fatal", extra={"error": db.one_line(exc)})
        return _fail(db.one_line(exc), EXIT_FAILURE)
    except Exception as exc:  # noqa: BLE001 - one clear line instead of a traceback
        log.error("fatal", exc_info=True)
        return _fail(f"{type(exc).__name__}: {db.one_line(exc)}", EXIT_FAILURE)
