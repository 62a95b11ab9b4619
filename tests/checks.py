"""Checks over rendered manifests: strict schema validity and cross-object wiring.

``wiring_problems`` answers what a cluster would only reveal at run time: a Service that selects no
pod, a port name no container declares, an HPA aimed at nothing, a pod that references a Secret key
that does not exist.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
import json
from dataclasses import dataclass, field
from typing import Any

import kubernetes_validate
import yaml

from tests.harness import K8S_VERSION, validate_manifest

Manifest = Mapping[str, Any]

_POD_OWNERS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"}


def schema_problems(manifests: Iterable[Manifest], k8s_version: str = K8S_VERSION) -> list[str]:
    """Strict OpenAPI errors for built-in kinds; custom resources (no built-in schema) are skipped."""
    problems = []
    for manifest in manifests:
        try:
            validate_manifest(manifest, k8s_version)
        except kubernetes_validate.SchemaNotFoundError:
            continue
        except kubernetes_validate.ValidationError as error:
            location = "/".join(str(p) for p in error.path)
            problems.append(f"{_ref(manifest)}: {error.message} (at {location or 'top level'})")
    return problems


@dataclass(frozen=True)
class _PodSet:
    owner: str
    namespace: str
    labels: Mapping[str, str]
    spec: Mapping[str, Any]
    claim_templates: frozenset[str] = frozenset()
    runtime_labels: Mapping[str, frozenset[str]] = field(default_factory=dict)
    """Labels a controller inside the pod sets at run time (Patroni's role label), with their values."""
    managed_endpoints: Mapping[str, frozenset[str]] = field(default_factory=dict)
    """Endpoints a controller inside the pods writes (Patroni in Endpoints mode), with their port names."""

    def could_be_selected_by(self, selector: Mapping[str, Any]) -> bool:
        """Whether some pod of this set matches ``selector``, given the labels it may gain at run time."""
        candidates = [dict(self.labels)]
        for key, values in self.runtime_labels.items():
            if key not in self.labels:
                candidates = [{**labels, key: value} for labels in candidates for value in sorted(values)]
        return any(selects(selector, labels) for labels in candidates)

    def container_ports(self) -> list[Mapping[str, Any]]:
        return [p for c in _containers(self.spec) for p in c.get("ports") or []]


def wiring_problems(manifests: Sequence[Manifest], external: Iterable[Manifest] = ()) -> list[str]:
    """Every broken reference between objects, as readable sentences; empty when all wiring resolves.

    ``external`` are objects the stack expects to exist already (e.g. a TLS Secret from cert-manager).
    """
    index = {(m["kind"], _namespace(m), _name(m)): m for m in [*external, *manifests]}
    pods = [_pod_set(m, index) for m in manifests if m["kind"] in _POD_OWNERS]
    problems: list[str] = []
    for manifest in manifests:
        kind = manifest["kind"]
        if kind in _POD_OWNERS:
            problems += _owner_problems(manifest, index)
        elif kind == "Service":
            problems += _service_problems(manifest, pods)
        elif kind == "PodDisruptionBudget":
            problems += _selector_problems(manifest, manifest["spec"].get("selector") or {}, pods)
        elif kind == "NetworkPolicy":
            selector = manifest["spec"].get("podSelector") or {}
            if selector:
                problems += _selector_problems(manifest, selector, pods)
        elif kind == "HorizontalPodAutoscaler":
            problems += _hpa_problems(manifest, index)
        elif kind in ("RoleBinding", "ClusterRoleBinding"):
            problems += _binding_problems(manifest, index)
    return problems


def selects(selector: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    """Whether a LabelSelector (matchLabels and matchExpressions) or a plain label map selects ``labels``."""
    match_labels = selector.get("matchLabels", selector if "matchExpressions" not in selector else {})
    if not all(labels.get(k) == v for k, v in match_labels.items()):
        return False
    for expression in selector.get("matchExpressions") or []:
        key, operator, values = expression["key"], expression["operator"], expression.get("values") or []
        present = key in labels
        if operator == "In" and not (present and labels[key] in values):
            return False
        if operator == "NotIn" and present and labels[key] in values:
            return False
        if operator == "Exists" and not present:
            return False
        if operator == "DoesNotExist" and present:
            return False
    return True


def _owner_problems(manifest: Manifest, index: Mapping[tuple[str, str, str], Manifest]) -> list[str]:
    pod_set = _pod_set(manifest, index)
    problems = []
    selector = manifest["spec"].get("selector")
    if manifest["kind"] != "Job" or selector:
        if not selector or not selects(selector, pod_set.labels):
            problems.append(f"{_ref(manifest)}: selector {selector} does not match its pod template labels {dict(pod_set.labels)}")
    problems += [f"{_ref(manifest)}: {p}" for p in _patroni_problems(pod_set, index)]
    problems += [
        f"{_ref(manifest)}: Patroni keeps Endpoints {name!r}, which no Service of that name owns "
        "(kube-controller-manager's endpoints controller deletes it when it starts)"
        for name in sorted(pod_set.managed_endpoints) if not _find(index, "Service", pod_set.namespace, name)
    ]
    if manifest["kind"] == "StatefulSet":
        service = manifest["spec"].get("serviceName")
        if service and not _find(index, "Service", pod_set.namespace, service):
            problems.append(f"{_ref(manifest)}: serviceName {service!r} names no Service")
    problems += [f"{_ref(manifest)}: {p}" for p in _pod_reference_problems(pod_set, index)]
    return problems


def _pod_reference_problems(pod_set: _PodSet, index: Mapping[tuple[str, str, str], Manifest]) -> list[str]:
    spec, ns = pod_set.spec, pod_set.namespace
    problems = []
    account = spec.get("serviceAccountName")
    if account and account != "default" and not _find(index, "ServiceAccount", ns, account):
        problems.append(f"serviceAccountName {account!r} names no ServiceAccount")
    for container in _containers(spec):
        for env in container.get("env") or []:
            source = env.get("valueFrom") or {}
            for ref_key, kind in (("secretKeyRef", "Secret"), ("configMapKeyRef", "ConfigMap")):
                ref = source.get(ref_key)
                if ref and not ref.get("optional"):
                    problems += _key_problem(index, kind, ns, ref["name"], ref["key"], f"env {env['name']}")
        for env_from in container.get("envFrom") or []:
            for ref_key, kind in (("secretRef", "Secret"), ("configMapRef", "ConfigMap")):
                ref = env_from.get(ref_key)
                if ref and not ref.get("optional") and not _find(index, kind, ns, ref["name"]):
                    problems.append(f"envFrom names missing {kind} {ref['name']!r}")
        declared = {m["name"] for m in (spec.get("volumes") or [])}
        for mount in container.get("volumeMounts") or []:
            if mount["name"] not in declared | pod_set.claim_templates:
                problems.append(f"container {container['name']} mounts undeclared volume {mount['name']!r}")
    for volume in spec.get("volumes") or []:
        problems += _volume_problems(volume, index, ns)
    return problems


def _volume_problems(volume: Mapping[str, Any], index: Mapping[tuple[str, str, str], Manifest], ns: str) -> list[str]:
    problems = []
    for source in (volume.get("projected") or {}).get("sources") or []:  # each projected Secret, as a secret volume
        if "secret" in source:
            projected = {"name": volume["name"], "secret": {**source["secret"], "secretName": source["secret"]["name"]}}
            problems += _volume_problems(projected, index, ns)
    secret = volume.get("secret")
    if secret and not secret.get("optional"):
        for item in secret.get("items") or [{}]:
            if "key" in item:
                problems += _key_problem(index, "Secret", ns, secret["secretName"], item["key"], f"volume {volume['name']}")
            elif not _find(index, "Secret", ns, secret["secretName"]):
                problems.append(f"volume {volume['name']} names missing Secret {secret['secretName']!r}")
    config_map = volume.get("configMap")
    if config_map and not config_map.get("optional"):
        for item in config_map.get("items") or [{}]:
            if "key" in item:
                problems += _key_problem(index, "ConfigMap", ns, config_map["name"], item["key"], f"volume {volume['name']}")
            elif not _find(index, "ConfigMap", ns, config_map["name"]):
                problems.append(f"volume {volume['name']} names missing ConfigMap {config_map['name']!r}")
    return problems


def _key_problem(index: Mapping[tuple[str, str, str], Manifest], kind: str, ns: str, name: str, key: str, what: str) -> list[str]:
    target = _find(index, kind, ns, name)
    if target is None:
        return [f"{what} references missing {kind} {name!r}"]
    keys = set(target.get("data") or {}) | set(target.get("stringData") or {}) | set(target.get("binaryData") or {})
    if key not in keys:
        return [f"{what} references key {key!r} that {kind} {name!r} lacks (has {sorted(keys)})"]
    return []


def _service_problems(manifest: Manifest, pods: Sequence[_PodSet]) -> list[str]:
    spec = manifest.get("spec") or {}
    selector = spec.get("selector")
    if not selector:
        if spec.get("type") == "ExternalName":
            return []
        return _managed_endpoints_problems(manifest, pods)
    matched = [p for p in pods if _same_namespace(p.namespace, _namespace(manifest)) and p.could_be_selected_by(selector)]
    if not matched:
        return [f"{_ref(manifest)}: selector {selector} matches no pod template"]
    problems = []
    for port in spec.get("ports") or []:
        target = port.get("targetPort", port["port"])
        for pod_set in matched:
            ports = pod_set.container_ports()
            found = any(p.get("name") == target for p in ports) if isinstance(target, str) else any(p["containerPort"] == target for p in ports)
            if not found:
                problems.append(f"{_ref(manifest)}: port {port.get('name', port['port'])} targets {target!r}, which {pod_set.owner} does not declare")
    return problems


def _managed_endpoints_problems(manifest: Manifest, pods: Sequence[_PodSet]) -> list[str]:
    """A Service without a selector works only if something writes Endpoints of its name with its port names."""
    writers = [p.managed_endpoints[_name(manifest)] for p in pods
               if _same_namespace(p.namespace, _namespace(manifest)) and _name(manifest) in p.managed_endpoints]
    if not writers:
        return [f"{_ref(manifest)}: has no selector and no pod writes Endpoints named {_name(manifest)!r}"]
    names = {port.get("name") for port in (manifest.get("spec") or {}).get("ports") or []}
    if any(not names <= ports for ports in writers):
        return [f"{_ref(manifest)}: ports {sorted(map(str, names))} are not all in the Endpoints Patroni writes ({sorted(writers[0])})"]
    return []


def _selector_problems(manifest: Manifest, selector: Mapping[str, Any], pods: Sequence[_PodSet]) -> list[str]:
    if any(_same_namespace(p.namespace, _namespace(manifest)) and p.could_be_selected_by(selector) for p in pods):
        return []
    return [f"{_ref(manifest)}: selector {dict(selector)} matches no pod template"]


def _hpa_problems(manifest: Manifest, index: Mapping[tuple[str, str, str], Manifest]) -> list[str]:
    ref = manifest["spec"]["scaleTargetRef"]
    target = _find(index, ref["kind"], _namespace(manifest), ref["name"])
    if target is None:
        return [f"{_ref(manifest)}: scaleTargetRef {ref['kind']}/{ref['name']} names no object"]
    if ref.get("apiVersion") != target["apiVersion"]:
        return [f"{_ref(manifest)}: scaleTargetRef apiVersion {ref.get('apiVersion')!r} != target's {target['apiVersion']!r}"]
    return []


def _binding_problems(manifest: Manifest, index: Mapping[tuple[str, str, str], Manifest]) -> list[str]:
    problems = []
    role = manifest["roleRef"]
    role_ns = "" if role["kind"] == "ClusterRole" else _namespace(manifest)
    if role["kind"] == "Role" and not _find(index, role["kind"], role_ns, role["name"]):
        problems.append(f"{_ref(manifest)}: roleRef names missing {role['kind']} {role['name']!r}")
    for subject in manifest.get("subjects") or []:
        if subject["kind"] == "ServiceAccount" and not _find(index, "ServiceAccount", subject.get("namespace", _namespace(manifest)), subject["name"]):
            problems.append(f"{_ref(manifest)}: subject names missing ServiceAccount {subject['name']!r}")
    return problems


def _pod_set(manifest: Manifest, index: Mapping[tuple[str, str, str], Manifest]) -> _PodSet:
    spec = manifest["spec"]
    template = spec.get("template") or spec.get("jobTemplate", {}).get("spec", {}).get("template", {})
    pod_spec = template.get("spec") or {}
    return _PodSet(
        owner=_ref(manifest),
        namespace=_namespace(manifest),
        labels=(template.get("metadata") or {}).get("labels") or {},
        spec=pod_spec,
        claim_templates=frozenset(c["metadata"]["name"] for c in spec.get("volumeClaimTemplates") or []),
        runtime_labels=_patroni_role_labels(pod_spec, index, _namespace(manifest)),
        managed_endpoints=_patroni_endpoints(pod_spec, index, _namespace(manifest)),
    )


PATRONI_DEFAULTS = {
    "role_label": "role",
    "leader_label_value": "primary",
    "follower_label_value": "replica",
    "scope_label": "cluster-name",
}
"""Patroni 4 defaults for the Kubernetes DCS labels (before 4.0 the leader value was ``master``)."""


def _patroni_settings(pod_spec: Mapping[str, Any], index: Mapping[tuple[str, str, str], Manifest], ns: str) -> dict[str, Any] | None:
    """The Kubernetes DCS label settings of a Patroni pod (from the config it mounts), or None if not Patroni."""
    env = {e["name"]: e.get("value") for c in _containers(pod_spec) for e in c.get("env") or []}
    if "PATRONI_KUBERNETES_LABELS" not in env:
        return None
    settings: dict[str, Any] = dict(PATRONI_DEFAULTS)
    for volume in pod_spec.get("volumes") or []:
        config_map = _find(index, "ConfigMap", ns, (volume.get("configMap") or {}).get("name", ""))
        for text in (config_map or {}).get("data", {}).values():
            try:
                document = yaml.safe_load(text)
            except yaml.YAMLError:
                continue
            if isinstance(document, dict) and isinstance(document.get("kubernetes"), dict):
                settings.update({k: v for k, v in document["kubernetes"].items() if k in settings})
                settings["use_endpoints"] = document["kubernetes"].get("use_endpoints", False)
                settings["ports"] = document["kubernetes"].get("ports", [{}])
                if isinstance(document.get("scope"), str):
                    settings["scope"] = document["scope"]
    if env.get("PATRONI_SCOPE"):
        settings["scope"] = env["PATRONI_SCOPE"]
    if env.get("PATRONI_KUBERNETES_USE_ENDPOINTS"):
        settings["use_endpoints"] = env["PATRONI_KUBERNETES_USE_ENDPOINTS"].lower() == "true"
    return settings


def _patroni_endpoints(pod_spec: Mapping[str, Any], index: Mapping[tuple[str, str, str], Manifest], ns: str) -> dict[str, frozenset[str]]:
    """In Endpoints mode Patroni writes ``<scope>`` (the leader's address, ``kubernetes.ports``) and keeps
    its config, synchronous-standby and failover records in ``<scope>-config``, ``-sync`` and ``-failover``
    (no addresses; patroni/dcs/kubernetes.py config_path, sync_path, failover_path)."""
    settings = _patroni_settings(pod_spec, index, ns)
    if settings is None or not settings.get("use_endpoints") or not settings.get("scope"):
        return {}
    ports = frozenset(p.get("name") for p in settings.get("ports") or [{}])
    scope = settings["scope"]
    return {scope: ports, **{f"{scope}-{key}": frozenset() for key in ("config", "sync", "failover")}}


def _patroni_role_labels(pod_spec: Mapping[str, Any], index: Mapping[tuple[str, str, str], Manifest], ns: str) -> dict[str, frozenset[str]]:
    """The role label Patroni will put on these pods at run time, with its values."""
    settings = _patroni_settings(pod_spec, index, ns)
    if settings is None:
        return {}
    return {settings["role_label"]: frozenset({settings["leader_label_value"], settings["follower_label_value"]})}


def _patroni_problems(pod_set: _PodSet, index: Mapping[tuple[str, str, str], Manifest]) -> list[str]:
    """Patroni lists its members by PATRONI_KUBERNETES_LABELS plus scope_label=scope: pods must carry both."""
    settings = _patroni_settings(pod_set.spec, index, pod_set.namespace)
    if settings is None:
        return []
    problems = []
    for container in _containers(pod_set.spec):
        for env in container.get("env") or []:
            if env["name"] == "PATRONI_KUBERNETES_LABELS" and "value" in env:
                declared = json.loads(env["value"])
                if any(pod_set.labels.get(k) != v for k, v in declared.items()):
                    problems.append(f"PATRONI_KUBERNETES_LABELS {declared} are not all pod labels")
    scope = settings.get("scope")
    if scope is None:
        problems.append("Patroni pods set no scope (PATRONI_SCOPE or scope in the mounted config)")
    elif pod_set.labels.get(settings["scope_label"]) != scope:
        problems.append(f"pods lack the label {settings['scope_label']}={scope} Patroni lists its members by")
    return problems


def _containers(spec: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]


def _find(index: Mapping[tuple[str, str, str], Manifest], kind: str, ns: str, name: str) -> Manifest | None:
    for (k, n, nm), manifest in index.items():
        if k == kind and nm == name and _same_namespace(n, ns):
            return manifest
    return None


def _same_namespace(a: str, b: str) -> bool:
    return not a or not b or a == b


def _namespace(manifest: Manifest) -> str:
    return (manifest.get("metadata") or {}).get("namespace") or ""


def _name(manifest: Manifest) -> str:
    return (manifest.get("metadata") or {}).get("name") or ""


def _ref(manifest: Manifest) -> str:
    return f"{manifest['kind']}/{_name(manifest)}"
