"""Signals: `python -m tsflow generate` stops, flushes everything it generated and exits 0."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

from wl_support import json_lines, table_counts, tsflow_env


def _get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def _read_until(proc: subprocess.Popen[str], msg: str, timeout: float) -> list[dict[str, object]]:
    """Read JSON log lines until one has `msg` (bounded by time)."""
    assert proc.stdout is not None
    seen: list[dict[str, object]] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        seen.append(json.loads(line))
        if seen[-1]["msg"] == msg:
            return seen
    raise AssertionError(f"no {msg!r} log line; got {seen}")


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_flushes_everything_and_exits_zero(migrated_dsn: str, signum: int) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tsflow", "generate", "--metrics-host", "127.0.0.1", "--batch-age", "5s"],
        env=tsflow_env(TSFLOW_DSN=migrated_dsn, TSFLOW_METRICS_PORT="0", TSFLOW_GENERATOR_ID="sig",
                       TSFLOW_DEVICES="50", TSFLOW_METRICS_PER_DEVICE="4", TSFLOW_INTERVAL="50ms",
                       TSFLOW_SHUTDOWN_TIMEOUT="10"),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        logs = _read_until(proc, "generator starting", 15)
        port = int(next(line["port"] for line in logs if line["msg"] == "serving /metrics, /healthz, /readyz"))
        time.sleep(1.5)
        assert _get(port, "/healthz")[0] == 200
        assert _get(port, "/readyz")[0] == 200
        status, body = _get(port, "/metrics")
        assert status == 200 and "tsflow_generator_buffer_capacity_batches 30.0" in body
        proc.send_signal(signum)
        started = time.monotonic()
        out, err = proc.communicate(timeout=15)
        elapsed = time.monotonic() - started
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    assert proc.returncode == 0, err
    assert elapsed < 10
    stopped = [line for line in json_lines(out) if line["msg"] == "generator stopped"]
    assert len(stopped) == 1
    summary = stopped[0]
    counts = table_counts(migrated_dsn)
    # --batch-age 5s: the last rows were only buffered when the signal came, so they prove the flush.
    assert int(summary["rows_generated"]) > 0  # type: ignore[call-overload]
    assert summary["rows_generated"] == summary["rows_written"] == counts["rows"] == counts["distinct"]
    assert summary["unflushed_rows"] == 0
    assert err == ""
