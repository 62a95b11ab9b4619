"""The component provider: TimescaleDB, Autoscaler, Monitoring, Workload and Pooler for every Pulumi language.

Each hosted class is a thin component with the library component's type token and name; it turns the
provider's dict into the library's dataclass Args (:func:`~.schema.from_schema`), builds the library
component as its only child (same name, so fixed Kubernetes names match a Python program's), and exposes
the child's outputs as the schema carries them (:func:`~.schema.to_schema`). The provider's TimescaleDB
also runs the library's Reconciler (``<name>-reconciler``), as this repository's program does: its input
holds a resource, which cannot cross the provider boundary.

This module deliberately has no ``from __future__ import annotations`` (the inference reads annotations).
"""

import sys
import types
from collections.abc import Callable
from typing import Any

import pulumi
from pulumi.provider.experimental.analyzer import PropertyDefinition, PropertyType
from pulumi.provider.experimental.component import ComponentProvider

from ..autoscaler import Autoscaler, AutoscalerArgs
from ..monitoring import Monitoring, MonitoringArgs
from ..pooler import Pooler, PoolerArgs
from ..reconciler import Reconciler, ReconcilerArgs
from ..timescaledb import TimescaleDB, TimescaleDBArgs
from ..workload import Workload, WorkloadArgs
from .schema import Deriver, exposed, from_schema, resolved, to_schema

PACKAGE = "timescale-k8s"
"""The provider's package name: the first part of every type token (``timescale-k8s:index:TimescaleDB``)."""

HOSTED: tuple[tuple[type[pulumi.ComponentResource], type], ...] = (
    (TimescaleDB, TimescaleDBArgs),
    (Autoscaler, AutoscalerArgs),
    (Monitoring, MonitoringArgs),
    (Workload, WorkloadArgs),
    (Pooler, PoolerArgs),
)
"""Library component and its dataclass Args, for each hosted component."""


def _run_reconciler(parent: pulumi.ComponentResource, name: str, database: Any) -> None:
    Reconciler(f"{name}-reconciler", ReconcilerArgs(target=database.reconcile_target),
               opts=pulumi.ResourceOptions(parent=parent))


AFTER_BUILD: dict[type, Callable[[pulumi.ComponentResource, str, Any], None]] = {TimescaleDB: _run_reconciler}
"""What a hosted component adds beside its library component."""


def hosted_component(library: type[pulumi.ComponentResource], args_type: type, deriver: Deriver) -> type:
    """The provider-facing class for ``library``: same name and type token, schema-typed args and outputs."""
    args_twin = deriver.twin(args_type)
    outputs = {name: deriver.annotation(hint, f"{library.__name__}.{name}") for name, hint in exposed(library).items()}
    token = f"{PACKAGE}:index:{library.__name__}"

    def __init__(self: pulumi.ComponentResource, name: str, args: Any,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        library_args = from_schema(args_type, args)
        super(hosted, self).__init__(token, name, None, opts)
        child = library(name, library_args, opts=pulumi.ResourceOptions(parent=self))
        if library in AFTER_BUILD:
            AFTER_BUILD[library](self, name, child)
        values = {field: to_schema(getattr(child, field)) for field in outputs}
        for field, value in values.items():
            setattr(self, field, value)
        self.register_outputs(values)

    __init__.__annotations__ = {"name": str, "args": args_twin, "opts": pulumi.ResourceOptions | None, "return": None}

    def body(namespace: dict[str, Any]) -> None:
        namespace["__init__"] = __init__
        namespace["__annotations__"] = dict(outputs)
        # The library class's module and name: the inference reads output docstrings from its source.
        namespace["__module__"], namespace["__qualname__"] = library.__module__, library.__qualname__
        namespace["__doc__"] = library.__doc__

    hosted = types.new_class(library.__name__, (pulumi.ComponentResource,), exec_body=body)
    return hosted


def provider_components() -> list[type]:
    """Every hosted component class, derived afresh (one ``Deriver``: shared types are built once)."""
    deriver = Deriver()
    return [hosted_component(library, args_type, deriver) for library, args_type in HOSTED]


class Provider(ComponentProvider):
    """Pulumi's component provider (schema inferred from the hosted classes), plus one step: an input that
    arrives as a single Output although its schema type is structured (an object, a list or map, an enum, an
    integer: what another component's output object is sent as) is unwrapped before Pulumi maps it, which
    would otherwise read it as empty ("Missing required input") or fail to convert it. Strings and booleans
    stay Outputs: the components take them as ``pulumi.Input``."""

    def map_input_properties(self, inputs: Any, properties: dict[str, PropertyDefinition], mapping: dict[str, str],
                             component_name: str, property_path: str) -> Any:
        if isinstance(inputs, pulumi.Output):
            inputs = resolved(inputs, property_path or component_name)
        if isinstance(inputs, dict):
            inputs = {key: resolved(value, f"{property_path}.{key}".lstrip("."))
                      if isinstance(value, pulumi.Output) and key in properties and _structured(properties[key]) else value
                      for key, value in inputs.items()}
        return super().map_input_properties(inputs, properties, mapping, component_name, property_path)


def _structured(prop: PropertyDefinition) -> bool:
    return prop.ref is not None or prop.type in (PropertyType.OBJECT, PropertyType.ARRAY, PropertyType.INTEGER)


def provider() -> Provider:
    """The provider with every hosted component, its schema inferred."""
    from .. import __version__

    return Provider(provider_components(), PACKAGE, version=__version__)


def serve() -> None:
    """Run the provider (the plugin's entry point), as ``component_provider_host`` does with Pulumi's own
    provider class; the engine passes its address on the command line."""
    from pulumi.provider import main

    main(provider(), sys.argv[1:])
