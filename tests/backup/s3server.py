"""moto's S3 API over TLS on loopback, framed so pgBackRest can talk to it (run as a script).

``moto_server`` itself cannot serve pgBackRest: werkzeug's development server answers some requests
without ``Content-Length`` and always with ``Connection: close``, then closes the TLS socket without a
close_notify alert. pgBackRest then reads the body "until close" and OpenSSL 3 reports
``unexpected eof while reading`` (TLS error [1:167772454]) on every PUT. This launcher serves the same
moto application with every response length-framed and each TLS session shut down cleanly.

moto accepts any credentials; with ACCESS_KEY given, a request signed with another access key id (or
unsigned) gets S3's ``403 InvalidAccessKeyId``, so a test sees which key its client really sent (the
signature, and so the secret key, is still not checked).

Usage: ``python s3server.py HOST PORT CERT KEY [ACCESS_KEY]``.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Iterable
from typing import Any

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from werkzeug.serving import WSGIRequestHandler, run_simple


class _CleanTlsShutdown(WSGIRequestHandler):
    def finish(self) -> None:
        super().finish()
        try:
            self.connection.settimeout(5)
            self.connection.unwrap()  # send close_notify before the socket closes
        except (OSError, ValueError):
            pass


def _length_framed(app: Callable[..., Iterable[bytes]]) -> Callable[..., list[bytes]]:
    def framed(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        captured: dict[str, Any] = {}

        def capture(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Callable[[bytes], None]:
            captured.update(status=status, headers=headers)
            return lambda data: None

        body = b"".join(app(environ, capture))
        headers = list(captured["headers"])
        if not any(name.lower() == "content-length" for name, _ in headers):
            headers.append(("Content-Length", str(len(body))))
        start_response(captured["status"], headers)
        return [body]

    return framed


def _only_access_key(app: Callable[..., Iterable[bytes]], access_key: str) -> Callable[..., Iterable[bytes]]:
    def checked(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        sent = re.search(r"Credential=([^/,\s]+)/", environ.get("HTTP_AUTHORIZATION", ""))
        if sent is None or sent.group(1) != access_key:
            body = b"<Error><Code>InvalidAccessKeyId</Code><Message>unknown access key</Message></Error>"
            start_response("403 Forbidden", [("Content-Type", "application/xml"), ("Content-Length", str(len(body)))])
            return [body]
        return app(environ, start_response)

    return checked


def main(host: str, port: str, cert: str, key: str, access_key: str | None = None) -> None:
    app: Callable[..., Iterable[bytes]] = DomainDispatcherApplication(create_backend_app)
    if access_key is not None:
        app = _only_access_key(app, access_key)
    app = _length_framed(app)
    run_simple(host, int(port), app, threaded=True, request_handler=_CleanTlsShutdown, ssl_context=(cert, key))


if __name__ == "__main__":
    main(*sys.argv[1:6])
