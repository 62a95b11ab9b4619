"""Generator identities: restarts reuse them (so series do not multiply), two processes never share one."""

from __future__ import annotations

import threading
import time

import psycopg
import pytest
from prometheus_client import CollectorRegistry

from wl_support import generator_config, scalar
from tsflow import identity
from tsflow.generator import Batch, Generator, write_batch
from tsflow.http import Health
from tsflow.metrics import GeneratorMetrics
from tsflow.simulate import Fleet


def _run(dsn: str, rows: int, **overrides: object) -> None:
    cfg = generator_config(dsn, rows, generator_id=identity.AUTO, **overrides)
    result = Generator(cfg, GeneratorMetrics(CollectorRegistry()), Health()).run(threading.Event())
    assert result.rows_written == rows


def test_restarts_reuse_the_identity_and_its_series(migrated_dsn: str) -> None:
    for _ in range(3):  # three "pod starts", each with a new process token
        _run(migrated_dsn, 1200)
    with psycopg.connect(migrated_dsn) as conn:
        ids = conn.execute("SELECT DISTINCT generator_id FROM ingest_batches").fetchall()
        seqs = [r[0] for r in conn.execute("SELECT seq FROM ingest_batches ORDER BY seq").fetchall()]
    assert ids == [("gen-0",)]
    assert seqs == list(range(len(seqs)))  # one sequence continued across restarts
    assert scalar(migrated_dsn, "SELECT count(DISTINCT device_id) FROM metrics") == 20  # not 60
    assert scalar(migrated_dsn, "SELECT count(*) FROM generator_leases WHERE expires_at > now()") == 0  # released


def test_auto_claims_the_lowest_free_identity(migrated_dsn: str) -> None:
    with psycopg.connect(migrated_dsn, autocommit=True) as conn:
        assert identity.claim(conn, identity.AUTO, "pod-a", 30) == "gen-0"
        assert identity.claim(conn, identity.AUTO, "pod-b", 30) == "gen-1"
        assert identity.claim(conn, identity.AUTO, "pod-a", 30) == "gen-0"  # the holder itself may renew
        identity.release(conn, "gen-0", "pod-a")
        assert identity.claim(conn, identity.AUTO, "pod-c", 30) == "gen-0"  # released: reused at once
        assert identity.claim(conn, "gen-1", "pod-d", 30) is None  # explicit id held by a live process
        assert identity.claim(conn, identity.AUTO, "pod-crashy", 0.2) == "gen-2"
        time.sleep(0.3)  # pod-crashy died without releasing: its lease expires
        assert identity.claim(conn, identity.AUTO, "pod-e", 30) == "gen-2"


def test_a_generator_that_lost_its_lease_writes_nothing(migrated_dsn: str) -> None:
    batch = Batch.of("gen-0", 0, Fleet(generator_config(migrated_dsn, 0).sim, "gen-0", time.time()).tick_copy(0))
    with psycopg.connect(migrated_dsn, autocommit=True) as conn:
        assert identity.claim(conn, identity.AUTO, "old-pod", 0.2) == "gen-0"
        time.sleep(0.3)  # stalled past its lease ...
        assert identity.claim(conn, identity.AUTO, "new-pod", 30) == "gen-0"  # ... and was replaced
    with psycopg.connect(migrated_dsn) as conn:
        with pytest.raises(identity.LeaseLost):
            write_batch(conn, batch, "old-pod", 30)
        assert write_batch(conn, batch, "new-pod", 30) is True
    assert scalar(migrated_dsn, "SELECT count(*) FROM metrics") == batch.row_count
