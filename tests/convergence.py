"""What a server-side apply would not keep of a rendered object: the fields a re-apply shows as a diff forever.

The API server decodes an object into its Go types and encodes it back. Optional fields are ``omitempty``
there, so an empty list, an empty map or an empty string in an optional field is dropped (``ingress: []``
of a NetworkPolicy comes back without ``ingress``), while an empty *struct* is kept (``podSelector: {}``,
``emptyDir: {}``). The OpenAPI schema tells the three apart: ``type: array``, an object with only
``additionalProperties``, and an object with ``properties``. Custom resources are stored as sent (after
pruning, which the strict schema check already covers), so only built-in kinds are walked.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping
from typing import Any

import kubernetes_validate
from kubernetes_validate import utils

from tests.harness import K8S_VERSION

Manifest = Mapping[str, Any]
Schema = Mapping[str, Any]


def dropped_fields(manifests: Iterable[Manifest], k8s_version: str = K8S_VERSION) -> list[str]:
    """``Kind/name: path`` of every rendered field the server would drop (built-in kinds only)."""
    problems = []
    for manifest in manifests:
        schema = _kind_schema(manifest["apiVersion"], manifest["kind"], k8s_version)
        if schema is None:
            continue
        name = (manifest.get("metadata") or {}).get("name", "?")
        problems += [f"{manifest['kind']}/{name}: {path}" for path in _walk(manifest, schema, "", k8s_version)]
    return problems


def _walk(value: Any, schema: Schema, path: str, version: str) -> Iterable[str]:
    schema = _resolve(schema, version)
    if isinstance(value, Mapping) and "properties" in schema:
        required = set(schema.get("required") or ())
        for key, item in value.items():
            child = schema["properties"].get(key)
            if child is None:
                continue  # unknown fields are the strict schema check's
            child = _resolve(child, version)
            where = f"{path}.{key}" if path else key
            if key not in required and _empty(item, child):
                yield f"{where} ({item!r} is dropped by the server)"
            else:
                yield from _walk(item, child, where, version)
    elif isinstance(value, Mapping) and isinstance(schema.get("additionalProperties"), Mapping):
        for key, item in value.items():
            yield from _walk(item, schema["additionalProperties"], f"{path}[{key}]", version)
    elif isinstance(value, list) and isinstance(schema.get("items"), Mapping):
        for index, item in enumerate(value):
            yield from _walk(item, schema["items"], f"{path}[{index}]", version)


def _empty(value: Any, schema: Schema) -> bool:
    """An empty list, map or string (omitted when encoded); an empty struct is not empty to encoding/json."""
    if value is None or value == "" or value == []:
        return True
    return value == {} and "properties" not in schema


def _resolve(schema: Schema, version: str) -> Schema:
    reference = schema.get("$ref")
    if reference is None:
        return schema
    name = reference.rsplit("/", 1)[1]
    return _resolve({**_definitions(version)[name], **{k: v for k, v in schema.items() if k != "$ref"}}, version)


@functools.cache
def _schema_dir(version: str) -> str:
    wanted = utils.major_minor(version)
    known = [v for v in utils.all_versions() if utils.major_minor(v) <= wanted][-1]
    return f"kubernetes-json-schema/v{known}-local-strict"


@functools.cache
def _definitions(version: str) -> Mapping[str, Schema]:
    return utils.schema_contents(f"{_schema_dir(version)}/_definitions.json", version)["$defs"]


@functools.cache
def _kind_schema(api_version: str, kind: str, version: str) -> Schema | None:
    group_version = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
    try:
        return utils.schema_contents(f"{_schema_dir(version)}/{kind.lower()}-{group_version}.json", version)
    except (FileNotFoundError, kubernetes_validate.SchemaNotFoundError):
        return None
