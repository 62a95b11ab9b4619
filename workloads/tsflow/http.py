"""Tiny HTTP server for /metrics, /healthz and /readyz (one per app, own registry)."""

from __future__ import annotations

import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

log = logging.getLogger("tsflow.http")


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


def _handler(registry: CollectorRegistry, health: Health) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
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


class ProbeServer:
    """Serves the registry and probes on host:port in a daemon thread (port 0: any free port)."""

    def __init__(self, registry: CollectorRegistry, health: Health, host: str, port: int) -> None:
        self._server = ThreadingHTTPServer((host, port), _handler(registry, health))
        self._server.daemon_threads = True
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
