"""The plugin's entry point (provider/__main__.py) serves the inferred schema over gRPC, as the engine asks it
to when a consumer runs ``pulumi package add`` (run here without the Pulumi CLI: a real process, a real call)."""

from __future__ import annotations

import json
import os
import selectors
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest
from pulumi.runtime.proto import provider_pb2, provider_pb2_grpc

from components.provider import HOSTED, PACKAGE

ENTRY_POINT = Path(__file__).resolve().parents[2] / "provider" / "__main__.py"
START_TIMEOUT = 120.0
"""Seconds for the provider to import the package and infer its schema (about 3 s here) before it prints its port."""
CALL_TIMEOUT = 60.0
UNUSED_ENGINE = "127.0.0.1:1"
"""The engine address the plugin protocol requires on the command line; GetSchema never calls it."""

pytestmark = pytest.mark.slow


def read_port(process: subprocess.Popen[bytes]) -> int:
    """The port the provider prints on its first stdout line; on timeout, fail with what it wrote to stderr."""
    assert process.stdout is not None
    selector = selectors.DefaultSelector()
    selector.register(process.stdout, selectors.EVENT_READ)
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline and process.poll() is None:
        if selector.select(timeout=0.5):
            return int(process.stdout.readline().decode().strip())
    process.kill()
    _, stderr = process.communicate(timeout=CALL_TIMEOUT)
    raise AssertionError(f"the provider printed no port within {START_TIMEOUT} s (exit {process.returncode}): {stderr.decode()[-4000:]}")


def test_the_entry_point_serves_every_component() -> None:
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    process = subprocess.Popen([sys.executable, str(ENTRY_POINT), UNUSED_ENGINE], cwd=ENTRY_POINT.parent,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        port = read_port(process)
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            response = provider_pb2_grpc.ResourceProviderStub(channel).GetSchema(
                provider_pb2.GetSchemaRequest(version=0), timeout=CALL_TIMEOUT)
    finally:
        process.kill()
        process.communicate(timeout=CALL_TIMEOUT)
    schema = json.loads(response.schema)
    assert schema["name"] == PACKAGE
    assert sorted(schema["resources"]) == sorted(f"{PACKAGE}:index:{library.__name__}" for library, _ in HOSTED)
