"""`tsflow generate`: simulate devices and write them exactly once with binary COPY.

A producer thread turns simulator ticks into batches and puts them in a bounded queue (it blocks
when the queue is full: backpressure, never drops). The writer (the calling thread) commits each
batch together with its ledger row in one transaction; a batch whose ledger row already exists
(it landed before an ambiguous failure) is skipped.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass, field, replace
from typing import Callable

import psycopg

from . import db, identity, schema
from .config import GeneratorConfig
from .http import Health
from .metrics import GeneratorMetrics
from .simulate import COPY_SIGNATURE, COPY_TRAILER, Fleet

log = logging.getLogger("tsflow.generator")

COPY_SQL = "COPY metrics (time, device_id, metric, value) FROM STDIN (FORMAT BINARY)"
PRUNE_SQL = (
    "DELETE FROM ingest_batches WHERE generator_id = %s AND seq < %s "
    "AND committed_at < now() - make_interval(secs => %s)"
)
PRUNE_EVERY_S = 3600.0
APP_NAME = "tsflow-generator"
_SHUTDOWN_MARGIN_S = 1.0  # leave time to close connections and exit inside the grace period


def make_batch_id(generator_id: str, seq: int) -> str:
    """Deterministic batch id: the same batch always gets the same id, across retries and restarts."""
    return f"{generator_id}:{seq}"


@dataclass(frozen=True)
class Batch:
    """Rows that commit together with one ledger row, as a complete binary COPY stream."""

    generator_id: str
    seq: int
    row_count: int
    payload: bytes = field(repr=False)

    @classmethod
    def of(cls, generator_id: str, seq: int, rows: list[bytes]) -> "Batch":
        """A batch of rows encoded by Fleet.tick_copy."""
        return cls(generator_id, seq, len(rows), COPY_SIGNATURE + b"".join(rows) + COPY_TRAILER)

    @property
    def batch_id(self) -> str:
        """`<generator-id>:<seq>`."""
        return make_batch_id(self.generator_id, self.seq)


@dataclass
class GeneratorResult:
    """What a run did; `unflushed_rows` > 0 means data could not be written before the deadline."""

    rows_generated: int = 0
    rows_written: int = 0
    batches_written: int = 0
    batches_duplicate: int = 0
    unflushed_rows: int = 0
    rows_rejected: int = 0
    """Rows older than the late-data window, refused (counted in ``rows_generated``, never written)."""


class ShutdownDeadline(Exception):
    """The grace period ended before a batch could be written."""


def write_batch(conn: psycopg.Connection, batch: Batch, holder: str, lease_ttl: float) -> bool:
    """Commit `batch`, its ledger row and a renewal of the identity lease atomically.

    False when the ledger already had the batch; raises identity.LeaseLost when another live process
    holds the identity (nothing is written).
    """
    with conn.transaction():
        with conn.cursor() as cur:
            cur.execute(identity.LEDGER_SQL, {"holder": holder, "ttl": lease_ttl, "generator_id": batch.generator_id,
                                              "batch_id": batch.batch_id, "seq": batch.seq, "rows": batch.row_count})
            held, new = cur.fetchone() or (False, False)
            if not held:
                raise identity.LeaseLost(f"generator id {batch.generator_id!r} is leased by another live process")
            if not new:
                return False
            with cur.copy(COPY_SQL) as copy:
                copy.write(batch.payload)
    return True


def next_seq(conn: psycopg.Connection, generator_id: str) -> int:
    """First unused sequence number of `generator_id` (resumes after a restart)."""
    row = conn.execute("SELECT max(seq) FROM ingest_batches WHERE generator_id = %s", (generator_id,)).fetchone()
    return 0 if row is None or row[0] is None else int(row[0]) + 1


class BatchWriter:
    """Writes batches with reconnects, exponential backoff with jitter and ledger de-duplication."""

    def __init__(self, cfg: GeneratorConfig, metrics: GeneratorMetrics, health: Health,
                 after_commit: Callable[[Batch], None] | None = None) -> None:
        self._cfg = cfg
        self._metrics = metrics
        self._health = health
        self._after_commit = after_commit  # fault-injection point for tests
        self._conn: psycopg.Connection | None = None
        self._last_prune = -PRUNE_EVERY_S
        self.holder = identity.new_holder()
        self.generator_id = cfg.generator_id
        """The leased identity (`gen-<n>` for --generator-id auto), known after open()."""

    def open(self, stop: threading.Event) -> psycopg.Connection:
        """Connect at start-up (bounded by --startup-timeout), wait for the schema, lease the identity."""
        deadline = time.monotonic() + self._cfg.db.startup_timeout
        conn = db.connect_with_retry(self._cfg.db.dsn, APP_NAME, self._cfg.db.connect_timeout,
                                     self._cfg.db.startup_timeout, self._cfg.db.max_backoff, stop)
        conn.autocommit = True
        while not schema.schema_ready(conn):
            if time.monotonic() > deadline or stop.is_set():
                db.safe_close(conn)
                raise db.StartupError("the database schema is missing or outdated: run `tsflow migrate` first")
            log.warning("waiting for the schema (run `tsflow migrate`)")
            stop.wait(1.0)
        while (leased := identity.claim(conn, self._cfg.generator_id, self.holder, self._cfg.lease_ttl)) is None:
            if time.monotonic() > deadline or stop.is_set():
                db.safe_close(conn)
                raise db.StartupError(f"generator id {self._cfg.generator_id!r} is leased by another live process")
            log.warning("generator id leased by another process, waiting",
                        extra={"generator_id": self._cfg.generator_id})
            stop.wait(1.0)
        self.generator_id = leased
        conn.autocommit = False
        self._conn = conn
        self._health.set_ready(True)
        return conn

    def close(self, release: bool = False) -> None:
        """Drop the connection; with `release`, first hand the identity lease back (a clean stop)."""
        if release and self._conn is not None and not self._conn.closed:
            try:
                self._conn.rollback()
                identity.release(self._conn, self.generator_id, self.holder)
                self._conn.commit()
            except psycopg.Error as exc:  # it expires on its own
                log.warning("could not release the generator id lease", extra={"error": db.one_line(exc)})
        db.safe_close(self._conn)
        self._conn = None

    def write(self, batch: Batch, deadline: Callable[[], float | None] = lambda: None) -> bool:
        """Write until it succeeds; True if written, False if it was a duplicate.

        `deadline()` returns the monotonic time by which to give up (None: never); it is asked
        again before every retry so a shutdown that starts mid-retry is honoured. Raises
        ShutdownDeadline when it passes, psycopg.Error when retrying cannot help (bad data, permissions).
        """
        attempt = 0
        while True:
            try:
                if self._conn is None or self._conn.closed:
                    self._conn = db.connect(self._cfg.db.dsn, APP_NAME, self._cfg.db.connect_timeout)
                    self._health.set_ready(True)
                    log.info("reconnected to the database")
                started = time.perf_counter()
                written = write_batch(self._conn, batch, self.holder, self._cfg.lease_ttl)
                if self._after_commit is not None:
                    self._after_commit(batch)
                self._metrics.flush_seconds.observe(time.perf_counter() - started)
                self._metrics.last_flush.set(time.time())
                if written:
                    self._metrics.rows_written.inc(batch.row_count)
                    self._metrics.batches_written.inc()
                else:
                    self._metrics.batches_duplicate.inc()
                    log.info("batch already committed, skipped", extra={"batch_id": batch.batch_id})
                self._maybe_prune(batch)
                return written
            except db.RETRYABLE as exc:
                self._metrics.retries.inc()
                self._health.set_ready(False)
                self.close()
                delay = db.backoff_delay(attempt, cap=self._cfg.db.max_backoff)
                give_up_at = deadline()
                if give_up_at is not None:
                    remaining = give_up_at - time.monotonic()
                    if remaining <= 0:
                        raise ShutdownDeadline(db.one_line(exc)) from None
                    delay = min(delay, remaining)
                log.warning("batch write failed, retrying", extra={
                    "batch_id": batch.batch_id, "attempt": attempt + 1,
                    "retry_in_s": round(delay, 3), "error": db.one_line(exc)})
                attempt += 1
                time.sleep(delay)


    def _maybe_prune(self, batch: Batch) -> None:
        """Hourly, drop this generator's old ledger rows (keeping the newest, which resumes the sequence)."""
        if time.monotonic() - self._last_prune < PRUNE_EVERY_S or self._conn is None:
            return
        self._last_prune = time.monotonic()
        try:
            with self._conn.transaction():
                cur = self._conn.execute(PRUNE_SQL, (batch.generator_id, batch.seq, self._cfg.ledger_retention))
            log.info("ingest ledger pruned", extra={"deleted": cur.rowcount})
        except psycopg.Error as exc:  # not worth failing ingest for; the next write reconnects if needed
            log.warning("ingest ledger prune failed", extra={"error": db.one_line(exc)})


class Producer(threading.Thread):
    """Simulates ticks and cuts them into batches flushed by size or age; blocks when the queue is full."""

    def __init__(self, cfg: GeneratorConfig, fleet: Fleet, first_seq: int, out: "queue.Queue[Batch | None]",
                 metrics: GeneratorMetrics, stop: threading.Event, abandon: threading.Event,
                 late_data_window: float | None = None) -> None:
        super().__init__(name="producer", daemon=True)
        self._cfg = cfg
        self._late_data_window = late_data_window  # seconds; None: rows of any age are accepted
        self._fleet = fleet
        self._seq = first_seq
        self._out = out
        self._metrics = metrics
        self._halt = stop          # stop generating, flush what is pending
        self._abandon = abandon    # grace period over: give up on a full queue
        self.rows_generated = 0
        self.rows_dropped = 0
        self.rows_rejected = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self._run()
        except BaseException as exc:  # noqa: BLE001 - reported by the writer thread
            self.error = exc
        finally:
            self._put(None)

    def _run(self) -> None:
        cfg = self._cfg
        pending: list[bytes] = []
        pending_since = time.monotonic()
        tick = 0
        while not self._halt.is_set():
            if cfg.max_rows and self.rows_generated >= cfg.max_rows:
                break
            if cfg.pace:
                due = self._fleet.tick_epoch(tick)
                while not self._halt.is_set():
                    now = time.time()
                    if due <= now:
                        break
                    if pending and time.monotonic() - pending_since >= cfg.batch_age:
                        self._flush(pending)
                        pending = []
                    wait = due - now
                    if pending:
                        wait = min(wait, max(0.0, pending_since + cfg.batch_age - time.monotonic()))
                    self._halt.wait(wait)
                if self._halt.is_set():
                    break
            rows = self._fleet.tick_copy(tick)
            tick += 1
            # Hand the GIL to the writer thread if it waits: unpaced (a backfill), this loop would otherwise hold it
            # for the interpreter's 5 ms switch interval at a time, and each 128 KiB piece of a COPY waits for it.
            time.sleep(0)
            if cfg.max_rows:
                rows = rows[: cfg.max_rows - self.rows_generated]
            self.rows_generated += len(rows)
            self._metrics.rows_generated.inc(len(rows))
            if self._too_late(self._fleet.tick_epoch(tick - 1), len(rows)):
                continue
            if not pending:
                pending_since = time.monotonic()
            pending.extend(rows)
            while len(pending) >= cfg.batch_rows:
                self._flush(pending[: cfg.batch_rows])
                pending = pending[cfg.batch_rows:]
                pending_since = time.monotonic()
            if pending and time.monotonic() - pending_since >= cfg.batch_age:
                self._flush(pending)
                pending = []
        if pending:
            self._flush(pending)

    def _too_late(self, epoch: float, rows: int) -> bool:
        """Refuse (count, and warn at the first) rows older than the late-data window."""
        if self._late_data_window is None or epoch >= time.time() - self._late_data_window:
            return False
        if self.rows_rejected == 0:
            log.warning("refusing rows older than the database's late-data window: raw retention would drop them "
                        "before every rollup took them", extra={"late_data_window_s": self._late_data_window,
                                                                 "row_time_epoch": round(epoch, 3)})
        self.rows_rejected += rows
        self._metrics.rows_rejected.inc(rows)
        return True

    def _flush(self, rows: list[bytes]) -> None:
        batch = Batch.of(self._cfg.generator_id, self._seq, rows)
        self._seq += 1
        if not self._put(batch):
            self.rows_dropped += len(rows)

    def _put(self, item: Batch | None) -> bool:
        while True:
            try:
                self._out.put(item, timeout=0.2)
                self._metrics.buffer_batches.set(self._out.qsize())
                return True
            except queue.Full:
                if self._abandon.is_set():
                    return False


class Generator:
    """Runs producer and writer until the row limit is reached or `stop` is set."""

    def __init__(self, cfg: GeneratorConfig, metrics: GeneratorMetrics, health: Health,
                 after_commit: Callable[[Batch], None] | None = None) -> None:
        self._cfg = cfg
        self._metrics = metrics
        self._health = health
        self._writer = BatchWriter(cfg, metrics, health, after_commit)
        metrics.buffer_capacity.set(cfg.buffer_batches)

    def run(self, stop: threading.Event) -> GeneratorResult:
        """Generate and write; returns counts. Raises db.StartupError if the database never came up."""
        conn = self._writer.open(stop)
        cfg = replace(self._cfg, generator_id=self._writer.generator_id)
        first_seq = next_seq(conn, cfg.generator_id)
        late_data_window = schema.late_data_window(conn)
        conn.rollback()
        log.info("generator starting", extra={"generator_id": cfg.generator_id, "first_seq": first_seq,
                                               "devices": cfg.sim.devices, "max_rows": cfg.max_rows,
                                               "late_data_window_s": late_data_window})
        start = time.time() - cfg.backfill
        start -= start % cfg.sim.interval if cfg.sim.interval >= 1 else 0.0
        fleet = Fleet(cfg.sim, cfg.generator_id, start)
        buffer: queue.Queue[Batch | None] = queue.Queue(maxsize=cfg.buffer_batches)
        abandon = threading.Event()
        producer = Producer(cfg, fleet, first_seq, buffer, self._metrics, stop, abandon, late_data_window)
        producer.start()
        result = GeneratorResult()
        shutdown_at: list[float] = []

        def deadline() -> float | None:
            if not shutdown_at and stop.is_set():
                shutdown_at.append(time.monotonic() + max(0.5, cfg.shutdown_timeout - _SHUTDOWN_MARGIN_S))
                log.info("stopping: flushing buffered batches", extra={"buffered": buffer.qsize()})
            return shutdown_at[0] if shutdown_at else None

        try:
            while True:
                give_up_at = deadline()
                try:
                    item = buffer.get(timeout=0.2)
                except queue.Empty:
                    if give_up_at is not None and time.monotonic() > give_up_at:
                        abandon.set()
                    continue
                self._metrics.buffer_batches.set(buffer.qsize())
                if item is None:
                    break
                try:
                    if self._writer.write(item, deadline):
                        result.rows_written += item.row_count
                        result.batches_written += 1
                    else:
                        result.batches_duplicate += 1
                except ShutdownDeadline as exc:
                    abandon.set()
                    result.unflushed_rows += item.row_count + self._drain(buffer)
                    log.error("grace period over, buffered rows not written",
                              extra={"error": str(exc), "unflushed_rows": result.unflushed_rows})
                    break
        finally:
            abandon.set()
            stop.set()
            producer.join(timeout=5)
            self._writer.close(release=True)
            self._health.set_ready(False)
        result.unflushed_rows += self._drain(buffer) + producer.rows_dropped
        result.rows_generated = producer.rows_generated
        result.rows_rejected = producer.rows_rejected
        if producer.error is not None:
            raise producer.error
        log.info("generator stopped", extra={
            "rows_generated": result.rows_generated, "rows_written": result.rows_written,
            "batches_written": result.batches_written, "batches_duplicate": result.batches_duplicate,
            "unflushed_rows": result.unflushed_rows, "rows_rejected": result.rows_rejected})
        return result

    @staticmethod
    def _drain(buffer: "queue.Queue[Batch | None]") -> int:
        rows = 0
        while True:
            try:
                item = buffer.get_nowait()
            except queue.Empty:
                return rows
            if item is not None:
                rows += item.row_count
