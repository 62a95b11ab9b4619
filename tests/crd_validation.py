"""Schema checks for our custom resources: prometheus-operator's (PodMonitor, PrometheusRule, ServiceMonitor)
and cert-manager's (Certificate).

``tests.checks.schema_problems`` covers built-in kinds only. This module hands custom resources to
``tests/crd_schemas/validate.mjs`` (Node), which validates them with the models of the npm packages
``@kubernetes-models/prometheus-operator`` and ``@kubernetes-models/cert-manager`` (exact versions in
``tests/crd_schemas/package.json``) and also reports unknown fields, since those schemas allow any extra
property and a typo would otherwise pass. Install once with
``npm ci --prefix tests/crd_schemas --no-audit --no-fund``.
"""

from __future__ import annotations

import atexit
import json
import os
import selectors
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any

CRD_SCHEMAS = Path(__file__).resolve().parent / "crd_schemas"
VALIDATOR = CRD_SCHEMAS / "validate.mjs"
MONITORING_API = "monitoring.coreos.com/v1"
CERT_MANAGER_API = "cert-manager.io/v1"
VALIDATED_APIS = (MONITORING_API, CERT_MANAGER_API)
INSTALL_HINT = "npm ci --prefix tests/crd_schemas --no-audit --no-fund"
_REQUIRED_PACKAGES = (
    "@kubernetes-models/prometheus-operator", "@kubernetes-models/cert-manager", "@kubernetes-models/validate", "typescript",
)


def crd_validator_available() -> str | None:
    """Why the validator cannot run (a skip reason), or ``None`` when node and the packages are installed."""
    if shutil.which("node") is None:
        return "node is not installed (needed for tests/crd_schemas/validate.mjs)"
    missing = [p for p in _REQUIRED_PACKAGES if not (CRD_SCHEMAS / "node_modules" / p / "package.json").is_file()]
    if missing:
        return f"npm packages {', '.join(missing)} are not installed; run: {INSTALL_HINT}"
    return None


def custom_resource_problems(manifests: Sequence[Mapping[str, Any]]) -> list[str]:
    """Schema errors and unknown fields of every object of ``VALIDATED_APIS``, as
    ``"<Kind>/<name>: <message> (at <path>)"``; other API groups are ignored (``schema_problems`` has them).

    A kind of those API groups the validator has no model for is a problem too, so nothing of ours goes
    unchecked silently. Raises ``RuntimeError`` when the validator is unavailable or fails.
    """
    reason = crd_validator_available()
    if reason is not None:
        raise RuntimeError(reason)
    ours = [m for m in manifests if m.get("apiVersion") in VALIDATED_APIS]
    if not ours:
        return []
    result = _VALIDATOR.validate(ours)
    unvalidated = [f"{ref}: no schema for this kind, not validated" for ref in result["skipped"]]
    return [*result["problems"], *unvalidated]


CALL_TIMEOUT_S = 120.0
"""Most one validation may take (a first call compiles the TypeScript program, about 3 s)."""


class _ValidatorProcess:
    """``validate.mjs --serve``, started on first use and kept for the test process (building its TypeScript
    program takes about 3 s, which every call paid before); restarted if it died or hung past CALL_TIMEOUT_S,
    stopped at exit. Its stderr goes to a temporary file, so it can never fill a pipe and stall the validator."""

    def __init__(self, command: Sequence[str] = ("node", str(VALIDATOR), "--serve"),
                 call_timeout: float = CALL_TIMEOUT_S) -> None:
        self._command = tuple(command)
        self._call_timeout = call_timeout
        self._process: subprocess.Popen[bytes] | None = None
        self._stderr: IO[bytes] | None = None
        self._lock = threading.Lock()

    def validate(self, manifests: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        with self._lock:
            process = self._running()
            assert process.stdin is not None and process.stdout is not None
            try:
                process.stdin.write(json.dumps(manifests).encode() + b"\n")
                process.stdin.flush()
                line, cause = _read_line(process.stdout.fileno(), time.monotonic() + self._call_timeout), ""
            except (OSError, TimeoutError) as error:
                line, cause = b"", str(error) or type(error).__name__
            if not line.endswith(b"\n"):
                self._process = None
                process.kill()
                process.wait(timeout=10)
                raise RuntimeError(f"{VALIDATOR.name} failed (exit status {process.returncode}, "
                                   f"{self._call_timeout:.0f} s allowed): "
                                   f"{cause or 'no answer'}; its stderr: {self._stderr_tail()}")
            result = json.loads(line)
            if "error" in result:
                raise RuntimeError(f"{VALIDATOR.name}: {result['error']}")
            return result

    def _running(self) -> subprocess.Popen[bytes]:
        if self._process is None or self._process.poll() is not None:
            if self._stderr is not None:
                self._stderr.close()
            self._stderr = tempfile.TemporaryFile()
            self._process = subprocess.Popen(
                self._command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                stderr=self._stderr, cwd=CRD_SCHEMAS,
            )
            atexit.register(self._stop, self._process)
        return self._process

    def _stderr_tail(self, limit: int = 4000) -> str:
        if self._stderr is None:
            return ""
        self._stderr.seek(0)
        return self._stderr.read().decode(errors="replace")[-limit:].strip() or "(empty)"

    @staticmethod
    def _stop(process: subprocess.Popen[bytes]) -> None:
        if process.poll() is None:
            assert process.stdin is not None
            process.stdin.close()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()


def _read_line(fd: int, deadline: float) -> bytes:
    """Bytes from ``fd`` up to and including the first newline; fewer (no newline) at end of file; TimeoutError
    at ``deadline`` (time.monotonic()). The validator answers one line per request, so nothing follows it."""
    received = bytearray()
    with selectors.DefaultSelector() as selector:
        selector.register(fd, selectors.EVENT_READ)
        while not received.endswith(b"\n"):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("no answer in time")
            if not selector.select(remaining):
                continue
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                break
            received += chunk
    return bytes(received)


_VALIDATOR = _ValidatorProcess()
