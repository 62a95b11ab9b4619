"""Open many idle connections to tsflow's metrics server; report threads, refusals and when they close.

    .venv/bin/python bench/http_idle.py [connections]
"""

from __future__ import annotations

import socket
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "workloads"))

from prometheus_client import CollectorRegistry  # noqa: E402

from tsflow.http import IO_TIMEOUT_S, MAX_CONNECTIONS, Health, ProbeServer  # noqa: E402


def main(count: int) -> None:
    before = threading.active_count()
    with ProbeServer(CollectorRegistry(), Health(), "127.0.0.1", 0) as server:
        start = time.monotonic()
        idle = [socket.create_connection(("127.0.0.1", server.port), timeout=30) for _ in range(count)]
        time.sleep(0.5)
        print(f"{count} idle connections opened in {time.monotonic() - start:.2f}s; "
              f"threads: {before} before, {threading.active_count()} with them open "
              f"(limit {MAX_CONNECTIONS}, timeout {IO_TIMEOUT_S}s)")
        for sock in idle:
            try:
                sock.recv(1)
            except OSError:
                pass
        print(f"all closed by the server {time.monotonic() - start:.2f}s after the first connect; "
              f"threads now {threading.active_count()}")
        for sock in idle:
            sock.close()


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1500)
