"""Run Pulumi programs under mocks, record every resource, and render Kubernetes manifests.

Facts this relies on (pulumi 3.27x, pulumi-kubernetes 4.3x): mocks must be set with ``preview=False``
or outputs stay unknown; inputs arrive with camelCase keys, numbers as floats, and secrets wrapped; the
mock must fill ``metadata.name`` of Kubernetes objects and ``result`` of RandomPassword; resources that
wait on other outputs register late, so the run waits for every outstanding RPC before returning.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import kubernetes_validate
import pulumi
from pulumi.runtime import mocks as pulumi_mocks
from pulumi.runtime import rpc, settings
from pulumi.runtime.stack import run_pulumi_func
from pulumi.runtime.sync_await import _sync_await

K8S_VERSION = "1.34.0"
"""Kubernetes version whose OpenAPI schema the manifests are validated against (strict mode)."""

MOCK_SECRET_PREFIX = "mock-secret-"
"""Every mocked RandomPassword result starts with this, so tests can find leaked passwords."""


@dataclass
class RecordedResource:
    """One resource registration as the engine would have seen it."""

    type: str
    name: str
    urn: str
    inputs: dict[str, Any]
    parent: str
    custom: bool
    protect: bool
    retain_on_delete: bool
    delete_before_replace: bool
    ignore_changes: list[str]
    replace_on_changes: list[str]
    dependencies: list[str]
    secret_paths: list[str] = field(default_factory=list)

    @property
    def is_kubernetes(self) -> bool:
        """True for a Kubernetes API object (not a provider, not a Helm release)."""
        return (
            self.custom
            and self.type.startswith("kubernetes:")
            and not self.type.startswith("pulumi:providers:")
            and not self.type.startswith("kubernetes:helm.sh/")
        )

    def manifest(self) -> dict[str, Any]:
        """The object as it would be sent to the API server."""
        return to_manifest(self)


@dataclass
class Recording:
    """Everything a program registered and exported."""

    resources: list[RecordedResource]
    outputs: dict[str, Any]
    secret_outputs: set[str]

    def of_type(self, type_token: str) -> list[RecordedResource]:
        """Resources of one type token, e.g. ``kubernetes:apps/v1:StatefulSet``."""
        return [r for r in self.resources if r.type == type_token]

    def one(self, type_token: str, name_contains: str = "") -> RecordedResource:
        """The single resource of a type whose logical name contains ``name_contains``."""
        found = [r for r in self.of_type(type_token) if name_contains in r.name]
        if len(found) != 1:
            names = [r.name for r in self.of_type(type_token)]
            raise AssertionError(f"expected one {type_token} named *{name_contains}*, found {len(found)} in {names}")
        return found[0]

    def by_urn(self, urn: str) -> RecordedResource:
        return next(r for r in self.resources if r.urn == urn)

    def kubernetes_objects(self) -> list[RecordedResource]:
        return [r for r in self.resources if r.is_kubernetes]

    def manifests(self) -> list[dict[str, Any]]:
        """Every Kubernetes object as a manifest."""
        return [r.manifest() for r in self.kubernetes_objects()]

    def mock_passwords(self) -> list[str]:
        """The values the mocked RandomPasswords produced."""
        return [r.inputs["result"] for r in self.of_type("random:index/randomPassword:RandomPassword") if "result" in r.inputs]

    def descendants(self, urn: str) -> list[RecordedResource]:
        """All resources below ``urn`` in the parent tree."""
        children = [r for r in self.resources if r.parent == urn]
        return children + [d for c in children for d in self.descendants(c.urn)]


class RecordingMocks(pulumi.runtime.Mocks):
    """Mocks that fill what real providers would compute: names, passwords, ids, and the outputs of the stacks a
    ``StackReference`` reads (``stack_outputs``: stack name → (outputs, names of the secret ones))."""

    def __init__(self, stack_outputs: Mapping[str, tuple[Mapping[str, Any], set[str]]] | None = None) -> None:
        self.stack_outputs = dict(stack_outputs or {})

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict]:
        state = dict(args.inputs)
        if args.typ == "pulumi:pulumi:StackReference":
            if args.resource_id not in self.stack_outputs:
                raise AssertionError(f"no outputs mocked for stack {args.resource_id!r} (stack_outputs of run_program)")
            outputs, secret = self.stack_outputs[args.resource_id]
            return args.resource_id, {"name": args.resource_id, "outputs": dict(outputs), "secretOutputNames": sorted(secret)}
        digest = hashlib.sha256(f"{args.typ}/{args.name}".encode()).hexdigest()[:8]
        if args.typ.startswith("kubernetes:") and not args.typ.startswith("kubernetes:helm.sh/"):
            metadata = dict(state.get("metadata") or {})
            metadata.setdefault("name", f"{args.name}-{digest}")
            state["metadata"] = metadata
        if args.typ == "random:index/randomPassword:RandomPassword":
            state["result"] = f"{MOCK_SECRET_PREFIX}{digest}"
            state["bcryptHash"] = f"$2a$10$mock{digest}"
        if args.typ == "random:index/randomId:RandomId":
            state.setdefault("hex", digest)
            state.setdefault("b64Url", digest)
        if args.typ.startswith("kubernetes:helm.sh/v3:Release"):
            state.setdefault("status", {"namespace": state.get("namespace", "default"), "name": state.get("name", args.name), "status": "deployed"})
        return f"{args.name}-id", state

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict, list[tuple[str, str]] | None]:
        return {}, None


class RecordingMonitor(pulumi_mocks.MockMonitor):
    """A mock monitor that also keeps the resource options the plain mocks drop."""

    def __init__(self, mocks: pulumi.runtime.Mocks) -> None:
        super().__init__(mocks)
        self.registrations: list[RecordedResource] = []

    def RegisterResource(self, request):  # noqa: N802 - the gRPC method name
        response = super().RegisterResource(request)
        if request.type == "pulumi:pulumi:Stack":
            return response
        raw = rpc.deserialize_properties(request.object, keep_unknowns=True)
        secret_paths = sorted(_secret_paths(raw))
        recorded_inputs = dict(self.resources[response.urn].state) if response.urn in self.resources else {}
        self.registrations.append(
            RecordedResource(
                type=request.type,
                name=request.name,
                urn=response.urn,
                inputs=_plain(recorded_inputs),
                parent=request.parent,
                custom=request.custom,
                protect=bool(request.protect),
                retain_on_delete=bool(request.retainOnDelete),
                delete_before_replace=bool(request.deleteBeforeReplace),
                ignore_changes=list(request.ignoreChanges),
                replace_on_changes=list(request.replaceOnChanges),
                dependencies=list(request.dependencies),
                secret_paths=secret_paths,
            )
        )
        return response


def run_program(
    program: Callable[[], Any],
    *,
    stack: str = "dev",
    project: str = "timescale-k8s",
    config: Mapping[str, Any] | None = None,
    secret_config_keys: Iterable[str] = (),
    stack_outputs: Mapping[str, Recording] | None = None,
) -> Recording:
    """Run ``program`` (components or a whole ``__main__``) under mocks and return what it registered.

    ``config`` maps bare keys (``timescaledb``) or namespaced keys (``kubernetes:context``) to values;
    structured values are JSON-encoded as the Pulumi CLI does. ``stack_outputs``: the recordings whose exports a
    ``StackReference`` to that stack name reads (secret exports stay secret).
    """
    settings.ROOT.set(None)
    full_config = {_namespaced(key, project): _config_text(value) for key, value in (config or {}).items()}
    pulumi.runtime.set_all_config(full_config, [_namespaced(k, project) for k in secret_config_keys])
    references = {name: (source.outputs, source.secret_outputs) for name, source in (stack_outputs or {}).items()}
    mocks = RecordingMocks(references)
    monitor = RecordingMonitor(mocks)
    pulumi.runtime.set_mocks(mocks, project=project, stack=stack, preview=False, monitor=monitor)
    settings.SETTINGS.rpc_manager.clear()
    settings.SETTINGS.outputs.clear()
    root = settings.get_root_resource()
    try:
        _sync_await(run_pulumi_func(program))
    except Exception as error:
        # Keep what was registered before the failure, so tests can prove validation ran first.
        error.registered_resources = list(monitor.registrations)  # type: ignore[attr-defined]
        raise
    outputs: dict[str, Any] = {}
    secret_outputs: set[str] = set()
    for key, value in root.outputs.items():
        resolved, is_secret = _resolve(value)
        outputs[key] = resolved
        if is_secret:
            secret_outputs.add(key)
    recording = Recording(resources=monitor.registrations, outputs=outputs, secret_outputs=secret_outputs)
    if not recording.resources:
        raise AssertionError("the program registered no resources; the mocks recorded nothing")
    return recording


def to_manifest(resource: RecordedResource) -> dict[str, Any]:
    """Render a recorded Kubernetes resource as the manifest the provider would send."""
    group_version, kind = resource.type.split(":", 1)[1].rsplit(":", 1)
    api_version = group_version[len("core/") :] if group_version.startswith("core/") else group_version
    manifest: dict[str, Any] = {"apiVersion": resource.inputs.get("apiVersion", api_version), "kind": resource.inputs.get("kind", kind)}
    for key, value in resource.inputs.items():
        if key not in ("apiVersion", "kind"):
            manifest[key] = value
    return manifest


def validate_manifest(manifest: Mapping[str, Any], k8s_version: str = K8S_VERSION) -> None:
    """Validate against the pinned Kubernetes OpenAPI schema in strict mode (unknown fields fail)."""
    kubernetes_validate.validate(dict(manifest), k8s_version, strict=True)


def walk_strings(value: Any) -> Iterable[str]:
    """Every string inside a nested structure."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield str(key)
            yield from walk_strings(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from walk_strings(item)


def _namespaced(key: str, project: str) -> str:
    return key if ":" in key else f"{project}:{key}"


def _config_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _plain(value: Any) -> Any:
    """Unwrap secrets, turn integral floats into ints (the wire format has only floats)."""
    value = rpc.unwrap_rpc_secret(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _secret_paths(value: Any, path: str = "") -> Iterable[str]:
    if rpc.is_rpc_secret(value):
        yield path or "."
        return
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _secret_paths(item, f"{path}.{key}" if path else key)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _secret_paths(item, f"{path}[{index}]")


def _resolve(value: Any) -> tuple[Any, bool]:
    output = pulumi.Output.from_input(value)

    async def both() -> tuple[Any, bool]:
        return await output.future(), await output.is_secret()

    return _sync_await(both())
