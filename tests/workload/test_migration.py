"""MigrationJob under mocks: one-shot, hardened, secrets by reference, replaced when its template changes."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from components.workload.migration import MigrationJob, MigrationJobArgs, await_timeout
from components.shared.pod_spec import LIBPQ_ENV
from components.shared.types import Resources
from tests.checks import schema_problems, wiring_problems
from tests.harness import Recording, RecordedResource, run_program, walk_strings
from tests.workload.test_workload import CLIENT_LABELS, IMAGE, NAMESPACE, RESOURCES, fake_database

JOB = "kubernetes:batch/v1:Job"


def migration_args(**overrides: Any) -> MigrationJobArgs:
    base = MigrationJobArgs(namespace=NAMESPACE, image=IMAGE, database=fake_database(), resources=RESOURCES)
    return dataclasses.replace(base, **overrides)


@pytest.fixture(scope="module")
def recording() -> Recording:
    return run_program(lambda: MigrationJob("schema", migration_args(env={"TSFLOW_RETENTION": "30d"})))


@pytest.fixture(scope="module")
def job(recording: Recording) -> RecordedResource:
    return recording.one(JOB, "schema")


def test_manifests_are_schema_valid_and_wired(recording: Recording) -> None:
    manifests = recording.manifests()
    assert {m["kind"] for m in manifests} == {"Job", "Secret", "NetworkPolicy"}
    assert schema_problems(manifests) == []
    assert wiring_problems(manifests) == []


def test_job_runs_migrate_once_with_bounded_retries(job: RecordedResource) -> None:
    spec = job.manifest()["spec"]
    assert spec["backoffLimit"] == 6
    assert spec["activeDeadlineSeconds"] == 600
    assert "ttlSecondsAfterFinished" not in spec
    pod = spec["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    assert pod["containers"][0]["args"] == ["migrate"]
    assert pod["containers"][0]["image"] == IMAGE
    assert spec["podFailurePolicy"]["rules"][0]["onPodConditions"] == [{"type": "DisruptionTarget", "status": "True"}]


def test_connection_and_settings_come_from_the_shared_env(recording: Recording, job: RecordedResource) -> None:
    secret_name = recording.one("kubernetes:core/v1:Secret").manifest()["metadata"]["name"]
    env = {e["name"]: e for e in job.manifest()["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["TSFLOW_RETENTION"] == {"name": "TSFLOW_RETENTION", "value": "30d"}
    assert not [name for name, e in env.items() if "valueFrom" in e] and "PGPASSWORD" in LIBPQ_ENV
    assert env["TSFLOW_PASSWORD_FILE"]["value"] == "/etc/tsflow/db/password"
    volume = next(v for v in job.manifest()["spec"]["template"]["spec"]["volumes"] if v["name"] == "db-credentials")
    assert volume["projected"]["sources"][0]["secret"]["name"] == secret_name
    passwords = recording.mock_passwords()
    assert passwords
    assert not [s for s in walk_strings(job.manifest()) if any(p in s for p in passwords)]


def test_pod_is_hardened_and_admitted_by_the_database(job: RecordedResource) -> None:
    template = job.manifest()["spec"]["template"]
    assert CLIENT_LABELS.items() <= template["metadata"]["labels"].items()
    assert template["metadata"]["labels"]["app.kubernetes.io/component"] == "migration"
    pod = template["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] == 10001
    assert pod["automountServiceAccountToken"] is False
    context = pod["containers"][0]["securityContext"]
    assert context["readOnlyRootFilesystem"] is True
    assert context["allowPrivilegeEscalation"] is False
    assert context["capabilities"] == {"drop": ["ALL"]}
    assert context["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["containers"][0]["resources"]["requests"] == {"cpu": "100m", "memory": "128Mi"}


def test_job_is_replaced_when_its_template_changes(job: RecordedResource) -> None:
    assert job.replace_on_changes == ["spec.template"]
    # Auto-named, so the replacement is create-before-delete: the new Job must succeed first.
    assert job.delete_before_replace is False
    assert job.inputs["metadata"]["name"].startswith(f"{job.name}-")  # the mock's auto-name, not a fixed one


def test_pulumi_waits_longer_than_the_jobs_own_deadline() -> None:
    assert await_timeout(MigrationJobArgs(namespace="x", image=IMAGE, database=None, resources=RESOURCES)) == "720s"  # type: ignore[arg-type]


BAD_ARGS = [
    ({"image": "ghcr.io/example/tsflow:latest"}, "migration.image"),
    ({"image": "ghcr.io/example/tsflow:1.4.2"}, r"migration.image \('ghcr.io/example/tsflow:1.4.2'\) must be pinned by digest"),
    ({"backoff_limit": -1}, r"migration.backoff_limit \(-1\) must be between 0 and 100"),
    ({"active_deadline_seconds": 10}, r"migration.active_deadline_seconds \(10\) must be >= 30"),
    ({"command_args": []}, "migration.command_args"),
    ({"env": {"PGHOST": "elsewhere"}}, "migration.env key 'PGHOST'"),
    ({"resources": Resources(cpu_request="100m", memory_request="64Mi", memory_limit="32Mi")}, "migration.resources.memory_limit"),
]


@pytest.mark.parametrize(("overrides", "message"), BAD_ARGS)
def test_bad_args_are_rejected_before_the_job_exists(overrides: dict[str, Any], message: str) -> None:
    created: list[str] = []

    def program() -> None:
        MigrationJob("bad", migration_args(**overrides))
        created.append("job")

    with pytest.raises(ValueError, match=message):
        run_program(program)
    assert created == []
