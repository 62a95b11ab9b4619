"""PGlite + TimescaleDB (WASM) over the wire protocol, for tests that need TimescaleDB's catalog.

The server (tests/timescale_pglite/server.mjs) is PostgreSQL 17.5 compiled to WebAssembly with
TimescaleDB 2.23.0-dev, one backend, in memory, on 127.0.0.1. Optional: ``SKIP_REASON`` says why it
cannot run (Node >= 20 and ``npm ci --prefix tests/timescale_pglite`` are needed). PGlite has no
background workers, so TimescaleDB's job scheduler never runs jobs by itself.
"""

from __future__ import annotations

import json
import selectors
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

SERVER_DIR = Path(__file__).resolve().parent / "timescale_pglite"
SERVER_SCRIPT = SERVER_DIR / "server.mjs"
PACKAGE = SERVER_DIR / "node_modules" / "@unni-craftsman" / "pglite" / "package.json"
INSTALL_HINT = "npm ci --prefix tests/timescale_pglite"
START_TIMEOUT_S = 30.0


def _skip_reason() -> str | None:
    node = shutil.which("node")
    if node is None:
        return f"node is not installed (needs Node >= 20 and `{INSTALL_HINT}`)"
    version = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=10).stdout.strip()
    major = version.lstrip("v").split(".")[0]
    if not major.isdigit() or int(major) < 20:
        return f"node {version or '?'} is too old (needs >= 20)"
    if not PACKAGE.exists():
        return f"PGlite TimescaleDB packages are not installed: run `{INSTALL_HINT}`"
    return None


SKIP_REASON = _skip_reason()
"""Why the server cannot start here, or None."""


def _read_ready_line(proc: subprocess.Popen[str], log: Path) -> dict[str, object]:
    """The JSON line server.mjs prints once it listens; fail with its stderr if it never comes."""
    assert proc.stdout is not None
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if sel.select(timeout=0.2):
                line = proc.stdout.readline()
                if line:
                    return json.loads(line)
            if proc.poll() is not None:
                break
    raise AssertionError(f"PGlite server did not start (exit {proc.poll()}): {log.read_text()[-2000:]}")


@contextmanager
def timescale_pglite() -> Iterator[str]:
    """DSN of a fresh PGlite + TimescaleDB server on 127.0.0.1:<free port>; stopped on exit."""
    node = shutil.which("node")
    assert node is not None, SKIP_REASON
    with tempfile.TemporaryDirectory(prefix="tsflow-pglite-") as tmp:
        log = Path(tmp) / "server.log"
        with log.open("w") as err:
            proc = subprocess.Popen([node, str(SERVER_SCRIPT), "0"], cwd=SERVER_DIR,
                                    stdout=subprocess.PIPE, stderr=err, text=True)
        try:
            ready = _read_ready_line(proc, log)
            assert ready.get("timescaledb"), f"timescaledb extension not available in PGlite: {ready}"
            # PGlite accepts any password but asks for one; it speaks no TLS (server.mjs answers 'N').
            yield f"host=127.0.0.1 port={ready['port']} user=postgres password=postgres dbname=postgres"
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
            if proc.stdout is not None:
                proc.stdout.close()
