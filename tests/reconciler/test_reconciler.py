"""The Reconciler component, under mocks and in whole stacks: the Job is re-created when, and only when,
its declaration changes (not on a password rotation, which the role agent applies); it runs after the
database, locked down, with only the REST API's and the monitoring role's passwords, by reference; and the
program it ships runs from its ConfigMap files alone."""

from __future__ import annotations

import copy
import json
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pytest
import tests.harness
from components.reconciler import ReconcilerArgs, check_args
from components.reconciler import job as rj
from components.reconciler.tsreconcile.desired import DESIRED_ENV, Desired
from components.shared.types import ReconcileTarget
from components.timescaledb import patroni_config as pc
from tests.harness import Recording
from tests.reconciler.shipped import materialize
from tests.stacks import run_main, stack_file_config

JOB = "kubernetes:batch/v1:Job"
STS = "kubernetes:apps/v1:StatefulSet"
CONFIG_MAP = "kubernetes:core/v1:ConfigMap"
NETPOL = "kubernetes:networking.k8s.io/v1:NetworkPolicy"


def reconciler_job(recording: Recording) -> dict[str, Any]:
    return recording.one(JOB, "reconciler").manifest()


def desired_of(job: dict[str, Any]) -> Desired:
    (container,) = job["spec"]["template"]["spec"]["containers"]
    return Desired.from_json(next(e["value"] for e in container["env"] if e["name"] == DESIRED_ENV))


def run_with(stack: str, change: dict[str, Any] | None = None) -> Recording:
    """The stack file's config with ``change`` merged into the timescaledb section."""
    config = copy.deepcopy(stack_file_config(stack))
    config["timescale-k8s:timescaledb"].update(change or {})
    return run_main(stack, config)


@pytest.fixture(scope="module")
def baseline() -> Recording:
    return run_with("prod")


def test_an_unchanged_declaration_renders_the_identical_job(baseline: Recording) -> None:
    again = run_with("prod")
    assert reconciler_job(again) == reconciler_job(baseline), "a second `pulumi up` must leave the finished Job alone"
    assert reconciler_job(baseline)["metadata"]["name"].startswith("timescaledb-reconcile-")


@pytest.mark.parametrize(
    ("what", "change", "rerun"),
    [
        ("max_connections", {"parameters": {"max_connections": "300"}}, True),
        ("memory (retunes max_worker_processes' neighbours and max_connections)", {"resources": {"cpuRequest": "4", "memoryRequest": "16Gi"}}, True),
        ("image bump", {"image": "timescale/timescaledb-ha:pg17.10-ts2.28.2"}, True),
        ("a local-only parameter (applied by the pod roll)", {"parameters": {"work_mem": "64MB"}}, False),
        ("storage size", {"storage": {"size": "300Gi", "walSize": "50Gi"}}, False),
        ("autoscaling bounds", {"autoscaling": {"minReplicas": 3, "maxReplicas": 7, "cpuUtilization": 75}}, False),
    ],
)
def test_the_job_is_recreated_exactly_when_its_declaration_changes(baseline: Recording, what: str, change: dict[str, Any], rerun: bool) -> None:
    changed = run_with("prod", change)
    before, after = reconciler_job(baseline), reconciler_job(changed)
    assert (before["metadata"]["name"] != after["metadata"]["name"]) is rerun, what
    assert (before == after) is (not rerun), what


def test_a_rotated_password_leaves_the_job_and_the_pods_alone_and_no_password_text_is_rendered(
    baseline: Recording, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The role agent applies a rotation from its mounted Secret files: neither the Job nor the pod template
    changes (no re-run, no roll), and no object but a Secret holds a password."""
    monkeypatch.setattr(tests.harness, "MOCK_SECRET_PREFIX", "rotated-secret-")
    rotated = run_with("prod")
    passwords = rotated.mock_passwords()
    assert passwords and all(p.startswith("rotated-secret-") for p in passwords)
    assert reconciler_job(rotated) == reconciler_job(baseline)
    assert rotated.one(STS).manifest()["spec"]["template"] == baseline.one(STS).manifest()["spec"]["template"]
    not_secrets = [m for m in rotated.manifests() if m["kind"] != "Secret"]
    assert not_secrets and "rotated-secret-" not in json.dumps(not_secrets)


def test_the_job_runs_after_the_database_and_declares_what_patroni_was_given(baseline: Recording) -> None:
    job_resource = baseline.one(JOB, "reconciler")
    statefulset = baseline.one(STS)
    assert statefulset.urn in job_resource.dependencies
    assert job_resource.delete_before_replace and "spec" in job_resource.replace_on_changes
    desired = desired_of(job_resource.manifest())
    patroni = json.loads(baseline.one(CONFIG_MAP, "patroni").manifest()["data"][pc.CONFIG_FILE])
    assert desired.dcs_parameters == patroni["bootstrap"]["dcs"]["postgresql"]["parameters"]
    assert "max_connections" in desired.dcs_parameters and "max_worker_processes" in desired.dcs_parameters
    assert desired.patroni_url.startswith("http://") and desired.patroni_url.endswith(f":{pc.PATRONI_PORT}")
    exporter = next(c for c in baseline.one(STS).manifest()["spec"]["template"]["spec"]["containers"]
                    if c["name"] == "postgres-exporter")
    exporter_uri = next(e["value"] for e in exporter["env"] if e["name"] == "DATA_SOURCE_URI")
    assert desired.settings_user == pc.MONITOR_USER, "pg_monitor reads every setting; never the superuser"
    assert f"/{desired.settings_database}?" in exporter_uri, "a database the monitoring role may connect to"
    assert (desired.sslmode, desired.ca_file) == ("disable", None), "prod renders no TLS Secret"
    seeded = patroni["bootstrap"]["dcs"]
    assert desired.dcs_settings == {"synchronous_mode": True, "synchronous_mode_strict": False}
    assert {k: seeded[k] for k in desired.dcs_settings} == desired.dcs_settings, "the Job keeps what bootstrap seeded"


def test_the_job_pod_is_locked_down_and_holds_no_superuser_or_application_password(baseline: Recording) -> None:
    job = reconciler_job(baseline)
    spec = job["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    database = next(c for c in baseline.one(STS).manifest()["spec"]["template"]["spec"]["containers"] if c["name"] == "timescaledb")
    assert container["image"] == database["image"], "runs on the database image: its Python and driver"
    assert spec["securityContext"]["runAsUser"] == 1000 and spec["securityContext"]["runAsNonRoot"] is True
    assert spec["automountServiceAccountToken"] is False and spec["restartPolicy"] == "Never"
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert all("valueFrom" not in e or "secretKeyRef" not in e["valueFrom"] for e in container["env"])
    projected = next(v for v in spec["volumes"] if "projected" in v)["projected"]["sources"]
    mounted = {(source["secret"]["name"], item["key"], item["path"]) for source in projected for item in source["secret"]["items"]}
    internal = next(m for m in baseline.manifests() if m["kind"] == "Secret" and "restapi-password" in m.get("data", m.get("stringData", {})))
    name = internal["metadata"]["name"]
    assert mounted == {(name, "restapi-password", "restapi"), (name, "monitor-password", "settings")}


def test_with_tls_the_job_verifies_members_against_the_ca_only() -> None:
    tls = run_with("dev", {"tlsSecretName": "timescaledb-tls"})
    job = reconciler_job(tls)
    desired = desired_of(job)
    assert desired.sslmode == "verify-full" and desired.ca_file == f"{rj.CA_DIR}/{rj.CA_KEY}"
    spec = job["spec"]["template"]["spec"]
    (ca,) = [v for v in spec["volumes"] if v.get("secret")]
    assert ca["secret"]["secretName"] == "timescaledb-tls"
    assert ca["secret"]["items"] == [{"key": "ca.crt", "path": "ca.crt"}], "never the private key"
    (container,) = spec["containers"]
    assert {"name": ca["name"], "mountPath": rj.CA_DIR, "readOnly": True} in container["volumeMounts"]


def test_a_network_policy_admits_the_reconciler_to_the_members(baseline: Recording) -> None:
    policy = baseline.one(NETPOL, "reconciler-netpol").manifest()
    job_labels = reconciler_job(baseline)["spec"]["template"]["metadata"]["labels"]
    member_labels = baseline.one(STS).manifest()["spec"]["template"]["metadata"]["labels"]
    assert all(member_labels.get(k) == v for k, v in policy["spec"]["podSelector"]["matchLabels"].items())
    (rule,) = policy["spec"]["ingress"]
    assert all(job_labels.get(k) == v for k, v in rule["from"][0]["podSelector"]["matchLabels"].items())
    assert {p["port"] for p in rule["ports"]} == {pc.POSTGRES_PORT, pc.PATRONI_PORT}
    assert not all(member_labels.get(k) == v for k, v in rule["from"][0]["podSelector"]["matchLabels"].items()), \
        "the reconciler's pods must not look like members (Services and the PDB select those)"


def test_the_reconciler_pods_reach_only_the_members_and_dns(baseline: Recording) -> None:
    policy = baseline.one(NETPOL, "reconciler-egress").manifest()["spec"]
    job_labels = reconciler_job(baseline)["spec"]["template"]["metadata"]["labels"]
    member_labels = baseline.one(STS).manifest()["spec"]["template"]["metadata"]["labels"]
    assert all(job_labels.get(k) == v for k, v in policy["podSelector"]["matchLabels"].items())
    assert set(policy["policyTypes"]) == {"Ingress", "Egress"} and not policy.get("ingress")
    members, dns = policy["egress"]
    assert all(member_labels.get(k) == v for k, v in members["to"][0]["podSelector"]["matchLabels"].items())
    assert {p["port"] for p in members["ports"]} == {pc.POSTGRES_PORT, pc.PATRONI_PORT}
    assert {p["port"] for p in dns["ports"]} == {53}


def test_the_shipped_program_runs_from_its_configmap_files_alone(baseline: Recording) -> None:
    """Materialize the ConfigMap as the kubelet would and run it with the system Python, outside the repo:
    with no Patroni to talk to it must fail cleanly, with its summary, and exit 1."""
    job = reconciler_job(baseline)
    program = baseline.one(CONFIG_MAP, "reconciler-program").manifest()["data"]
    volume = next(v for v in job["spec"]["template"]["spec"]["volumes"] if "configMap" in v)
    root = materialize(volume, program, Path(tempfile.mkdtemp(prefix="tsreconcile-program-")))
    desired = desired_of(job)
    unreachable = json.loads(desired.to_json()) | {"patroni_url": "http://127.0.0.1:9", "timeout_seconds": 2}
    (container,) = job["spec"]["template"]["spec"]["containers"]
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(root), "HOME": str(root)}
    secrets = root / "secrets"
    secrets.mkdir()
    for name in ("restapi", "settings"):
        (secrets / name).write_text("x")
        unreachable[f"{name}_password_file"] = str(secrets / name)
    env[DESIRED_ENV] = json.dumps(unreachable)
    result = subprocess.run(["/usr/bin/python3", *container["command"][1:]], cwd=root, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1 and result.stdout, result.stderr
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["event"] == "summary" and not summary["ok"]
    assert "Patroni GET /cluster failed" in summary["message"]
    assert container["command"][:2] == ["python3", "-m"] and container["command"][2] == rj.MODULE


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"step_timeout_seconds": 5}, r"reconciler.step_timeout_seconds \(5\) must be between 30 and 3600"),
        ({"active_deadline_seconds": 60}, r"reconciler.active_deadline_seconds \(60\) must be >= 600"),
        ({"backoff_limit": -1}, r"reconciler.backoff_limit \(-1\) must be between 0 and 10"),
    ],
)
def test_bad_reconciler_args_name_the_field(change: dict[str, Any], message: str) -> None:
    target = ReconcileTarget.__new__(ReconcileTarget)  # only the image is read by the checks
    object.__setattr__(target, "image", "timescale/timescaledb-ha:pg17.11-ts2.30.1")
    with pytest.raises(ValueError, match=message):
        check_args(ReconcilerArgs(target=target, **change))
