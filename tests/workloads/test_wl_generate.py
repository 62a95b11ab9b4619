"""generate: exact row counts, ledger de-duplication, resume after restart, backpressure."""

from __future__ import annotations

import queue
import threading
import time
from datetime import datetime, timedelta, timezone

import psycopg
import pytest
from prometheus_client import CollectorRegistry

from tests.waits import poll, poll_steady
from wl_support import generator_config, metric_value, table_counts
from tsflow import identity
from tsflow.generator import COPY_SQL, Batch, Generator, Producer, make_batch_id, write_batch
from tsflow.http import Health
from tsflow.metrics import GeneratorMetrics
from tsflow.simulate import Fleet


def _run(cfg, after_commit=None):  # type: ignore[no-untyped-def]
    registry = CollectorRegistry()
    gen = Generator(cfg, GeneratorMetrics(registry), Health(), after_commit=after_commit)
    return gen.run(threading.Event()), registry


@pytest.mark.parametrize("rows", [1, 999, 12_345])
def test_generate_writes_exactly_n_rows(migrated_dsn: str, rows: int) -> None:
    result, registry = _run(generator_config(migrated_dsn, rows))
    counts = table_counts(migrated_dsn)
    assert counts == {"rows": rows, "distinct": rows, "batches": -(-rows // 1000), "ledger_rows": rows}
    assert result.rows_generated == result.rows_written == rows
    assert metric_value(registry, "tsflow_generator_rows_written_total") == rows
    assert metric_value(registry, "tsflow_generator_last_flush_timestamp_seconds") > 0


def test_restart_resumes_sequence_from_ledger(migrated_dsn: str) -> None:
    _run(generator_config(migrated_dsn, 2500))
    _run(generator_config(migrated_dsn, 2500))
    with psycopg.connect(migrated_dsn) as conn:
        seqs = [r[0] for r in conn.execute("SELECT seq FROM ingest_batches ORDER BY seq").fetchall()]
    assert seqs == list(range(6))
    assert table_counts(migrated_dsn)["rows"] == 5000


def test_same_batch_twice_is_skipped(migrated_dsn: str) -> None:
    fleet = Fleet(generator_config(migrated_dsn, 0).sim, "gen-x", time.time())
    batch = Batch.of("gen-x", 0, fleet.tick_copy(0))
    with psycopg.connect(migrated_dsn, autocommit=True) as first:
        assert identity.claim(first, "gen-x", "me", 30.0) == "gen-x"
        assert write_batch(first, batch, "me", 30.0) is True
    with psycopg.connect(migrated_dsn) as second:  # a retry on a new connection
        assert write_batch(second, batch, "me", 30.0) is False
    assert table_counts(migrated_dsn)["rows"] == batch.row_count
    assert make_batch_id("gen-x", 0) == "gen-x:0"


def test_ambiguous_commit_is_retried_and_skipped(migrated_dsn: str) -> None:
    """The commit reached the server but the client saw an error: the retry must not duplicate."""
    failed: list[str] = []

    def lose_the_ack(batch: Batch) -> None:
        if batch.seq == 2 and not failed:
            failed.append(batch.batch_id)
            raise psycopg.OperationalError("server closed the connection unexpectedly (injected after COMMIT)")

    result, registry = _run(generator_config(migrated_dsn, 5000), after_commit=lose_the_ack)
    assert failed == ["gen-a:2"]
    assert table_counts(migrated_dsn) == {"rows": 5000, "distinct": 5000, "batches": 5, "ledger_rows": 5000}
    assert metric_value(registry, "tsflow_generator_retries_total") == 1
    assert metric_value(registry, "tsflow_generator_batches_duplicate_total") == 1
    assert metric_value(registry, "tsflow_generator_batches_written_total") == 4
    assert result.batches_duplicate == 1


def test_full_buffer_blocks_generation(migrated_dsn: str) -> None:
    """Backpressure: with nobody draining the buffer the producer stops instead of dropping."""
    cfg = generator_config(migrated_dsn, 0, batch_rows=60, buffer_batches=3)
    registry = CollectorRegistry()
    buffer: queue.Queue[Batch | None] = queue.Queue(maxsize=cfg.buffer_batches)
    stop, abandon = threading.Event(), threading.Event()
    producer = Producer(cfg, Fleet(cfg.sim, cfg.generator_id, time.time() - 3600), 0, buffer,
                        GeneratorMetrics(registry), stop, abandon)
    producer.start()
    poll(buffer.full, deadline=5, what="the producer to fill the buffer", interval=0.02)
    # Once the buffer is full the producer finishes the batch in hand and blocks: generation stops, bounded.
    generated = poll_steady(lambda: producer.rows_generated, steady_for=0.5, deadline=15,
                            what="the producer to block on the full buffer")
    assert buffer.full()
    assert generated <= (cfg.buffer_batches + 1) * cfg.batch_rows
    stop.set()
    abandon.set()
    producer.join(5)
    assert not producer.is_alive()


def test_old_ledger_rows_are_pruned(migrated_dsn: str) -> None:
    with psycopg.connect(migrated_dsn) as conn:
        conn.execute("INSERT INTO ingest_batches (batch_id, generator_id, seq, row_count, committed_at) VALUES "
                     "('gen-a:0', 'gen-a', 0, 0, now() - interval '30 days'), "
                     "('other:0', 'other', 0, 0, now() - interval '30 days')")
    _run(generator_config(migrated_dsn, 1500))
    with psycopg.connect(migrated_dsn) as conn:
        ids = [r[0] for r in conn.execute("SELECT batch_id FROM ingest_batches ORDER BY batch_id").fetchall()]
    assert ids == ["gen-a:1", "gen-a:2", "other:0"]  # resumed at seq 1; only its own old row went


def test_both_encodings_of_a_tick_carry_the_same_microsecond(migrated_dsn: str) -> None:
    """A start whose float rounds one way in datetime.fromtimestamp and the other in round(x * 1e6)
    (found by search): both encodings must take their timestamp from the same whole microsecond."""
    fleet = Fleet(generator_config(migrated_dsn, 0).sim, "gen-x", 1764116538.7194054)
    (ts, *_), *_ = fleet.tick(0)
    encoded_us = int.from_bytes(fleet.tick_copy(0)[0][6:14], "big", signed=True)  # after field count, length
    assert ts == datetime(2000, 1, 1, tzinfo=timezone.utc) + timedelta(microseconds=encoded_us)
    assert ts.microsecond == 719406


def test_pre_encoded_copy_rows_equal_the_simulated_rows(migrated_dsn: str) -> None:
    """The generator's own binary COPY encoding lands exactly the values the driver would have written."""
    sim = generator_config(migrated_dsn, 0).sim
    start = time.time() - 123.4567891  # sub-microsecond fraction: rounding must match too
    plain, encoded = Fleet(sim, "gen-x", start), Fleet(sim, "gen-x", start)
    rows = [r for k in range(3) for r in plain.tick(k)]
    batch = Batch.of("gen-x", 0, [r for k in range(3) for r in encoded.tick_copy(k)])
    with psycopg.connect(migrated_dsn) as conn:
        with conn.cursor().copy(COPY_SQL) as copy:
            copy.write(batch.payload)
        landed = conn.execute("SELECT time, device_id, metric, value FROM metrics ORDER BY 1, 2, 3").fetchall()
    assert batch.row_count == len(rows) == 180
    assert landed == sorted(rows)


def test_plain_postgresql_takes_rows_of_any_age(migrated_dsn: str) -> None:
    """Plain PostgreSQL keeps every raw row and logs every write for its rollups: no late-data window."""
    from tsflow.config import SimulationConfig

    with psycopg.connect(migrated_dsn) as conn:
        assert conn.execute("SELECT tsflow_late_data_window()").fetchone() == (None,)
    cfg = generator_config(migrated_dsn, 40, backfill=41 * 86400.0,
                           sim=SimulationConfig(devices=2, metrics_per_device=1, interval=86400.0, seed=3))
    result, registry = _run(cfg)
    assert result.rows_written == 40 and result.rows_rejected == 0
    assert metric_value(registry, "tsflow_generator_rows_rejected_total") == 0
    assert table_counts(migrated_dsn)["rows"] == 40

