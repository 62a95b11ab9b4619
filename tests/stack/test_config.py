"""Stack config parsing: defaults, the stack files, and a table of realistic mistakes with exact errors."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from stack.config import PROJECT, ConfigError, parse_stack_config

ROOT = Path(__file__).resolve().parents[2]
STACK_FILES = sorted(ROOT.glob("Pulumi.*.yaml"))
TSFLOW_IMAGE = "registry.example.com/tsflow:0.1.0@sha256:" + "c" * 64
MINIMAL: dict[str, Any] = {"workloads": {"image": TSFLOW_IMAGE}}


def stack_config(path: Path) -> dict[str, Any]:
    """The project's keys of a ``Pulumi.<stack>.yaml`` file, without the project prefix."""
    config = yaml.safe_load(path.read_text())["config"]
    return {key.split(":", 1)[1]: value for key, value in config.items() if key.startswith(f"{PROJECT}:")}


def with_value(path: str, value: Any, base: dict[str, Any] = MINIMAL) -> dict[str, Any]:
    """``base`` (default MINIMAL) with ``value`` set at a dotted path."""
    raw = copy.deepcopy(base)
    node = raw
    *parents, leaf = path.split(".")
    for part in parents:
        node = node.setdefault(part, {})
    node[leaf] = value
    return raw


def test_stack_files_exist() -> None:
    assert {p.name for p in STACK_FILES} >= {"Pulumi.dev.yaml", "Pulumi.prod.yaml"}


@pytest.mark.parametrize("path", STACK_FILES, ids=lambda p: p.name)
def test_every_stack_file_parses(path: Path) -> None:
    config = parse_stack_config(stack_config(path))
    assert config.database.args.replicas >= 1
    assert config.workloads is None or config.workloads.image  # the dr standby runs no workloads


@pytest.mark.parametrize("path", STACK_FILES, ids=lambda p: p.name)
def test_stack_files_pin_the_workload_image_by_digest_and_mark_placeholders(path: Path) -> None:
    config = parse_stack_config(stack_config(path))
    if config.workloads is None:
        return
    assert "@sha256:" in config.workloads.image, config.workloads.image
    if config.workloads.image.endswith("@sha256:" + "0" * 64):  # a placeholder: the file must say so next to it
        lines = path.read_text().splitlines()
        at = next(i for i, line in enumerate(lines) if config.workloads.image in line)
        assert any("replace with your build's digest" in line for line in lines[max(at - 3, 0) : at]), path.name


def test_defaults_are_sensible() -> None:
    config = parse_stack_config(MINIMAL)
    assert config.cluster.namespace == "timescale"
    assert config.database.args.replicas == 1 and not config.database.args.protect
    assert config.database.args.storage.data_size == "10Gi"
    assert config.monitoring.mode == "install" and config.monitoring.install is not None
    assert config.workloads is not None
    assert config.workloads.generator.settings["TSFLOW_BATCH_ROWS"] == "20000"


def test_prod_is_protected_and_highly_available() -> None:
    prod = parse_stack_config(stack_config(ROOT / "Pulumi.prod.yaml"))
    assert prod.database.args.replicas >= 3
    assert prod.database.args.protect
    assert prod.database.args.anti_affinity == "required"
    assert prod.database.autoscaling is not None and prod.database.autoscaling.min_replicas >= prod.database.args.replicas
    assert prod.monitoring.mode == "existing"


def test_disabled_workloads_need_no_image_but_keep_strict_keys() -> None:
    assert parse_stack_config({"workloads": {"enabled": False}}).workloads is None
    with pytest.raises(ConfigError, match="generator.devicez: unknown setting; did you mean 'devices'"):
        parse_stack_config({"workloads": {"enabled": False, "generator": {"devicez": 3}}})


def test_numbers_from_yaml_strings_and_floats_are_accepted() -> None:
    config = parse_stack_config(with_value("timescaledb.replicas", "3") | {"timescaledb": {"replicas": 3.0}})
    assert config.database.args.replicas == 3


BAD_CONFIGS = [
    ("typo in a top-level key", {"timescaldb": {}} | MINIMAL,
     "timescale-k8s:timescaldb: unknown setting; did you mean 'timescaledb'?"),
    ("typo in a nested key", with_value("timescaledb.replica", 3),
     "timescale-k8s:timescaledb.replica: unknown setting; did you mean 'replicas'?"),
    ("zero replicas", with_value("timescaledb.replicas", 0),
     "timescale-k8s:timescaledb.replicas (0): must be a whole number from 1 to 9"),
    ("fractional replicas", with_value("timescaledb.replicas", 2.5),
     "timescale-k8s:timescaledb.replicas (2.5): must be a whole number from 1 to 9"),
    ("storage in GB instead of Gi", with_value("timescaledb.storage.size", "10GB"),
     "timescale-k8s:timescaledb.storage.size ('10GB') has unknown unit 'GB'"),
    ("negative storage", with_value("timescaledb.storage.size", "-5Gi"),
     "timescale-k8s:timescaledb.storage.size ('-5Gi') is not a Kubernetes quantity"),
    ("storage without unit", with_value("timescaledb.storage.size", "100"),
     "timescale-k8s:timescaledb.storage.size ('100') must be at least 1Mi"),
    ("memory in milli-bytes", with_value("timescaledb.resources", {"memoryRequest": "512m"}),
     "timescale-k8s:timescaledb.resources.memoryRequest ('512m') uses 'm' (milli); for mebibytes write 'Mi'"),
    ("cpu in memory units", with_value("timescaledb.resources", {"cpuRequest": "2Gi"}),
     "timescale-k8s:timescaledb.resources.cpuRequest ('2Gi') is a memory unit"),
    ("cpu limit below request", with_value("timescaledb.resources", {"cpuRequest": "2", "cpuLimit": "1"}),
     "timescale-k8s:timescaledb.resources.cpuLimit (1) must be >= cpuRequest (2)"),
    ("unpinned database image", with_value("timescaledb.image", "timescale/timescaledb-ha"),
     "timescale-k8s:timescaledb.image ('timescale/timescaledb-ha') is not pinned"),
    ("latest workload image", with_value("workloads.image", "tsflow:latest"),
     "timescale-k8s:workloads.image ('tsflow:latest') must be pinned by digest"),
    ("workload image with a full version tag but no digest", with_value("workloads.image", "tsflow:0.1.0"),
     "timescale-k8s:workloads.image ('tsflow:0.1.0') must be pinned by digest: append @sha256:"),
    ("workload image with a short digest", with_value("workloads.image", "tsflow:0.1.0@sha256:abc123"),
     "timescale-k8s:workloads.image ('tsflow:0.1.0@sha256:abc123') must be pinned by digest"),
    ("workload image with an upper-case digest", with_value("workloads.image", "tsflow@sha256:" + "AB" * 32),
     f"timescale-k8s:workloads.image ('tsflow@sha256:{'AB' * 32}') must be pinned by digest"),
    ("floating database major tag", with_value("timescaledb.image", "timescale/timescaledb-ha:pg17"),
     "timescale-k8s:timescaledb.image ('timescale/timescaledb-ha:pg17') is not pinned to one build"),
    ("floating database minor tag", with_value("timescaledb.image", "timescale/timescaledb-ha:pg17-ts2.18"),
     "timescale-k8s:timescaledb.image ('timescale/timescaledb-ha:pg17-ts2.18') is not pinned to one build"),
    ("database tag without the TimescaleDB patch", with_value("timescaledb.image", "timescale/timescaledb-ha:pg17.4-ts2.18"),
     "timescale-k8s:timescaledb.image ('timescale/timescaledb-ha:pg17.4-ts2.18') is not pinned to one build"),
    ("floating exporter tag", with_value("timescaledb.exporterImage", "quay.io/prometheuscommunity/postgres-exporter:v0.17"),
     "timescale-k8s:timescaledb.exporterImage ('quay.io/prometheuscommunity/postgres-exporter:v0.17') uses the floating tag 'v0.17'"),
    ("major upgrade by image bump", with_value("timescaledb.image", "timescale/timescaledb-ha:pg18.1-ts2.25.0"),
     "timescale-k8s:timescaledb.image ('timescale/timescaledb-ha:pg18.1-ts2.25.0') is PostgreSQL 18 but the cluster's "
     "data directory is PostgreSQL 17 (postgresMajor): in-place major upgrades are not supported"),
    ("autoscaler max below min", with_value("timescaledb.autoscaling", {"minReplicas": 4, "maxReplicas": 3}),
     "timescale-k8s:timescaledb.autoscaling.maxReplicas (3) must be >= minReplicas (4)"),
    ("autoscaler min below database replicas",
     {"timescaledb": {"replicas": 3, "autoscaling": {"minReplicas": 2, "maxReplicas": 5}}} | {"workloads": MINIMAL["workloads"]},
     "timescale-k8s:timescaledb.autoscaling.minReplicas (2) must be >= the database's configured replicas (3)"),
    ("autoscaler utilisation above 100", with_value("workloads.consumer.autoscaling", {"maxReplicas": 3, "cpuUtilization": 150}),
     "timescale-k8s:workloads.consumer.autoscaling.cpuUtilization (150): must be a whole number from 1 to 100"),
    ("autoscaler without max", with_value("workloads.generator.autoscaling", {"minReplicas": 1}),
     "timescale-k8s:workloads.generator.autoscaling.maxReplicas: is required but not set"),
    ("unknown anti-affinity", with_value("timescaledb.antiAffinity", "hard"),
     "timescale-k8s:timescaledb.antiAffinity ('hard'): must be one of preferred, required"),
    ("namespace with capitals", with_value("cluster.namespace", "TimescaleDB"),
     "timescale-k8s:cluster.namespace ('TimescaleDB'): must be a DNS-1123 label"),
    ("protect as a word", with_value("timescaledb.protect", "yes"),
     "timescale-k8s:timescaledb.protect ('yes'): must be true or false"),
    ("database name with a dash", with_value("timescaledb.database", "my-app"),
     "timescale-k8s:timescaledb.database ('my-app'): must be a lower-case SQL identifier"),
    ("same user for app and reader", with_value("timescaledb.readerUser", "app"),
     "timescale-k8s:timescaledb.readerUser ('app') must differ from appUser ('app')"),
    ("database volume too small for PostgreSQL", with_value("timescaledb.storage.size", "512Mi"),
     "timescale-k8s:timescaledb.storage.size (512Mi) must be at least 1Gi"),
    ("application role named like a system role", with_value("timescaledb.appUser", "postgres"),
     "timescale-k8s:timescaledb.appUser ('postgres') is reserved for the cluster"),
    ("TLS secret name with underscores", with_value("timescaledb.tlsSecretName", "db_tls"),
     "timescale-k8s:timescaledb.tlsSecretName ('db_tls') must be a Secret name"),
    ("preload libraries that drop timescaledb", with_value("timescaledb.parameters", {"shared_preload_libraries": "pg_stat_statements"}),
     "timescale-k8s:timescaledb.parameters['shared_preload_libraries'] ('pg_stat_statements') must include 'timescaledb'"),
    ("unknown monitoring mode", with_value("monitoring.mode", "operator"),
     "timescale-k8s:monitoring.mode ('operator'): must be one of install, existing, disabled"),
    ("existing mode without labels", with_value("monitoring", {"mode": "existing", "existing": {"prometheusNamespace": "monitoring"}}),
     "timescale-k8s:monitoring.existing.monitorLabels: must name the labels your Prometheus selects"),
    ("install settings in existing mode", with_value("monitoring", {"mode": "existing", "install": {}, "existing": {"monitorLabels": {"release": "x"}}}),
     "timescale-k8s:monitoring.install: only applies when mode is 'install' (mode is 'existing')"),
    ("installed monitoring cannot be rendered", {"cluster": {"renderDir": "out"}} | MINIMAL,
     "timescale-k8s:monitoring.mode ('install'): cannot be rendered to cluster.renderDir ('out')"),
    ("prometheus retention in words", with_value("monitoring.install", {"retention": "7 days"}),
     "timescale-k8s:monitoring.install.retention ('7 days') must be a Prometheus duration like '7d'"),
    ("section given as a string", with_value("timescaledb.storage", "10Gi"),
     "timescale-k8s:timescaledb.storage ('10Gi'): must be a mapping of settings, got str"),
    ("workloads on without an image", {"workloads": {"enabled": True}},
     "timescale-k8s:workloads.image: is required when workloads are enabled"),
    ("generator interval of zero", with_value("workloads.generator.intervalSeconds", 0),
     "timescale-k8s:workloads.generator.intervalSeconds (0): must be a number from 0.01 to 3600"),
    ("parameters as a list", with_value("timescaledb.parameters", ["work_mem=64MB"]),
     "timescale-k8s:timescaledb.parameters (['work_mem=64MB']): must be a mapping of names to plain values"),
]


@pytest.mark.parametrize(("raw", "message"), [(raw, msg) for _, raw, msg in BAD_CONFIGS], ids=[c[0] for c in BAD_CONFIGS])
def test_bad_config_fails_with_a_clear_error(raw: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_stack_config(raw)
    assert str(caught.value).startswith(message), str(caught.value)


@pytest.mark.parametrize(
    ("key", "image"),
    [
        ("timescaledb.image", "timescale/timescaledb-ha:pg17.4-ts2.18.2"),
        ("timescaledb.image", "timescale/timescaledb-ha:pg17.11-ts2.30.1-all"),
        ("timescaledb.image", "registry.example.com/mirror/timescaledb-ha@sha256:" + "a" * 64),
        ("timescaledb.exporterImage", "quay.io/prometheuscommunity/postgres-exporter:v0.17.1"),
        ("workloads.image", "registry.example.com/tsflow:1.4.0-rc1@sha256:" + "b" * 64),
        ("workloads.image", "tsflow@sha256:" + "b" * 64),
        ("workloads.image", "localhost:5001/tsflow:0.1.0@sha256:" + "0" * 64),
    ],
)
def test_images_pinned_to_one_build_are_accepted(key: str, image: str) -> None:
    config = parse_stack_config(with_value(key, image))
    section, field = key.split(".")
    values = {"image": config.database.args.image, "exporterImage": config.database.args.exporter_image}
    assert (config.workloads.image if section == "workloads" else values[field]) == image  # type: ignore[union-attr]


def test_the_workload_image_error_says_how_to_get_the_digest() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_stack_config(with_value("workloads.image", "registry.example.com/platform/tsflow:0.1.0"))
    message = str(caught.value)
    assert message.startswith("timescale-k8s:workloads.image ('registry.example.com/platform/tsflow:0.1.0')"), message
    assert "--metadata-file" in message and "containerimage.digest" in message, message
    assert "docker inspect --format '{{index .RepoDigests 0}}'" in message, message


def test_default_images_carry_digests() -> None:
    args = parse_stack_config(MINIMAL).database.args
    for image in (args.image, args.exporter_image):
        assert "@sha256:" in image, image


def test_a_new_cluster_may_declare_another_major_with_a_matching_image() -> None:
    raw = with_value("timescaledb", {"postgresMajor": 18, "image": "timescale/timescaledb-ha:pg18.1-ts2.25.0"})
    args = parse_stack_config(raw).database.args
    assert (args.postgres_major, args.image) == (18, "timescale/timescaledb-ha:pg18.1-ts2.25.0")
