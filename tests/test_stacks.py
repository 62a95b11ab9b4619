"""Whole-stack tests: every stack file in the repo, run through ``__main__.py`` under mocks."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator, Mapping
from typing import Any

import pulumi
import pytest

from components.shared.images import check_pinned_image
from components.shared.labels import (
    COMPONENT_LABEL,
    INSTANCE_LABEL,
    MANAGED_BY_LABEL,
    NAME_LABEL,
    PART_OF_LABEL,
)
from tests.checks import schema_problems, selects, wiring_problems
from tests.convergence import dropped_fields
from tests.harness import Recording, RecordedResource, walk_strings
from tests.stacks import STACKS, external_objects, run_main, run_stack, stack_file_config, stack_passwords

RECOMMENDED_LABELS = (NAME_LABEL, INSTANCE_LABEL, COMPONENT_LABEL, PART_OF_LABEL, MANAGED_BY_LABEL)
MIN_KUBERNETES_OBJECTS = 20
POD_OWNERS = ("Deployment", "StatefulSet", "Job")


@pytest.fixture(params=STACKS)
def stack(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def recording(stack: str) -> Recording:
    return run_stack(stack)


def pod_specs(recording: Recording) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """(manifest, pod spec) of every pod-owning object."""
    for manifest in recording.manifests():
        if manifest["kind"] in POD_OWNERS:
            yield manifest, manifest["spec"]["template"]["spec"]


def containers(spec: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [*(spec.get("initContainers") or []), *spec["containers"]]


def test_every_stack_renders_enough_objects(recording: Recording, stack: str) -> None:
    assert len(recording.kubernetes_objects()) >= MIN_KUBERNETES_OBJECTS
    kinds = {m["kind"] for m in recording.manifests()}
    workloads = (stack_file_config(stack).get("timescale-k8s:workloads") or {}).get("enabled", True)
    assert {"StatefulSet", "Service", "Secret", "ConfigMap", "NetworkPolicy"} <= kinds
    assert {"Deployment", "Job"} <= kinds or not workloads


def test_manifests_pass_the_strict_kubernetes_schema(recording: Recording) -> None:
    assert schema_problems(recording.manifests()) == []


def test_a_server_side_apply_keeps_every_rendered_field(recording: Recording) -> None:
    # A field the server drops (an empty list or map) is a diff on every `pulumi up`: the stack never converges.
    assert dropped_fields(recording.manifests()) == []


def test_cross_object_wiring_resolves(recording: Recording, stack: str) -> None:
    assert wiring_problems(recording.manifests(), external=external_objects(stack_file_config(stack))) == []


def test_every_object_carries_the_recommended_labels(recording: Recording) -> None:
    missing = {
        f"{m['kind']}/{m['metadata']['name']}": [k for k in RECOMMENDED_LABELS if k not in (m["metadata"].get("labels") or {})]
        for m in recording.manifests()
        if m["kind"] != "Namespace"
    }
    assert {name: keys for name, keys in missing.items() if keys} == {}


def test_every_kubernetes_object_belongs_to_a_component(recording: Recording) -> None:
    component_urns = {r.urn for r in recording.resources if not r.custom}
    orphans = [r.name for r in recording.kubernetes_objects() if r.parent not in component_urns]
    assert orphans == []


def test_containers_are_pinned_bounded_probed_and_locked_down(recording: Recording) -> None:
    checked = 0
    for manifest, spec in pod_specs(recording):
        pod_context = spec.get("securityContext") or {}
        assert pod_context.get("runAsNonRoot") is True, manifest["metadata"]["name"]
        for container in containers(spec):
            where = f"{manifest['kind']}/{manifest['metadata']['name']}/{container['name']}"
            check_pinned_image(container["image"], field=where)
            resources = container.get("resources") or {}
            assert {"cpu", "memory"} <= set(resources.get("requests") or {}), where
            assert "memory" in (resources.get("limits") or {}), where
            context = container.get("securityContext") or {}
            assert context.get("allowPrivilegeEscalation") is False, where
            assert context.get("capabilities", {}).get("drop") == ["ALL"], where
            seccomp = context.get("seccompProfile") or pod_context.get("seccompProfile") or {}
            assert seccomp.get("type") == "RuntimeDefault", where
            if manifest["kind"] != "Job" and container in spec["containers"]:
                assert container.get("readinessProbe") and container.get("livenessProbe"), where
            checked += 1
    assert checked >= 3  # at least the database pod (Patroni, exporter, backup agent); more with workloads


def test_database_data_lives_on_persistent_volumes(recording: Recording) -> None:
    statefulset = recording.one("kubernetes:apps/v1:StatefulSet").manifest()
    claims = {c["metadata"]["name"] for c in statefulset["spec"]["volumeClaimTemplates"]}
    empty_dirs = {v["name"] for v in statefulset["spec"]["template"]["spec"].get("volumes") or [] if "emptyDir" in v}
    assert claims and not claims & empty_dirs
    retention = statefulset["spec"]["persistentVolumeClaimRetentionPolicy"]
    assert retention == {"whenDeleted": "Retain", "whenScaled": "Retain"}


def test_no_stack_inlines_a_password(recording: Recording, stack: str) -> None:
    passwords = stack_passwords(stack)
    assert passwords, "the stack generates no passwords"
    allowed = {"kubernetes:core/v1:Secret", "random:index/randomPassword:RandomPassword"}
    leaks = [
        f"{r.type}::{r.name}"
        for r in recording.resources
        if r.type not in allowed and any(p in s for s in walk_strings(r.inputs) for p in passwords)
    ]
    assert leaks == []


def test_exported_passwords_are_secret(recording: Recording, stack: str) -> None:
    passwords = stack_passwords(stack)
    carrying = {key for key, value in recording.outputs.items() if any(p in s for s in walk_strings(value) for p in passwords)}
    assert carrying, "expected at least one password export (as a secret)"
    assert carrying <= recording.secret_outputs


def test_useful_outputs_are_exported(recording: Recording) -> None:
    for key in ("namespace", "primaryHost", "replicaHost", "appSecretName", "grafanaUrlHint"):
        assert recording.outputs.get(key), key


@pytest.mark.parametrize("stack_name", [s for s in STACKS if s.startswith("prod")])
def test_prod_is_highly_available_and_protected(stack_name: str) -> None:
    recording = run_stack(stack_name)
    statefulset = recording.one("kubernetes:apps/v1:StatefulSet")
    assert statefulset.inputs["spec"]["replicas"] >= 3
    assert statefulset.protect and statefulset.retain_on_delete
    assert "spec.replicas" in statefulset.ignore_changes, "the database HPA owns replicas in prod"
    namespace = recording.of_type("kubernetes:core/v1:Namespace")
    assert all(n.protect and n.retain_on_delete for n in namespace), "deleting the namespace would delete the PVCs"
    pod_labels = statefulset.inputs["spec"]["template"]["metadata"]["labels"]
    budgets = [m for m in recording.manifests() if m["kind"] == "PodDisruptionBudget" and selects(m["spec"]["selector"], pod_labels)]
    assert [b["spec"].get("maxUnavailable") for b in budgets] == [1]
    affinity = statefulset.inputs["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"]
    assert affinity.get("requiredDuringSchedulingIgnoredDuringExecution")


def test_dev_is_not_protected_so_it_can_be_torn_down() -> None:
    recording = run_stack("dev")
    assert not any(r.protect for r in recording.resources)


def test_render_dir_switches_the_provider_to_manifest_rendering() -> None:
    config = copy.deepcopy(stack_file_config("dev"))
    config["timescale-k8s:cluster"]["renderDir"] = "rendered/dev"
    config["timescale-k8s:monitoring"] = {"mode": "existing", "existing": {"monitorLabels": {"release": "prom"}}}
    recording = run_main("dev", config)
    provider: RecordedResource = recording.one("pulumi:providers:kubernetes")
    assert provider.inputs["renderYamlToDirectory"] == "rendered/dev"


def test_bad_config_fails_before_any_resource_is_registered() -> None:
    config = copy.deepcopy(stack_file_config("dev"))
    config["timescale-k8s:timescaledb"]["replicas"] = 0
    with pytest.raises(pulumi.RunError, match=r"timescale-k8s:timescaledb.replicas \(0\)") as caught:
        run_main("dev", config)
    assert caught.value.registered_resources == []  # type: ignore[attr-defined]


def test_every_problem_reaches_the_user_as_one_run_error() -> None:
    """pulumi.RunError (printed without a traceback), listing all the problems of the database section."""
    config = copy.deepcopy(stack_file_config("dev"))
    config["timescale-k8s:timescaledb"]["parameters"] = {"max_conections": "500", "fsync": "off"}
    config["timescale-k8s:timescaledb"]["appUser"] = "postgres"
    with pytest.raises(pulumi.RunError) as caught:
        run_main("dev", config)
    message = str(caught.value)
    assert message.startswith("3 configuration problems:"), message
    assert "did you mean 'max_connections'" in message and "appUser ('postgres') is reserved" in message
    assert "parameters['fsync'] ('off') voids durability" in message
    assert caught.value.registered_resources == []  # type: ignore[attr-defined]


def test_database_only_stack_composes_without_workloads_or_monitoring() -> None:
    config = {"timescale-k8s:workloads": {"enabled": False}, "timescale-k8s:monitoring": {"mode": "disabled"}}
    recording = run_main("minimal", config)
    kinds = {m["kind"] for m in recording.manifests()}
    assert "StatefulSet" in kinds and not kinds & {"Deployment", "PodMonitor"}
    jobs = [m["metadata"]["name"] for m in recording.manifests() if m["kind"] == "Job"]
    assert len(jobs) == 1 and "-reconcile-" in jobs[0], "the database's reconciler is its only Job"
    assert schema_problems(recording.manifests()) == []
    assert wiring_problems(recording.manifests()) == []
    assert recording.outputs["grafanaUrlHint"] == "monitoring is disabled for this stack"


def test_tls_secret_turns_on_server_tls_and_grafana_requires_it() -> None:
    config = copy.deepcopy(stack_file_config("prod"))
    config["timescale-k8s:timescaledb"]["tlsSecretName"] = "timescaledb-tls"
    config["timescale-k8s:monitoring"] = {"mode": "install"}
    config["timescale-k8s:pooler"]["tlsSecretName"] = "pooler-tls"  # the pooler needs a certificate of its own
    recording = run_main("prod", config)
    statefulset = recording.one("kubernetes:apps/v1:StatefulSet").manifest()
    tls_volumes = [v for v in statefulset["spec"]["template"]["spec"]["volumes"] if (v.get("secret") or {}).get("secretName") == "timescaledb-tls"]
    assert len(tls_volumes) == 1
    user_secrets = [{"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "data": {"tls.crt": "", "tls.key": "", "ca.crt": ""}}
                    for name in ("timescaledb-tls", "pooler-tls")]
    external = [*user_secrets, *external_objects(config)]
    assert wiring_problems(recording.manifests(), external=external) == []
    assert any("timescaledb-tls" in p for p in wiring_problems(recording.manifests())), "a missing TLS Secret must be reported"
    patroni = json.loads(next(m for m in recording.manifests() if m["kind"] == "ConfigMap" and "patroni.yaml" in m.get("data", {}))["data"]["patroni.yaml"])
    assert patroni["postgresql"]["parameters"]["ssl"] == "on"
    datasource = next(
        m["stringData"]["timescaledb-datasource.yaml"]
        for m in recording.manifests()
        if m["kind"] == "Secret" and "timescaledb-datasource.yaml" in m.get("stringData", {})
    )
    assert "sslmode: verify-full" in datasource and "tlsCACert" in datasource
