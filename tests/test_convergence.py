"""The model of what a server-side apply keeps (tests/convergence.py), on objects whose fate is known."""

from __future__ import annotations

from typing import Any

import pytest

from tests.convergence import dropped_fields


def policy(**spec: Any) -> dict[str, Any]:
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": "p"},
            "spec": {"podSelector": {}, "policyTypes": ["Ingress"], **spec}}


@pytest.mark.parametrize(("manifest", "dropped"), [
    (policy(ingress=[]), ["NetworkPolicy/p: spec.ingress ([] is dropped by the server)"]),
    (policy(ingress=[{"from": [{"podSelector": {"matchLabels": {}}}]}]),
     ["NetworkPolicy/p: spec.ingress[0].from[0].podSelector.matchLabels ({} is dropped by the server)"]),
    # An empty struct is encoded back as {}: podSelector {} (every pod) and emptyDir {} stay.
    (policy(ingress=[{"from": [{"podSelector": {}, "namespaceSelector": {}}]}]), []),
    ({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "q", "labels": {}, "namespace": ""},
      "spec": {"containers": [{"name": "c", "image": "i", "args": []}], "volumes": [{"name": "v", "emptyDir": {}}]}},
     ["Pod/q: metadata.labels ({} is dropped by the server)", "Pod/q: metadata.namespace ('' is dropped by the server)",
      "Pod/q: spec.containers[0].args ([] is dropped by the server)"]),
    # A ConfigMap's map values are data, kept whatever they hold; custom resources are stored as sent.
    ({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"empty": ""}}, []),
    ({"apiVersion": "monitoring.coreos.com/v1", "kind": "PodMonitor", "metadata": {"name": "m"}, "spec": {"x": []}}, []),
])
def test_what_the_server_drops(manifest: dict[str, Any], dropped: list[str]) -> None:
    assert dropped_fields([manifest]) == dropped
