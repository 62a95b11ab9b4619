"""Values found by config fuzzing that used to be accepted silently: each now fails with a clear error."""

from __future__ import annotations

from typing import Any

import pytest

from stack.config import ConfigError, parse_stack_config
from tests.stack.test_config import MINIMAL, with_value

NONSENSE: list[tuple[str, dict[str, Any], str]] = [
    ("astronomical generator replicas", with_value("workloads.generator.replicas", 10**30),
     "timescale-k8s:workloads.generator.replicas (1000000000000000000000000000000): must be a whole number from 1 to 1000"),
    ("astronomical consumer autoscaling ceiling", with_value("workloads.consumer.autoscaling", {"maxReplicas": 10**30}),
     "timescale-k8s:workloads.consumer.autoscaling.maxReplicas (1000000000000000000000000000000): must be a whole number from 1 to 1000"),
    ("generator that cannot fit its memory limit",
     with_value("workloads.generator", {"devices": 1_000_000, "metricsPerDevice": 100}),
     "timescale-k8s:workloads.generator: devices (1000000) x metricsPerDevice (100) and batchRows (20000) need about"),
    ("batches that cannot fit the memory limit",
     with_value("workloads.generator", {"batchRows": 1_000_000}),
     "timescale-k8s:workloads.generator: devices (100) x metricsPerDevice (4) and batchRows (1000000) need about"),
    ("monitoring chart in the application namespace", with_value("monitoring.install", {"namespace": "timescale"}),
     "timescale-k8s:monitoring.install.namespace ('timescale'): must differ from cluster.namespace"),
    ("database autoscaling floor above replicas",
     with_value("timescaledb", {"replicas": 1, "autoscaling": {"minReplicas": 3, "maxReplicas": 5}}),
     "timescale-k8s:timescaledb.autoscaling.minReplicas (3): must not exceed timescale-k8s:timescaledb.replicas (1)"),
    ("a size that is not a size", with_value("timescaledb.parameters", {"shared_buffers": "lots"}),
     "timescale-k8s:timescaledb.parameters['shared_buffers'] ('lots') must be a size such as '256MB'"),
    ("more connections than PostgreSQL allows", with_value("timescaledb.parameters", {"max_connections": 1_000_000}),
     "timescale-k8s:timescaledb.parameters['max_connections'] ('1000000') is outside the PostgreSQL range 1 .. 262143"),
    ("connections whose shared memory exceeds the pod", with_value("timescaledb.parameters", {"max_connections": 100_000}),
     "timescale-k8s:timescaledb.parameters 'max_connections' need about"),
    ("shared buffers larger than the pod", with_value("timescaledb.parameters", {"shared_buffers": "2GB"}),
     "timescale-k8s:timescaledb.parameters 'shared_buffers' need about"),
    ("md5 passwords", with_value("timescaledb.parameters", {"password_encryption": "md5"}),
     "timescale-k8s:timescaledb.parameters['password_encryption'] ('md5') must be 'scram-sha-256'"),
    ("ssl without a certificate", with_value("timescaledb.parameters", {"ssl": "on"}),
     "timescale-k8s:timescaledb.parameters['ssl'] ('on') needs tlsSecretName"),
    ("ssl switched off under a TLS secret",
     with_value("timescaledb", {"tlsSecretName": "db-tls", "parameters": {"ssl": False}}),
     "timescale-k8s:timescaledb.parameters['ssl'] ('false') contradicts tlsSecretName"),
    ("a boolean that is not one", with_value("timescaledb.parameters", {"jit": "sometimes"}),
     "timescale-k8s:timescaledb.parameters['jit'] ('sometimes') must be a boolean"),
    ("an enum value that does not exist", with_value("timescaledb.parameters", {"synchronous_commit": "maybe"}),
     "timescale-k8s:timescaledb.parameters['synchronous_commit'] ('maybe') must be one of 'local', 'remote_write'"),
    ("a duration in a size unit", with_value("timescaledb.parameters", {"checkpoint_timeout": "5MB"}),
     "timescale-k8s:timescaledb.parameters['checkpoint_timeout'] ('5MB') has unit 'MB'"),
    ("replicas that cannot stream", with_value("timescaledb.parameters", {"wal_level": "minimal"}),
     "timescale-k8s:timescaledb.parameters['wal_level'] ('minimal') must be 'replica' or 'logical'"),
    ("certificate path overridden", with_value("timescaledb.parameters", {"ssl_cert_file": "/tmp/x.crt"}),
     "timescale-k8s:timescaledb.parameters['ssl_cert_file'] ('/tmp/x.crt') is set by the component"),
]


@pytest.mark.parametrize(("raw", "message"), [(raw, msg) for _, raw, msg in NONSENSE], ids=[c[0] for c in NONSENSE])
def test_nonsense_fails_with_a_clear_error(raw: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_stack_config(raw)
    assert str(caught.value).startswith(message), str(caught.value)


@pytest.mark.parametrize("parameters", [
    {"work_mem": "64MB", "checkpoint_timeout": "15min", "jit": "off", "synchronous_commit": "remote_write"},
    {"shared_buffers": "512MB", "max_connections": 200, "random_page_cost": 1.5, "statement_timeout": 0},
    {"wal_level": "logical", "password_encryption": "SCRAM-SHA-256", "log_min_duration_statement": "-1"},
])
def test_sensible_parameters_pass(parameters: dict[str, Any]) -> None:
    parse_stack_config(with_value("timescaledb.parameters", parameters))


def test_the_generator_estimate_leaves_the_stack_defaults_and_files_alone() -> None:
    parse_stack_config(MINIMAL)
    parse_stack_config(with_value("workloads.generator", {"devices": 1000, "metricsPerDevice": 8, "batchRows": 20000,
                                                          "resources": {"memoryRequest": "256Mi", "memoryLimit": "512Mi"}}))
