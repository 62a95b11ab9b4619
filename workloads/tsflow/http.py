"""Tiny HTTP server for /metrics, /healthz and /readyz (one per app, own registry).

Bounded: a connection gets ``IO_TIMEOUT_S`` per read and write (an idle or slow client is dropped), and at
most ``MAX_CONNECTIONS`` are served at once; beyond that a new connection is closed at once instead of
getting a thread. Without the bounds, 1,500 idle connections held 1,503 threads open for good.
"""

from __future__ import annotations

import logging
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

log = logging.getLogger("tsflow.http")

IO_TIMEOUT_S = 5.0
"""Seconds a connection may stay silent while a request is read or a response written."""
MAX_CONNECTIONS = 16
"""Connections served at once (Prometheus and the kubelet's probes need a handful)."""


class Health:
    """Liveness/readiness flags shared between the app threads and the probe handler."""

    def __init__(self) -> None:
        self._ready = threading.Event()

    def set_ready(self, ready: bool) -> None:
        """Mark the app (not) ready: connected to the database with the schema in place."""
        if ready:
            self._ready.set()
        else:
            self._ready.clear()

    @property
    def ready(self) -> bool:
        """Current readiness."""
        return self._ready.is_set()


def _handler(registry: CollectorRegistry, health: Health, io_timeout: float) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        timeout = io_timeout  # StreamRequestHandler sets it on the socket: reads and writes time out

        def do_GET(self) -> None:  # noqa: N802 - http.server naming
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._send(200, generate_latest(registry), CONTENT_TYPE_LATEST)
            elif path == "/healthz":
                self._send(200, b"ok\n")
            elif path == "/readyz":
                ok = health.ready
                self._send(200 if ok else 503, b"ready\n" if ok else b"not ready\n")
            else:
                self._send(404, b"not found\n")

        def _send(self, code: int, body: bytes, ctype: str = "text/plain; charset=utf-8") -> None:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - base signature
            log.debug("http request", extra={"request": format % args})

    return Handler


class _BoundedServer(ThreadingHTTPServer):
    """A thread per connection, but at most ``max_connections`` of them; extra connections are closed."""

    daemon_threads = True
    request_queue_size = 128  # listen backlog: a burst is accepted (and refused) quickly, not left in SYN retries

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], max_connections: int) -> None:
        super().__init__(address, handler)
        self._slots = threading.BoundedSemaphore(max_connections)
        self.refused = 0

    def process_request(self, request: socket.socket, client_address: tuple[str, int]) -> None:  # type: ignore[override]
        if not self._slots.acquire(blocking=False):
            self.refused += 1
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: socket.socket, client_address: tuple[str, int]) -> None:  # type: ignore[override]
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()


class ProbeServer:
    """Serves the registry and probes on host:port in a daemon thread (port 0: any free port)."""

    def __init__(self, registry: CollectorRegistry, health: Health, host: str, port: int, *,
                 io_timeout: float = IO_TIMEOUT_S, max_connections: int = MAX_CONNECTIONS) -> None:
        self._server = _BoundedServer((host, port), _handler(registry, health, io_timeout), max_connections)
        self.port: int = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, name="http", daemon=True)

    def start(self) -> "ProbeServer":
        """Begin serving."""
        self._thread.start()
        log.info("serving /metrics, /healthz, /readyz", extra={"port": self.port})
        return self

    def stop(self) -> None:
        """Stop serving."""
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> "ProbeServer":
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
