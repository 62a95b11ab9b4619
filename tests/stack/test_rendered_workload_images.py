"""Whole stacks: every tsflow container (migration Job, generator, consumer) runs the image by digest.

checkov's CKV_K8S_43 ("image should use digest") reads exactly this field; the stack config refuses a
tag-only ``workloads.image``, and this checks that what reaches the manifests is that value.
"""

from __future__ import annotations

import pytest

from components.shared.images import check_digest_pinned_image
from tests.stacks import STACKS, run_stack, stack_file_config
from tests.test_stacks import containers, pod_specs

TSFLOW_APP = "tsflow"


@pytest.mark.parametrize("stack", STACKS)
def test_every_tsflow_container_is_pinned_by_digest(stack: str) -> None:
    workloads = stack_file_config(stack).get("timescale-k8s:workloads") or {}
    seen: dict[str, str] = {}
    for manifest, spec in pod_specs(run_stack(stack)):
        if manifest["metadata"]["labels"].get("app.kubernetes.io/name") != TSFLOW_APP:
            continue
        for container in containers(spec):
            where = f"{manifest['kind']}/{manifest['metadata']['name']}/{container['name']}"
            seen[where] = check_digest_pinned_image(container["image"], field=where)
    if not workloads.get("enabled", True):
        assert seen == {}
        return
    assert {where.split("/")[0] for where in seen} == {"Job", "Deployment"}, seen
    assert len(seen) >= 3 and set(seen.values()) == {workloads["image"]}, seen
