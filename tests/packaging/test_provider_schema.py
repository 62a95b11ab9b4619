"""The component provider's schema, inferred in-process by Pulumi's own analyzer (no Pulumi CLI): every hosted
component, every Args field and every output with its type; and a construct through the provider under mocks."""

from __future__ import annotations

import dataclasses
import json
import typing
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Literal

import pulumi
import pytest

from components import __version__
from components.provider import EXCLUDED, HOSTED, PACKAGE, UnsupportedField, provider
from components.provider.host import hosted_component
from components.provider.schema import Deriver, hints
from components.workload import Workload, WorkloadArgs
from tests.harness import run_program

TYPES = f"#/types/{PACKAGE}:index:"


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    served = provider()
    assert served.schema
    return json.loads(served.schema)


def token(cls: type) -> str:
    return f"{PACKAGE}:index:{cls.__name__}"


def strip(hint: Any) -> Any:
    """Drop ``pulumi.Input``/``Output`` and ``| None`` wrappers (the schema has no such distinction)."""
    args = typing.get_args(hint)
    if typing.get_origin(hint) is pulumi.Output:
        return strip(args[0])
    awaited = [typing.get_args(a)[0] for a in args if typing.get_origin(a) is Awaitable]
    if awaited:
        return strip(awaited[0])
    if type(None) in args:
        return strip(next(a for a in args if a is not type(None)))
    return hint


def check_property(prop: Mapping[str, Any], hint: Any, path: str, schema: Mapping[str, Any], seen: set[str]) -> None:
    """Assert the schema property has the type ``hint`` calls for (an oracle independent of the derivation)."""
    hint = strip(hint)
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    scalar = {str: "string", int: "integer", bool: "boolean", float: "number"}
    if hint in scalar:
        assert prop.get("type") == scalar[hint], f"{path}: {prop} is not {scalar[hint]}"
    elif origin is Literal:
        enum = schema["types"][prop["$ref"].removeprefix("#/types/")]
        assert sorted(v["value"] for v in enum["enum"]) == sorted(args), f"{path}: {enum}"
    elif origin in (dict, Mapping):
        assert prop.get("type") == "object", f"{path}: {prop}"
        check_property(prop["additionalProperties"], args[1], f"{path}.*", schema, seen)
    elif origin in (list, Sequence, frozenset, tuple):
        assert prop.get("type") == "array", f"{path}: {prop}"
        check_property(prop["items"], args[0], f"{path}[]", schema, seen)
    elif dataclasses.is_dataclass(hint):
        assert prop.get("$ref") == f"{TYPES}{hint.__name__}", f"{path}: {prop}"
        check_object(schema["types"][token(hint)], hint, schema, seen)
    elif isinstance(hint, type) and issubclass(hint, pulumi.Resource):
        assert prop.get("$ref", "").endswith(hint.pulumi_type.replace("/", "%2F")), f"{path}: {prop}"  # type: ignore[attr-defined]
    else:
        raise AssertionError(f"{path}: the test has no expectation for {hint!r}")


def check_object(spec: Mapping[str, Any], cls: type, schema: Mapping[str, Any], seen: set[str]) -> None:
    """Every field of dataclass ``cls`` (unless excluded) in ``spec`` with its type; required = no default."""
    if cls.__name__ in seen:
        return
    seen.add(cls.__name__)
    properties = spec.get("inputProperties", spec.get("properties", {}))
    required = set(spec.get("requiredInputs", spec.get("required", [])))
    field_hints = hints(cls)
    expected_required = set()
    for field in dataclasses.fields(cls):
        key = f"{cls.__name__}.{field.name}"
        camel = pulumi.provider.experimental.util.camel_case(field.name)  # type: ignore[attr-defined]
        if key in EXCLUDED:
            assert camel not in properties, f"{key} is excluded but in the schema"
            continue
        assert camel in properties, f"{key} ({camel}) is missing from the schema"
        check_property(properties[camel], field_hints[field.name], key, schema, seen)
        if field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            expected_required.add(camel)
    assert required == expected_required, f"{cls.__name__}: required {sorted(required)} != {sorted(expected_required)}"


def test_every_hosted_component_is_in_the_schema(schema: dict[str, Any]) -> None:
    assert sorted(schema["resources"]) == sorted(token(library) for library, _ in HOSTED)
    assert [library.__name__ for library, _ in HOSTED] == ["TimescaleDB", "Autoscaler", "Monitoring", "Workload", "Pooler"]
    assert schema["name"] == PACKAGE and schema["version"] == __version__
    assert all(resource["isComponent"] for resource in schema["resources"].values())


@pytest.mark.parametrize("library, args_type", HOSTED, ids=[library.__name__ for library, _ in HOSTED])
def test_every_input_has_its_type(schema: dict[str, Any], library: type, args_type: type) -> None:
    check_object(schema["resources"][token(library)], args_type, schema, set())


@pytest.mark.parametrize("library, args_type", HOSTED, ids=[library.__name__ for library, _ in HOSTED])
def test_every_output_has_its_type(schema: dict[str, Any], library: type, args_type: type) -> None:
    properties = schema["resources"][token(library)]["properties"]
    own = [name for name in library.__dict__.get("__annotations__", {}) if not name.startswith("_")]
    assert own, f"{library.__name__} declares no outputs"
    output_hints = hints(library)
    seen: set[str] = set()
    for name in own:
        camel = pulumi.provider.experimental.util.camel_case(name)  # type: ignore[attr-defined]
        if f"{library.__name__}.{name}" in EXCLUDED:
            assert camel not in properties
            continue
        assert camel in properties, f"{library.__name__}.{name} is missing from the outputs"
        check_property(properties[camel], output_hints[name], f"{library.__name__}.{name}", schema, seen)


def test_the_exclusions_name_real_fields() -> None:
    fields = {f"{args_type.__name__}.{f.name}" for _, args_type in HOSTED for f in dataclasses.fields(args_type)}
    outputs = {f"{library.__name__}.{name}" for library, _ in HOSTED for name in library.__dict__.get("__annotations__", {})}
    assert set(EXCLUDED) <= fields | outputs, set(EXCLUDED) - fields - outputs


def test_spot_checks_with_descriptions(schema: dict[str, Any]) -> None:
    database = schema["resources"][token(HOSTED[0][0])]
    assert database["requiredInputs"] == ["namespace"]
    assert database["inputProperties"]["namespace"]["type"] == "string"
    assert "default 1" in database["inputProperties"]["replicas"]["description"]
    assert database["inputProperties"]["resources"]["$ref"] == f"{TYPES}Resources"
    assert database["properties"]["statefulset"]["$ref"].endswith("#/resources/kubernetes:apps%2Fv1:StatefulSet")
    assert database["properties"]["appConnection"]["$ref"] == f"{TYPES}DatabaseConnection"
    assert "secretName" in schema["types"][f"{PACKAGE}:index:DatabaseConnection"]["properties"]


def test_a_field_added_without_a_schema_type_fails() -> None:
    grown = dataclasses.make_dataclass(  # WorkloadArgs with one more field, of a type the schema cannot express
        "WorkloadArgs", [("on_ready", Callable[[], None], dataclasses.field(default=print))],
        bases=(WorkloadArgs,), frozen=True, kw_only=True,
    )
    with pytest.raises(UnsupportedField, match=r"WorkloadArgs\.on_ready"):
        hosted_component(Workload, grown, Deriver())


def test_a_set_of_integers_is_not_silently_turned_into_something_else() -> None:
    @dataclasses.dataclass(frozen=True)
    class Probe:
        ports: dict[int, str]

    with pytest.raises(UnsupportedField, match=r"Probe\.ports"):
        Deriver().twin(Probe)


def test_constructing_through_the_provider_composes_database_and_pooler() -> None:
    served = provider()
    states: dict[str, Any] = {}

    def program() -> None:
        database = served.construct("orders-db", token(HOSTED[0][0]), {
            "namespace": "orders", "replicas": 2, "antiAffinity": "required", "poolerLookup": True,
            "resources": {"cpuRequest": "1", "memoryRequest": "2Gi"},
        }, None)
        states["database"] = database.state
        connection, lookup = database.state["appConnection"], database.state["poolerLookup"]
        pooler = served.construct("orders-pool", token(HOSTED[4][0]), {
            # Other components' output objects as the engine sends them: one Output around the whole object,
            # or an object whose fields (labels here) are Outputs.
            "namespace": "orders", "database": pulumi.Output.from_input(connection),
            "lookup": {**lookup, "secretName": pulumi.Output.from_input(lookup["secretName"])},
        }, None)
        states["pooler"] = pooler.state

    recording = run_program(program)
    statefulset = recording.one("kubernetes:apps/v1:StatefulSet", "orders-db")
    assert statefulset.inputs["spec"]["replicas"] == 2
    affinity = statefulset.inputs["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"]
    assert "requiredDuringSchedulingIgnoredDuringExecution" in affinity
    wrappers = recording.of_type(token(HOSTED[0][0]))
    assert len(wrappers) == 2 and wrappers[1].parent == wrappers[0].urn, "the library component is the provider's child"
    assert recording.of_type("timescale-k8s:index:Reconciler"), "the provider's TimescaleDB runs its reconciler"
    assert recording.one("kubernetes:apps/v1:Deployment", "orders-pool-rw")
    assert {"readWriteHost", "secretName", "clientLabels"} <= set(states["database"]["appConnection"])
    assert set(states["pooler"]["connection"]) >= {"readWriteHost", "readOnlyHost"}
    pooler_pods = recording.one("kubernetes:apps/v1:Deployment", "orders-pool-rw").inputs["spec"]["template"]["metadata"]
    assert {"timescale-k8s.io/orders-db-client": "true"}.items() <= pooler_pods["labels"].items(), "PgBouncer may reach the database"


def test_a_missing_required_input_names_it() -> None:
    served = provider()
    with pytest.raises(Exception, match="namespace"):
        served.construct("orders-db", token(HOSTED[0][0]), {}, None)


def test_a_structured_input_not_known_yet_names_it() -> None:
    served = provider()
    unknown: pulumi.Output[Any] = pulumi.Output.from_input(None)  # what an unknown value resolves to here

    def program() -> None:
        served.construct("orders-pool", token(HOSTED[4][0]), {
            "namespace": "orders", "database": unknown, "lookup": {"role": "pgbouncer_lookup", "secretName": "s"},
        }, None)

    with pytest.raises(ValueError, match=r"database is not known yet"):
        run_program(program)
