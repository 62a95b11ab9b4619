"""Stack-wide security invariants (what checkov's CKV_K8S_35, CKV_K8S_43 and CKV2_K8S_6 check, without
checkov): no Secret reaches a container through its environment, every image is pinned by digest, and every
pod is selected by a NetworkPolicy."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.checks import selects
from tests.stacks import STACKS, run_stack

POD_OWNERS = ("Deployment", "StatefulSet", "Job", "DaemonSet", "ReplicaSet", "CronJob")
DIGEST = re.compile(r"@sha256:[0-9a-f]{64}$")


def pod_owners(manifests: list[dict[str, Any]]) -> list[dict[str, Any]]:
    owners = [m for m in manifests if m["kind"] in POD_OWNERS]
    assert owners, "the stack renders no pods: the checks below would prove nothing"
    return owners


@pytest.mark.parametrize("stack", STACKS)
def test_no_secret_is_passed_through_the_environment(stack: str) -> None:
    for owner in pod_owners(run_stack(stack).manifests()):
        spec = owner["spec"]["template"]["spec"]
        for container in [*spec.get("initContainers", []), *spec["containers"]]:
            from_secrets = [e["name"] for e in container.get("env") or [] if "secretKeyRef" in e.get("valueFrom", {})]
            assert not from_secrets, f"{owner['metadata']['name']}/{container['name']}: {from_secrets}"
            assert not [s for s in container.get("envFrom") or [] if "secretRef" in s]


@pytest.mark.parametrize("stack", STACKS)
def test_every_container_image_is_pinned_by_digest(stack: str) -> None:
    for owner in pod_owners(run_stack(stack).manifests()):
        spec = owner["spec"]["template"]["spec"]
        for container in [*spec.get("initContainers", []), *spec["containers"]]:
            assert DIGEST.search(container["image"]), f"{owner['metadata']['name']}/{container['name']}: {container['image']}"


@pytest.mark.parametrize("stack", STACKS)
def test_every_pod_is_selected_by_a_network_policy(stack: str) -> None:
    manifests = run_stack(stack).manifests()
    policies = [m for m in manifests if m["kind"] == "NetworkPolicy"]
    for owner in pod_owners(manifests):
        labels = owner["spec"]["template"]["metadata"]["labels"]
        namespace = owner["metadata"].get("namespace")
        assert any(
            p["metadata"].get("namespace") == namespace and selects(p["spec"]["podSelector"], labels) for p in policies
        ), owner["metadata"]["name"]
