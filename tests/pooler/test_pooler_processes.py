"""PgBouncer for real: Debian's pgbouncer on the rendered pgbouncer.ini/userlist/auth_query, in front of a real
PostgreSQL bootstrapped by the rendered post_init script (see bench/pgbouncer.py for what is overridden).

SCRAM end to end, the generator's exactly-once ingest (binary COPY + ledger transactions) with a pooler crash
in the middle, the consumer over the read-write and read-only pools, 200 clients sharing 10 server
connections, and the exporter container's rendered start command logging in with the mounted password.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest
from prometheus_client import CollectorRegistry

ROOT = Path(__file__).resolve().parents[2]
for _path in (ROOT / "tests" / "workloads", ROOT / "bench"):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from pgbouncer import APP_USER, PGBOUNCER, Credentials, PgBouncer, dsn, scram_server, superuser_dsn  # noqa: E402
from pgserver import PgServer  # noqa: E402
from wl_support import generator_config, migrate_db, table_counts  # noqa: E402
from components.pooler.auth import LOOKUP_FUNCTION, LOOKUP_ROLE  # noqa: E402
from components.pooler.component import EXPORTER_BINARY, EXPORTER_PASSWORD_FILE  # noqa: E402
from components.pooler.pgbouncer_ini import LISTEN_PORT, PoolSettings  # noqa: E402
from tsflow import db  # noqa: E402
from tsflow.config import ConsumerConfig, DbConfig, HttpConfig  # noqa: E402
from tsflow.consumer import Consumer  # noqa: E402
from tsflow.generator import Batch, Generator  # noqa: E402
from tsflow.http import Health  # noqa: E402
from tsflow.metrics import ConsumerMetrics, GeneratorMetrics  # noqa: E402
from tests.harness import Recording  # noqa: E402
from tests.stacks import run_stack  # noqa: E402

pytestmark = pytest.mark.skipif(shutil.which("pgbouncer") is None and not Path(PGBOUNCER).exists(),
                                reason="pgbouncer (Debian package 'pgbouncer') is not installed")
POOL_SIZE = 10
CLIENTS = 200
METRIC = "pooled_pressure"


@pytest.fixture(scope="module")
def cluster() -> Iterator[tuple[PgServer, Credentials]]:
    server, creds = scram_server()
    try:
        migrate_db(dsn(server, server.port, APP_USER, creds.app))  # migrations keep the direct connection
        yield server, creds
    finally:
        server.cleanup()


@pytest.fixture(scope="module")
def pools(cluster: tuple[PgServer, Credentials]) -> Iterator[dict[str, PgBouncer]]:
    server, creds = cluster
    started: dict[str, PgBouncer] = {}
    try:
        for path in ("rw", "ro"):
            started[path] = PgBouncer(server, creds.lookup, PoolSettings(pool_size=POOL_SIZE)).start()
        yield started
    finally:
        for bouncer in started.values():
            bouncer.cleanup()


def _direct(cluster: tuple[PgServer, Credentials]) -> str:
    """The superuser, as an operator gets in: on the server's socket only (the rendered rules)."""
    server, _ = cluster
    return superuser_dsn(server)


def test_scram_end_to_end_through_auth_query(cluster: tuple[PgServer, Credentials], pools: dict[str, PgBouncer]) -> None:
    server, creds = cluster
    rw = pools["rw"]
    with psycopg.connect(rw.dsn(APP_USER, creds.app)) as conn:
        row = conn.execute("SELECT current_user, inet_server_port()").fetchone()
    assert row == (APP_USER, server.port)  # the server accepted PgBouncer's SCRAM login as the app user
    with psycopg.connect(_direct(cluster), autocommit=True) as conn:
        methods = conn.execute("SELECT DISTINCT auth_method FROM pg_hba_file_rules WHERE type = 'host'").fetchall()
        verifiers = dict(conn.execute(
            "SELECT rolname, left(rolpassword, 14) FROM pg_authid WHERE rolname IN (%s, %s)", (APP_USER, LOOKUP_ROLE)
        ).fetchall())
    assert {m for (m,) in methods} <= {"scram-sha-256", "reject"}  # no password may cross in clear or as md5
    assert verifiers == {APP_USER: "SCRAM-SHA-256$", LOOKUP_ROLE: "SCRAM-SHA-256$"}

    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(rw.dsn(APP_USER, creds.app + "x"), connect_timeout=5)
    with pytest.raises(psycopg.OperationalError):  # superusers are never looked up
        psycopg.connect(rw.dsn("postgres", creds.superuser), connect_timeout=5)


def test_lookup_role_reads_verifiers_only_through_the_function(cluster: tuple[PgServer, Credentials]) -> None:
    server, creds = cluster
    # Its password was set from our SCRAM verifier, never as cleartext: the cleartext logs in directly.
    with psycopg.connect(dsn(server, server.port, LOOKUP_ROLE, creds.lookup), autocommit=True) as conn:
        assert conn.execute(f"SELECT usename FROM {LOOKUP_FUNCTION}(%s)", (APP_USER,)).fetchall() == [(APP_USER,)]
        assert conn.execute(f"SELECT usename FROM {LOOKUP_FUNCTION}('postgres')").fetchall() == []
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT passwd FROM pg_shadow")
    with psycopg.connect(dsn(server, server.port, APP_USER, creds.app), autocommit=True) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(f"SELECT * FROM {LOOKUP_FUNCTION}(%s)", (APP_USER,))


def test_generator_ingests_exactly_once_through_the_pool_across_a_pooler_crash(
    cluster: tuple[PgServer, Credentials], pools: dict[str, PgBouncer]
) -> None:
    server, creds = cluster
    direct = dsn(server, server.port, APP_USER, creds.app)
    with psycopg.connect(direct, autocommit=True) as conn:
        conn.execute("TRUNCATE metrics, ingest_batches")
    rw = pools["rw"]
    crashed: list[int] = []

    def crash_pooler_once(batch: Batch) -> None:
        """The pooler dies right after a commit, before the client saw it succeed (an ambiguous commit)."""
        if batch.seq == 4 and not crashed:
            crashed.append(batch.seq)
            rw.restart()  # every client connection dies; the generator reconnects through the new process
            raise psycopg.OperationalError("server closed the connection unexpectedly (pooler restarted)")

    rows = 24_000
    cfg = generator_config(rw.dsn(APP_USER, creds.app), rows, generator_id="pooled")
    registry = CollectorRegistry()
    result = Generator(cfg, GeneratorMetrics(registry), Health(), after_commit=crash_pooler_once).run(threading.Event())
    assert crashed == [4]
    # Every row once: the retried batch had committed, and its ledger row made the retry a no-op.
    assert table_counts(direct) == {"rows": rows, "distinct": rows, "batches": rows // 1000, "ledger_rows": rows}
    assert (result.batches_written, result.batches_duplicate, result.unflushed_rows) == (rows // 1000 - 1, 1, 0)
    assert registry.get_sample_value("tsflow_generator_retries_total") == 1


def test_consumer_runs_through_the_read_write_and_read_only_pools(
    cluster: tuple[PgServer, Credentials], pools: dict[str, PgBouncer]
) -> None:
    server, creds = cluster
    direct = dsn(server, server.port, APP_USER, creds.app)
    with psycopg.connect(direct) as conn:
        conn.execute("TRUNCATE metrics, anomalies")
        anchor = conn.execute("SELECT date_trunc('minute', now())").fetchone()[0]  # type: ignore[index]
        with conn.cursor() as cur, cur.copy("COPY metrics (time, device_id, metric, value) FROM STDIN") as copy:
            for minute in range(2, 40):
                for second in (5, 25, 45):
                    copy.write_row((anchor - timedelta(minutes=minute, seconds=-second), "dev-hot", METRIC,
                                    10.0 + 0.1 * (minute % 3)))
            copy.write_row((anchor - timedelta(minutes=1, seconds=-5), "dev-hot", METRIC, 99.0))
    cfg = ConsumerConfig(
        db=DbConfig(dsn=pools["rw"].dsn(APP_USER, creds.app), startup_timeout=10),
        http=HttpConfig("127.0.0.1", 0), read_dsn=pools["ro"].dsn(APP_USER, creds.app),
        threshold=4.0, min_samples=10, once=True,
    )
    consumer = Consumer(cfg, ConsumerMetrics(CollectorRegistry()), Health())
    consumer.open(threading.Event())
    try:
        # Past psycopg's default prepare threshold (5), while another client takes turns on the same servers.
        noise_stop = threading.Event()
        noise = threading.Thread(target=_busy_client, args=(pools["rw"].dsn(APP_USER, creds.app), noise_stop))
        noise.start()
        try:
            outcomes = [consumer.run_and_record() for _ in range(8)]
        finally:
            noise_stop.set()
            noise.join(10)
    finally:
        consumer.close()
    assert outcomes == [True] * 8
    with psycopg.connect(direct) as conn:
        found = conn.execute("SELECT device_id, metric, value FROM anomalies").fetchall()
    assert found == [("dev-hot", METRIC, 99.0)]


def _busy_client(conninfo: str, stop: threading.Event) -> None:
    with db.connect(conninfo, "noise", 5, autocommit=True) as conn:
        while not stop.is_set():
            conn.execute("SELECT count(*) FROM ingest_batches")


def test_tsflow_connections_never_prepare_server_side(cluster: tuple[PgServer, Credentials],
                                                        pools: dict[str, PgBouncer]) -> None:
    _, creds = cluster
    with db.connect(pools["rw"].dsn(APP_USER, creds.app), "probe", 5) as conn:
        assert conn.prepare_threshold is None
        for _ in range(10):
            conn.execute("SELECT 1").fetchone()
        conn.rollback()
        assert conn.execute("SELECT count(*) FROM pg_prepared_statements").fetchone() == (0,)


def test_200_clients_share_a_pool_of_10_server_connections(
    cluster: tuple[PgServer, Credentials], pools: dict[str, PgBouncer]
) -> None:
    _, creds = cluster
    rw = pools["rw"]
    connections = [psycopg.connect(rw.dsn(APP_USER, creds.app), autocommit=True) for _ in range(CLIENTS)]
    try:
        start = threading.Barrier(CLIENTS + 1)
        errors: list[BaseException] = []
        results: list[int] = []

        def client(conn: psycopg.Connection) -> None:
            try:
                start.wait(30)
                for _ in range(3):
                    row = conn.execute("SELECT count(*) FROM pg_sleep(0.05)").fetchone()
                    results.append(row[0] if row else -1)
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        threads = [threading.Thread(target=client, args=(conn,)) for conn in connections]
        for thread in threads:
            thread.start()
        start.wait(30)
        peak_servers, peak_waiting, peak_clients, peak_backends = 0, 0, 0, 0
        deadline = time.monotonic() + 60
        while any(t.is_alive() for t in threads) and time.monotonic() < deadline:
            pool = next(p for p in rw.show("POOLS", LOOKUP_ROLE, creds.lookup) if p["user"] == APP_USER)
            servers = sum(int(pool[k]) for k in ("sv_active", "sv_idle", "sv_used", "sv_tested", "sv_login"))
            peak_servers = max(peak_servers, servers)
            peak_waiting = max(peak_waiting, int(pool["cl_waiting"]))
            peak_clients = max(peak_clients, int(pool["cl_active"]) + int(pool["cl_waiting"]))
            with psycopg.connect(_direct(cluster), autocommit=True) as conn:
                backends = conn.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE usename = %s AND backend_type = 'client backend'",
                    (APP_USER,),
                ).fetchone()
            peak_backends = max(peak_backends, int(backends[0]) if backends else 0)
            time.sleep(0.05)
        for thread in threads:
            thread.join(30)
    finally:
        for conn in connections:
            conn.close()
    assert not errors, errors[:3]
    assert results == [1] * (3 * CLIENTS)
    clients = next(p for p in rw.show("POOLS", LOOKUP_ROLE, creds.lookup) if p["user"] == APP_USER)
    # The read-only pool's idle server connections (from the consumer test) are app backends too.
    others = sum(1 for s in pools["ro"].show("SERVERS", LOOKUP_ROLE, creds.lookup) if s["user"] == APP_USER)
    assert peak_clients == CLIENTS, peak_clients
    assert peak_waiting > 0, "the clients never had to queue: the test did not load the pool"
    assert POOL_SIZE - 1 <= peak_servers <= POOL_SIZE, peak_servers  # one slot may hold the lookup connection
    assert peak_backends - others <= POOL_SIZE, (peak_backends, others)
    assert int(clients["cl_waiting"]) == 0


def test_safe_shutdown_lets_the_running_transaction_commit_and_exits_despite_idle_clients(
    cluster: tuple[PgServer, Credentials]
) -> None:
    """What the pod's preStop hook relies on: SIGINT, unlike SIGTERM on PgBouncer 1.23+, does not wait
    for idle clients to leave, but lets a transaction in flight finish."""
    server, creds = cluster
    bouncer = PgBouncer(server, creds.lookup, PoolSettings(pool_size=2)).start()
    try:
        idle = psycopg.connect(bouncer.dsn(APP_USER, creds.app), autocommit=True)
        busy = psycopg.connect(bouncer.dsn(APP_USER, creds.app))
        busy.execute("SELECT txid_current()")  # opens a transaction, which holds a server connection
        committed: list[bool] = []

        def finish() -> None:
            busy.execute("SELECT pg_sleep(1)")
            busy.commit()
            committed.append(True)

        worker = threading.Thread(target=finish)
        worker.start()
        time.sleep(0.3)
        assert bouncer.process is not None
        bouncer.process.send_signal(signal.SIGINT)
        bouncer.process.wait(15)  # raises if it waits for the idle client
        worker.join(5)
        assert committed == [True]
        with pytest.raises(psycopg.OperationalError):
            idle.execute("SELECT 1")
        idle.close()
        busy.close()
    finally:
        bouncer.cleanup()


EXPORTER_QUERIES = ("VERSION", "LISTS", "CONFIG", "CLIENTS", "STATS", "DATABASES", "STATS_TOTALS", "POOLS")
"""The SHOW commands pgbouncer_exporter v0.12.1 runs on every scrape (its collector.go)."""
STAND_IN = f"""#!{sys.executable}
# Stands in for the exporter binary: logs in as it does (libpq, like lib/pq, takes PGPASSWORD when the
# connection string has none) and reports what it got.
import json, os, sys
import psycopg
with psycopg.connect(os.environ["PGBOUNCER_EXPORTER_CONNECTION_STRING"], autocommit=True,
                     cursor_factory=psycopg.ClientCursor) as conn:
    rows = {{what: len(conn.execute("SHOW " + what).fetchall()) for what in {EXPORTER_QUERIES!r}}}
    ssl = conn.pgconn.ssl_in_use
print(json.dumps({{"argv": sys.argv[1:], "rows": rows, "ssl": ssl}}))
"""


def kubelet_expand(text: str, env: dict[str, str]) -> str:
    """The kubelet's expansion of a container's command and args: ``$$`` is a literal ``$``, ``$(NAME)`` a
    variable of the container's env; any other reference is left as written."""
    out, i = [], 0
    while i < len(text):
        if text.startswith("$$", i):
            out.append("$")
            i += 2
        elif text.startswith("$(", i) and (end := text.find(")", i)) != -1:
            out.append(env.get(text[i + 2:end], text[i:end + 1]))
            i = end + 1
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def run_exporter_command(recording: Recording, directory: Path, bouncer: PgBouncer,
                         password: str) -> subprocess.CompletedProcess[str]:
    """The rendered exporter container (of the stack ``recording`` holds) as the kubelet starts it. Overridden
    for the test only: the mounted password file (a file of mode 0440, as the kubelet leaves it with fsGroup),
    the exporter binary (:data:`STAND_IN`) and PgBouncer's port."""
    pod = recording.one("kubernetes:apps/v1:Deployment", "pooler-rw").manifest()["spec"]["template"]["spec"]
    container = next(c for c in pod["containers"] if c["name"] == "pgbouncer-exporter")
    env = {e["name"]: e["value"] for e in container["env"]}  # plain values only: no Secret reference
    argv = [kubelet_expand(part, env) for part in [*container["command"], *container["args"]]]
    directory.mkdir(exist_ok=True)
    password_file, stand_in = directory / "password", directory / "pgbouncer_exporter"
    password_file.write_text(password)
    password_file.chmod(0o440)
    stand_in.write_text(STAND_IN)
    stand_in.chmod(0o755)
    script = argv[2]
    assert script.count(EXPORTER_PASSWORD_FILE) and script.count(EXPORTER_BINARY) and "$$" not in script
    argv[2] = script.replace(EXPORTER_PASSWORD_FILE, str(password_file)).replace(EXPORTER_BINARY, str(stand_in))
    connection = env["PGBOUNCER_EXPORTER_CONNECTION_STRING"]
    assert f":{LISTEN_PORT}/" in connection
    env["PGBOUNCER_EXPORTER_CONNECTION_STRING"] = connection.replace(f":{LISTEN_PORT}/", f":{bouncer.port}/")
    return subprocess.run(argv, env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **env},
                          capture_output=True, text=True, timeout=60)


def test_exporter_command_logs_in_as_the_stats_user_with_the_mounted_password(
    cluster: tuple[PgServer, Credentials], pools: dict[str, PgBouncer], tmp_path: Path
) -> None:
    """The container's shell (/bin/sh here is dash; the image's is busybox ash) exports PGPASSWORD from the
    file and execs the exporter with the container's args, which then logs in to the admin console and
    runs every query the exporter runs; a wrong password is refused, so the file's content is what counts."""
    _, creds = cluster
    rw = pools["rw"]
    result = run_exporter_command(run_stack("prod"), tmp_path / "right", rw, creds.lookup + "\n")  # a trailing newline is dropped
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["argv"] == ["--web.listen-address=:9127"] and report["ssl"] is False
    assert sorted(report["rows"]) == sorted(EXPORTER_QUERIES) and report["rows"]["DATABASES"] >= 2, report
    assert creds.lookup not in " ".join(result.args)  # never on a command line (the shell's or the exporter's)

    refused = run_exporter_command(run_stack("prod"), tmp_path / "wrong", rw, creds.lookup + "x")
    assert refused.returncode != 0 and "SASL authentication failed" in refused.stderr, refused.stderr
    # The stats user reads, it does not administer.
    with psycopg.connect(rw.dsn(LOOKUP_ROLE, creds.lookup, "pgbouncer"), autocommit=True,
                         cursor_factory=psycopg.ClientCursor) as conn:
        with pytest.raises(psycopg.Error, match="admin access needed"):
            conn.execute("PAUSE")


def test_exporter_command_stops_without_a_password(
    cluster: tuple[PgServer, Credentials], pools: dict[str, PgBouncer], tmp_path: Path
) -> None:
    result = run_exporter_command(run_stack("prod"), tmp_path, pools["rw"], "")
    assert result.returncode == 1 and result.stdout == ""
    assert f"no password in {tmp_path / 'password'}" in result.stderr
