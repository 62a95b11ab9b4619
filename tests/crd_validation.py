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
import shutil
import subprocess
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

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


class _ValidatorProcess:
    """``validate.mjs --serve``, started on first use and kept for the test process (building its TypeScript
    program takes about 3 s, which every call paid before); restarted if it died, stopped at exit."""

    def __init__(self) -> None:
        self._process: subprocess.Popen[str] | None = None
        self._lock = threading.Lock()

    def validate(self, manifests: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        with self._lock:
            process = self._running()
            assert process.stdin is not None and process.stdout is not None
            try:
                process.stdin.write(json.dumps(manifests) + "\n")
                process.stdin.flush()
                line = process.stdout.readline()
            except OSError as error:
                line, cause = "", str(error)
            else:
                cause = ""
            if not line:
                self._process = None
                process.kill()
                _, stderr = process.communicate(timeout=10)
                raise RuntimeError(f"{VALIDATOR.name} exited with {process.returncode}: {(stderr or cause).strip()}")
            result = json.loads(line)
            if "error" in result:
                raise RuntimeError(f"{VALIDATOR.name}: {result['error']}")
            return result

    def _running(self) -> subprocess.Popen[str]:
        if self._process is None or self._process.poll() is not None:
            self._process = subprocess.Popen(
                ["node", str(VALIDATOR), "--serve"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                stderr=subprocess.PIPE, text=True, cwd=CRD_SCHEMAS,
            )
            atexit.register(self._stop, self._process)
        return self._process

    @staticmethod
    def _stop(process: subprocess.Popen[str]) -> None:
        if process.poll() is None:
            assert process.stdin is not None
            process.stdin.close()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()


_VALIDATOR = _ValidatorProcess()
