"""Plain-PostgreSQL rollups: late data of any age within retention reaches metrics_1m, _1h and _1d.

The TimescaleDB flavour runs the same check in test_wl_timescaledb.py.
"""

from __future__ import annotations

import threading

import psycopg
from prometheus_client import CollectorRegistry

from wl_support import ROLLUPS, check_late_data_reaches_every_rollup, rollup_samples
from tsflow.config import ConsumerConfig, DbConfig, HttpConfig
from tsflow.consumer import Consumer
from tsflow.http import Health
from tsflow.metrics import ConsumerMetrics


def test_late_data_reaches_every_rollup_through_the_consumer(migrated_dsn: str) -> None:
    cfg = ConsumerConfig(db=DbConfig(dsn=migrated_dsn, startup_timeout=5), http=HttpConfig("127.0.0.1", 0),
                         once=True)

    def consumer_run() -> None:  # the consumer refreshes the plain rollups before each analysis
        assert Consumer(cfg, ConsumerMetrics(CollectorRegistry()), Health()).run(threading.Event())

    check_late_data_reaches_every_rollup(migrated_dsn, consumer_run)


def test_updates_and_deletes_are_rolled_up_too(migrated_dsn: str) -> None:
    with psycopg.connect(migrated_dsn, autocommit=True) as conn:
        conn.execute("INSERT INTO metrics VALUES (now() - interval '2 days', 'd', 'm', 1), "
                     "(now() - interval '2 days', 'd', 'm', 5), (now() - interval '3 days', 'd', 'm', 7)")
        conn.execute("SELECT tsflow_refresh_rollups()")
        assert rollup_samples(migrated_dsn) == {r: 3 for r in ROLLUPS}
        conn.execute("UPDATE metrics SET time = time + interval '1 day 1 hour' WHERE value = 7")  # moves between days
        conn.execute("DELETE FROM metrics WHERE value = 5")
        conn.execute("SELECT tsflow_refresh_rollups()")
        for rollup, width in zip(ROLLUPS, ("1 minute", "1 hour", "1 day")):
            rolled = conn.execute(f"SELECT bucket, avg_value, samples FROM {rollup} ORDER BY bucket").fetchall()
            raw = conn.execute("SELECT date_bin(%s::interval, time, '2000-01-01'), avg(value), count(*) "
                               "FROM metrics GROUP BY 1 ORDER BY 1", (width,)).fetchall()
            assert rolled == raw and sum(n for _, _, n in raw) == 2, rollup


def test_one_refresher_at_a_time(migrated_dsn: str) -> None:
    with psycopg.connect(migrated_dsn) as holder, psycopg.connect(migrated_dsn, autocommit=True) as other:
        holder.execute("SELECT tsflow_refresh_rollups()")  # transaction left open: holds the refresh lock
        assert other.execute("SELECT tsflow_refresh_rollups()").fetchone() == (None,)
        holder.rollback()
        assert other.execute("SELECT tsflow_refresh_rollups()").fetchone() == (0,)
