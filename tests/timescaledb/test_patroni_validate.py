"""Patroni itself (``patroni --validate-config``) accepts the configuration each stack renders.

The config is validated with the environment the pod really gets: literal env values from the rendered
StatefulSet (with ``$(VAR)`` references expanded as the kubelet does), downward-API fields and Secret
references replaced by sample values, and stub PostgreSQL executables on PATH (Patroni checks
``bin_dir``/PATH for them; the image ships the real ones).
"""

from __future__ import annotations

import json
import re
import shutil
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.stacks import STACKS, run_stack

PATRONI = shutil.which("patroni", path=str(Path(__file__).resolve().parents[2] / ".venv" / "bin")) or shutil.which("patroni")
POSTGRES_BINARIES = ("pg_ctl", "initdb", "pg_controldata", "pg_basebackup", "postgres", "pg_isready", "pg_rewind")
FIELD_SAMPLES = {"metadata.name": "timescaledb-0", "metadata.namespace": "timescale", "status.podIP": "10.1.2.3"}

pytestmark = pytest.mark.skipif(PATRONI is None, reason="patroni is not installed (requirements-dev.txt)")


def patroni_pod(stack: str) -> tuple[dict[str, Any], str]:
    """The Patroni container of the stack's StatefulSet and the config file its ConfigMap carries."""
    manifests = run_stack(stack).manifests()
    statefulset = next(m for m in manifests if m["kind"] == "StatefulSet")
    container = next(
        c for c in statefulset["spec"]["template"]["spec"]["containers"]
        if any(e["name"] == "PATRONI_SCOPE" for e in c.get("env") or [])
    )
    config = next(m["data"]["patroni.yaml"] for m in manifests if m["kind"] == "ConfigMap" and "patroni.yaml" in m.get("data", {}))
    return container, config


def kubelet_env(container: dict[str, Any]) -> dict[str, str]:
    """The container's environment as the kubelet would build it, with sample values for references."""
    env: dict[str, str] = {}
    for item in container.get("env") or []:
        if "value" in item:
            env[item["name"]] = re.sub(r"\$\((\w+)\)", lambda m: env.get(m.group(1), m.group(0)), item["value"])
        elif "fieldRef" in item.get("valueFrom", {}):
            env[item["name"]] = FIELD_SAMPLES[item["valueFrom"]["fieldRef"]["fieldPath"]]
        else:
            env[item["name"]] = "sample-secret-value"
    # Variables the start command exports (Patroni's passwords, read from mounted files) before exec patroni.
    for name in re.findall(r"\b(PATRONI_[A-Z_]+)=\"\$\$\(<", " ".join(container.get("command") or [])):
        env[name] = "sample-secret-from-file"
    return env


def validate(config_text: str, env: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for name in POSTGRES_BINARIES:
        stub = bin_dir / name
        stub.write_text("#!/bin/sh\nexit 0\n")
        stub.chmod(stub.stat().st_mode | stat.S_IEXEC)
    config_file = tmp_path / "patroni.yaml"
    config_file.write_text(config_text)
    return subprocess.run(
        [str(PATRONI), "--validate-config", str(config_file)],
        env={**env, "PATH": f"{bin_dir}:/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("stack", STACKS)
def test_patroni_accepts_the_rendered_configuration(stack: str, tmp_path: Path) -> None:
    container, config = patroni_pod(stack)
    env = kubelet_env(container)
    assert env["PATRONI_POSTGRESQL_CONNECT_ADDRESS"] == "10.1.2.3:5432", "$(POD_IP) must expand"
    result = validate(config, env, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_patroni_validation_can_fail(tmp_path: Path) -> None:
    container, config = patroni_pod(STACKS[0])
    broken = json.loads(config)
    broken["bootstrap"]["dcs"]["ttl"] = "thirty"
    env = kubelet_env(container)
    del env["PATRONI_RESTAPI_CONNECT_ADDRESS"]
    result = validate(json.dumps(broken), env, tmp_path)
    assert result.returncode != 0
    assert "bootstrap.dcs.ttl" in result.stdout + result.stderr
    assert "restapi.connect_address" in result.stdout + result.stderr
