"""Workload under mocks: Deployment wiring, read/write routing, secrets by reference, ordering, autoscaling."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pulumi
import pulumi_kubernetes as k8s
import pulumi_random as random
import psycopg
import pytest

from components.autoscaler import AutoscalingSpec
from components.workload.migration import MigrationJob, MigrationJobArgs
from components.shared.pod_spec import LIBPQ_ENV
from components.shared.types import ConnectionSecretKeys, DatabaseConnection, Resources
from components.workload.workload import Workload, WorkloadArgs
from tests.checks import schema_problems, wiring_problems
from tests.harness import Recording, RecordedResource, run_program, walk_strings

NAMESPACE = "apps"
IMAGE = "ghcr.io/example/tsflow:1.4.2@sha256:" + "d" * 64
RW_HOST = "tsdb-rw.apps.svc.cluster.local"
RO_HOST = "tsdb-ro.apps.svc.cluster.local"
CLIENT_LABELS = {"timescale-k8s/database-client": "tsdb"}
RESOURCES = Resources(cpu_request="100m", memory_request="128Mi", cpu_limit="500m")
DEPLOYMENT = "kubernetes:apps/v1:Deployment"
JOB = "kubernetes:batch/v1:Job"
HPA = "kubernetes:autoscaling/v2:HorizontalPodAutoscaler"
PDB = "kubernetes:policy/v1:PodDisruptionBudget"
SERVICE = "kubernetes:core/v1:Service"
WORKLOADS = Path(__file__).resolve().parents[2] / "workloads"


def fake_database(*, host: str = RW_HOST, read_only_host: str = RO_HOST, port: int = 5432, dbname: str = "metrics", user: str = "app") -> DatabaseConnection:
    """A connection Secret with every ConnectionSecretKeys key, as the TimescaleDB component writes it."""
    password = random.RandomPassword("db-password", length=24, special=False)
    secret = k8s.core.v1.Secret(
        "db-app-credentials",
        metadata=k8s.meta.v1.ObjectMetaArgs(namespace=NAMESPACE),
        string_data={
            ConnectionSecretKeys.HOST: host,
            ConnectionSecretKeys.PORT: str(port),
            ConnectionSecretKeys.DBNAME: dbname,
            ConnectionSecretKeys.USER: user,
            ConnectionSecretKeys.PASSWORD: pulumi.Output.secret(password.result),
            ConnectionSecretKeys.URI: pulumi.Output.secret(pulumi.Output.concat(f"postgresql://{user}:", password.result, f"@{host}:{port}/{dbname}")),
        },
    )
    return DatabaseConnection(
        read_write_host=pulumi.Output.from_input(host),
        read_only_host=pulumi.Output.from_input(read_only_host),
        port=port,
        database=dbname,
        user=user,
        secret_name=secret.metadata.name,
        client_labels=CLIENT_LABELS,
    )


def workload_args(database: DatabaseConnection, **overrides: Any) -> WorkloadArgs:
    base = WorkloadArgs(
        namespace=NAMESPACE,
        image=IMAGE,
        command_args=["generate"],
        component="generator",
        database=database,
        resources=RESOURCES,
        env={"TSFLOW_BATCH_ROWS": "5000"},
    )
    return dataclasses.replace(base, **overrides)


def run_stack() -> tuple[Recording, dict[str, Any]]:
    """Migration, an autoscaled generator and a read-only consumer, as a program composes them."""
    made: dict[str, Any] = {}

    def program() -> None:
        database = fake_database()
        migration = MigrationJob("schema", MigrationJobArgs(namespace=NAMESPACE, image=IMAGE, database=database, resources=RESOURCES))
        made["migration"] = migration
        made["generator"] = Workload(
            "generator",
            workload_args(database, after=[migration.job], autoscaling=AutoscalingSpec(min_replicas=2, max_replicas=6)),
        )
        made["consumer"] = Workload(
            "consumer",
            workload_args(database, command_args=["consume"], component="consumer", read_only=True, after=[migration]),
        )

    return run_program(program), made


@pytest.fixture(scope="module")
def stack() -> tuple[Recording, dict[str, Any]]:
    return run_stack()


@pytest.fixture(scope="module")
def recording(stack: tuple[Recording, dict[str, Any]]) -> Recording:
    return stack[0]


def pod_spec(resource: RecordedResource) -> dict[str, Any]:
    return resource.manifest()["spec"]["template"]["spec"]


def container(resource: RecordedResource) -> dict[str, Any]:
    containers = pod_spec(resource)["containers"]
    assert len(containers) == 1
    return containers[0]


def env_of(resource: RecordedResource) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container(resource)["env"]}


def test_every_manifest_is_schema_valid_and_wired(recording: Recording) -> None:
    manifests = recording.manifests()
    kinds = {m["kind"] for m in manifests}
    assert {"Deployment", "Service", "PodDisruptionBudget", "HorizontalPodAutoscaler", "Job", "Secret"} <= kinds
    assert schema_problems(manifests) == []
    assert wiring_problems(manifests) == []


@pytest.mark.parametrize("component", ["generator", "consumer"])
def test_the_password_is_a_mounted_file_never_an_environment_variable(recording: Recording, component: str) -> None:
    secret = recording.one("kubernetes:core/v1:Secret").manifest()
    deployment = recording.one(DEPLOYMENT, component)
    env = env_of(deployment)
    assert not [name for name, e in env.items() if "valueFrom" in e], "no environment variable from a Secret"
    assert "PGPASSWORD" not in env and set(LIBPQ_ENV) >= {"PGPASSWORD", "PGHOST"}
    assert {k: env[k]["value"] for k in ("PGHOST", "PGPORT", "PGDATABASE", "PGUSER")} == {
        "PGHOST": RW_HOST, "PGPORT": "5432", "PGDATABASE": "metrics", "PGUSER": "app"}
    assert env["TSFLOW_PASSWORD_FILE"]["value"] == "/etc/tsflow/db/password"
    volume = next(v for v in pod_spec(deployment)["volumes"] if v["name"] == "db-credentials")
    assert volume["projected"]["sources"] == [{"secret": {"name": secret["metadata"]["name"],
                                                          "items": [{"key": "password", "path": "password"}]}}]
    assert "PGSSLMODE" not in env, "no TLS on this database: libpq's default applies"


def test_no_password_is_inlined_outside_the_secret(recording: Recording) -> None:
    passwords = recording.mock_passwords()
    assert passwords
    outside = [r for r in recording.kubernetes_objects() if r.type != "kubernetes:core/v1:Secret"]
    assert outside
    for resource in outside:
        leaked = [s for s in walk_strings(resource.manifest()) if any(p in s for p in passwords)]
        assert leaked == [], resource.name


def test_generator_writes_to_primary_and_consumer_reads_from_replicas(recording: Recording) -> None:
    generator = env_of(recording.one(DEPLOYMENT, "generator"))
    consumer = env_of(recording.one(DEPLOYMENT, "consumer"))
    assert "TSFLOW_READ_DSN" not in generator
    assert consumer["TSFLOW_READ_DSN"]["value"] == f"host={RO_HOST} port=5432"
    for env in (generator, consumer):
        assert env["PGHOST"]["value"] == RW_HOST


def test_settings_args_and_image(recording: Recording) -> None:
    generator = container(recording.one(DEPLOYMENT, "generator"))
    consumer = container(recording.one(DEPLOYMENT, "consumer"))
    assert generator["image"] == IMAGE and generator["args"] == ["generate"]
    assert consumer["args"] == ["consume"]
    env = env_of(recording.one(DEPLOYMENT, "generator"))
    assert env["TSFLOW_BATCH_ROWS"]["value"] == "5000"
    assert env["TSFLOW_METRICS_PORT"]["value"] == "8000"


def test_probes_and_service_hit_the_declared_metrics_port(recording: Recording) -> None:
    deployment = recording.one(DEPLOYMENT, "generator")
    app = container(deployment)
    assert app["ports"] == [{"name": "metrics", "containerPort": 8000, "protocol": "TCP"}]
    assert app["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert app["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    assert app["startupProbe"]["httpGet"]["port"] == "metrics"
    service = recording.one(SERVICE, "generator").manifest()
    assert service["spec"]["ports"] == [{"name": "metrics", "port": 8000, "targetPort": "metrics", "protocol": "TCP"}]
    assert service["spec"]["selector"] == deployment.manifest()["spec"]["selector"]["matchLabels"]


def test_pod_is_hardened(recording: Recording) -> None:
    deployment = recording.one(DEPLOYMENT, "generator")
    spec = pod_spec(deployment)
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["runAsUser"] == 10001
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert spec["automountServiceAccountToken"] is False
    context = container(deployment)["securityContext"]
    assert context["readOnlyRootFilesystem"] is True
    assert context["allowPrivilegeEscalation"] is False
    assert context["capabilities"] == {"drop": ["ALL"]}
    assert container(deployment)["volumeMounts"] == [
        {"name": "tmp", "mountPath": "/tmp"}, {"name": "db-credentials", "mountPath": "/etc/tsflow/db", "readOnly": True},
    ]
    assert spec["volumes"][0]["name"] == "tmp" and "emptyDir" in spec["volumes"][0]
    assert spec["securityContext"]["fsGroup"] == 10001, "the mounted password must be readable by the app's group"
    resources = container(deployment)["resources"]
    assert resources["requests"] == {"cpu": "100m", "memory": "128Mi"}
    assert resources["limits"] == {"cpu": "500m", "memory": "128Mi"}


def test_rollout_never_drops_capacity_and_terminates_gracefully(recording: Recording) -> None:
    spec = recording.one(DEPLOYMENT, "consumer").manifest()["spec"]
    assert spec["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}}
    assert spec["template"]["spec"]["terminationGracePeriodSeconds"] == 30
    assert spec["template"]["spec"]["restartPolicy"] == "Always"


def test_pod_labels_admit_the_database_and_carry_recommended_labels(recording: Recording) -> None:
    manifest = recording.one(DEPLOYMENT, "generator").manifest()
    labels = manifest["spec"]["template"]["metadata"]["labels"]
    selector = manifest["spec"]["selector"]["matchLabels"]
    assert CLIENT_LABELS.items() <= labels.items()
    assert selector.items() <= labels.items()
    assert labels["app.kubernetes.io/component"] == "generator"
    assert labels["app.kubernetes.io/instance"] == "generator"
    assert labels["app.kubernetes.io/part-of"] == "timescale-k8s"
    assert labels["app.kubernetes.io/managed-by"] == "pulumi"
    assert labels["app.kubernetes.io/version"] == "1.4.2"
    assert "app.kubernetes.io/version" not in selector


def test_deployments_wait_for_the_migration_job(recording: Recording) -> None:
    job = recording.one(JOB, "schema")
    for component in ("generator", "consumer"):
        assert job.urn in recording.one(DEPLOYMENT, component).dependencies, component


def test_autoscaled_workload_leaves_replicas_to_the_hpa(stack: tuple[Recording, dict[str, Any]]) -> None:
    recording, made = stack
    deployment = recording.one(DEPLOYMENT, "generator")
    assert deployment.ignore_changes == ["spec.replicas"]
    assert deployment.manifest()["spec"]["replicas"] == 2
    hpa = recording.one(HPA, "generator").manifest()
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": deployment.manifest()["metadata"]["name"]}
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 6)
    assert hpa["metadata"]["labels"]["app.kubernetes.io/name"] == "tsflow"
    assert made["generator"].autoscaler is not None
    assert recording.by_urn(recording.one(HPA, "generator").parent).type == "timescale-k8s:index:Autoscaler"


def test_fixed_workload_keeps_its_replicas_and_has_no_hpa(stack: tuple[Recording, dict[str, Any]]) -> None:
    recording, made = stack
    deployment = recording.one(DEPLOYMENT, "consumer")
    assert deployment.ignore_changes == []
    assert deployment.manifest()["spec"]["replicas"] == 1
    assert [r for r in recording.of_type(HPA) if "consumer" in r.name] == []
    assert made["consumer"].autoscaler is None


def test_disruption_budget_only_with_more_than_one_pod(stack: tuple[Recording, dict[str, Any]]) -> None:
    recording, made = stack
    pdb = recording.one(PDB, "generator").manifest()
    selector = recording.one(DEPLOYMENT, "generator").manifest()["spec"]["selector"]
    assert pdb["spec"]["selector"] == selector
    assert pdb["spec"]["maxUnavailable"] == 1
    assert [r for r in recording.of_type(PDB) if "consumer" in r.name] == []
    assert made["consumer"].disruption_budget is None


def test_fixed_replicas_above_one_get_a_budget_and_spread() -> None:
    recording = run_program(lambda: Workload("fleet", workload_args(fake_database(), replicas=3)))
    spec = recording.one(DEPLOYMENT, "fleet").manifest()["spec"]
    assert spec["replicas"] == 3
    assert recording.one(PDB, "fleet")
    spread = spec["template"]["spec"]["topologySpreadConstraints"]
    assert spread[0]["labelSelector"] == spec["selector"]
    assert wiring_problems(recording.manifests()) == []


def test_scrape_and_scale_targets_describe_the_pods(stack: tuple[Recording, dict[str, Any]]) -> None:
    recording, made = stack
    generator: Workload = made["generator"]
    selector = recording.one(DEPLOYMENT, "generator").manifest()["spec"]["selector"]["matchLabels"]
    assert generator.scrape_target.job == "generator"
    assert dict(generator.scrape_target.pod_labels) == selector
    assert generator.scrape_target.port_name == "metrics"
    assert generator.scale_target.stateful is False
    assert generator.scale_target.requested_resources == frozenset({"cpu", "memory"})


BAD_ARGS = [
    ({"image": "ghcr.io/example/tsflow"}, "workload.image"),
    ({"image": "ghcr.io/example/tsflow:latest"}, "workload.image"),
    ({"image": "ghcr.io/example/tsflow:1.4.2"}, r"workload.image \('ghcr.io/example/tsflow:1.4.2'\) must be pinned by digest"),
    ({"command_args": []}, "workload.command_args"),
    ({"command_args": "generate"}, "workload.command_args"),
    ({"component": "Generator_1"}, "workload.component"),
    ({"replicas": 0}, r"workload.replicas \(0\)"),
    ({"metrics_port": 80}, r"workload.metrics_port \(80\) must be between 1024 and 65535"),
    ({"termination_grace_seconds": 0}, "workload.termination_grace_seconds"),
    ({"env": {"PGPASSWORD": "x"}}, "workload.env key 'PGPASSWORD'"),
    ({"env": {"TSFLOW_READ_DSN": "host=x"}}, "workload.env key 'TSFLOW_READ_DSN'"),
    ({"env": {"TSFLOW_DSN": "postgresql://app:pw@db/metrics"}}, "workload.env key 'TSFLOW_DSN'"),
    ({"env": {"BAD-NAME": "1"}}, "workload.env key 'BAD-NAME'"),
    ({"env": {"TSFLOW_BATCH_ROWS": 5000}}, r"workload.env\['TSFLOW_BATCH_ROWS'\]"),
    ({"resources": Resources(cpu_request="1Gi", memory_request="128Mi")}, "workload.resources.cpu_request"),
    ({"after": ["migration"]}, r"workload.after\[0\]"),
    ({"autoscaling": AutoscalingSpec(min_replicas=3, max_replicas=2)}, r"workload.autoscaling.max_replicas \(2\) must be >= min_replicas \(3\)"),
    ({"autoscaling": AutoscalingSpec(max_replicas=4, cpu_utilization=None)}, "workload.autoscaling has no metric"),
    ({"replicas": 5, "autoscaling": AutoscalingSpec(max_replicas=4)}, r"workload.replicas \(5\) must be <= autoscaling.max_replicas \(4\)"),
]


@pytest.mark.parametrize(("overrides", "message"), BAD_ARGS)
def test_bad_args_are_rejected_before_anything_is_created(overrides: dict[str, Any], message: str) -> None:
    created: list[str] = []

    def program() -> None:
        database = fake_database()
        created.append("database")
        Workload("bad", workload_args(database, **overrides))
        created.append("workload")

    with pytest.raises(ValueError, match=message):
        run_program(program)
    assert created == ["database"]


def test_client_label_may_not_override_a_recommended_label() -> None:
    def program() -> None:
        database = dataclasses.replace(fake_database(), client_labels={"app.kubernetes.io/component": "db"})
        Workload("bad", workload_args(database))

    with pytest.raises(ValueError, match="workload.database.client_labels"):
        run_program(program)


def resolved_env(recording: Recording, deployment: RecordedResource, root: Path) -> dict[str, str]:
    """The container's environment as the kubelet would build it, with its projected Secret volumes written
    under ``root`` (and paths into them rewritten there)."""
    secrets = {m["metadata"]["name"]: m["stringData"] for m in recording.manifests() if m["kind"] == "Secret"}
    volumes = {v["name"]: v for v in pod_spec(deployment)["volumes"]}
    mounted: dict[str, str] = {}
    for mount in container(deployment)["volumeMounts"]:
        for source in volumes[mount["name"]].get("projected", {}).get("sources", []):
            local = root / deployment.name / mount["name"]
            local.mkdir(parents=True, exist_ok=True)
            for item in source["secret"]["items"]:
                (local / item["path"]).write_text(secrets[source["secret"]["name"]][item["key"]])
            mounted[mount["mountPath"]] = str(local)
    env = {}
    for variable in container(deployment)["env"]:
        ref = variable.get("valueFrom", {}).get("secretKeyRef")
        value = secrets[ref["name"]][ref["key"]] if ref else variable["value"]
        for mount_path, local in mounted.items():
            value = value.replace(mount_path + "/", local + "/") if value.startswith(mount_path + "/") else value
        env[variable["name"]] = value
    return env


def run_container(recording: Recording, owner: RecordedResource, root: Path) -> subprocess.CompletedProcess[str]:
    """Run the rendered container locally: ``python -m tsflow <args>`` with only the rendered environment."""
    env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(WORKLOADS), **resolved_env(recording, owner, root)}
    return subprocess.run(
        [sys.executable, "-m", "tsflow", *container(owner)["args"]],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_rendered_containers_run_the_real_app_end_to_end(tmp_path: Any) -> None:
    """A real PostgreSQL; the Job's, generator's and consumer's rendered args and env drive the real tsflow."""
    pgserver = pytest.importorskip("bench.pgserver")
    with pgserver.PgServer() as server:  # data dir outside pytest's prunable basetemp
        server.create_database("metrics")

        def program() -> None:
            database = fake_database(host=server.host, read_only_host=server.host, port=server.port, user=server.user)
            migration = MigrationJob("schema", MigrationJobArgs(namespace=NAMESPACE, image=IMAGE, database=database, resources=RESOURCES))
            settings = {"TSFLOW_MAX_ROWS": "300", "TSFLOW_PACE": "false", "TSFLOW_DEVICES": "2", "TSFLOW_BATCH_ROWS": "100"}
            Workload("generator", workload_args(database, env=settings, metrics_port=pgserver.free_port(), after=[migration.job]))
            Workload(
                "consumer",
                workload_args(
                    database,
                    command_args=["consume"],
                    component="consumer",
                    read_only=True,
                    env={"TSFLOW_ONCE": "true"},
                    metrics_port=pgserver.free_port(),
                ),
            )

        recording = run_program(program)
        for owner in (recording.one(JOB, "schema"), recording.one(DEPLOYMENT, "generator"), recording.one(DEPLOYMENT, "consumer")):
            result = run_container(recording, owner, tmp_path)
            assert result.returncode == 0, f"{owner.name}: {result.stderr[-2000:]}"
        with psycopg.connect(server.dsn("metrics")) as conn:
            rows = conn.execute("SELECT count(*) FROM metrics").fetchone()
    assert rows is not None and rows[0] == 300
