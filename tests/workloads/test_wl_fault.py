"""Fault injection against a real server: killed backends and a crashed/restarted server mid-ingest."""

from __future__ import annotations

import threading
import time
from typing import Iterator

import psycopg
import pytest
from prometheus_client import CollectorRegistry

from tests.waits import poll, poll_steady
from wl_support import generator_config, metric_value, migrate_db, table_counts
from pgserver import PgServer
from tsflow.config import DbConfig
from tsflow.generator import APP_NAME, Generator, GeneratorResult
from tsflow.http import Health
from tsflow.metrics import GeneratorMetrics

ROWS = 600_000


@pytest.fixture
def own_server() -> Iterator[PgServer]:
    """A server of its own (these tests crash it), in its own temp dir like the session server."""
    server = PgServer().init().start()
    try:
        yield server
    finally:
        server.cleanup()


def _terminate_generator_backends(dsn: str) -> int:
    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
                            (APP_NAME,)).fetchall()
    return sum(1 for r in rows if r[0])


def test_no_row_lost_or_duplicated_across_faults(own_server: PgServer) -> None:
    dsn = own_server.dsn()
    migrate_db(dsn)
    cfg = generator_config(dsn, ROWS, batch_rows=2000, buffer_batches=5,
                           db=DbConfig(dsn=dsn, connect_timeout=2, startup_timeout=10, max_backoff=0.3))
    registry = CollectorRegistry()
    metrics = GeneratorMetrics(registry)
    gen = Generator(cfg, metrics, Health())
    outcome: list[GeneratorResult | BaseException] = []

    def run() -> None:
        try:
            outcome.append(gen.run(threading.Event()))
        except BaseException as exc:  # noqa: BLE001 - asserted below
            outcome.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    written = lambda: metric_value(registry, "tsflow_generator_rows_written_total")  # noqa: E731

    # 1. Kill the writer's backend twice while it is copying.
    killed = 0
    for fraction in (0.1, 0.25):
        poll(lambda: written() >= ROWS * fraction, deadline=30, what=f"{fraction:.0%} written", interval=0.01)
        killed += _terminate_generator_backends(dsn)
    # 2. Crash the whole server, hold it down until the buffer is full, then bring it back.
    poll(lambda: written() >= ROWS * 0.4, deadline=30, what="40% written", interval=0.01)
    own_server.stop("immediate")
    poll(lambda: metric_value(registry, "tsflow_generator_buffer_batches") >= cfg.buffer_batches,
         deadline=15, what="the buffer to fill while the server is down", interval=0.01)
    # With the buffer full the producer still finishes the batch it is building, then blocks in put(): wait for
    # generation to stop (the real condition) and bound what it produced ahead of the writer.
    generated = lambda: metric_value(registry, "tsflow_generator_rows_generated_total")  # noqa: E731
    ahead = poll_steady(generated, steady_for=1.0, deadline=30, what="generation to stop while the server is down") \
        - written()
    # The full buffer, the writer's batch in retry and the producer's blocked batch, plus the part of a tick left over.
    bound = (cfg.buffer_batches + 2) * cfg.batch_rows + cfg.sim.devices * cfg.sim.metrics_per_device
    blocked = ahead <= bound
    own_server.start()
    thread.join(60)

    assert not thread.is_alive()
    assert outcome and isinstance(outcome[0], GeneratorResult), outcome
    result = outcome[0]
    counts = table_counts(dsn)
    retries = metric_value(registry, "tsflow_generator_retries_total")
    print(f"\nfault test: generated={result.rows_generated} written={result.rows_written} "
          f"table_rows={counts['rows']} distinct={counts['distinct']} ledger_rows={counts['ledger_rows']} "
          f"batches={counts['batches']} duplicates_skipped={result.batches_duplicate} retries={retries:.0f} "
          f"backends_killed={killed} generated_ahead_while_down={ahead:.0f} (bound {bound})")
    assert killed >= 1
    assert retries >= 2
    assert blocked  # backpressure, not dropping
    assert counts == {"rows": ROWS, "distinct": ROWS, "batches": ROWS // 2000, "ledger_rows": ROWS}
    assert result.rows_generated == ROWS and result.unflushed_rows == 0


def test_sigterm_with_database_down_exits_within_grace_period(own_server: PgServer) -> None:
    """Data that cannot be flushed in time is reported (non-zero exit) instead of hanging the pod."""
    import json
    import signal
    import subprocess
    import sys

    from wl_support import tsflow_env

    dsn = own_server.dsn()
    migrate_db(dsn)
    proc = subprocess.Popen(
        [sys.executable, "-m", "tsflow", "generate", "--metrics-port", "0", "--metrics-host", "127.0.0.1",
         "--batch-rows", "100", "--interval", "10ms", "--shutdown-timeout", "2", "--max-backoff", "0.2"],
        env=tsflow_env(TSFLOW_DSN=dsn, TSFLOW_GENERATOR_ID="down"), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and "generator starting" not in proc.stdout.readline():
            pass
        own_server.stop("immediate")
        time.sleep(1.0)
        proc.send_signal(signal.SIGTERM)
        started = time.monotonic()
        out, err = proc.communicate(timeout=10)
        elapsed = time.monotonic() - started
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    assert elapsed < 3.5  # --shutdown-timeout 2 plus process exit
    assert proc.returncode == 1
    summary = [json.loads(line) for line in out.splitlines() if '"generator stopped"' in line][0]
    assert summary["unflushed_rows"] > 0
    assert "Traceback" not in err
