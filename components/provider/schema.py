"""Provider-facing types derived from the components' dataclass Args, and the conversions both ways.

Pulumi's schema inference (``pulumi.provider.experimental``) reads evaluated annotations of ``TypedDict``
args, hands the component a plain ``dict`` (nested objects as dicts, ``Literal`` choices as enum members)
and reads complex outputs back as dicts. The components take frozen dataclasses whose annotations are
strings (``from __future__ import annotations``). So each dataclass reachable from a hosted component gets
a ``TypedDict`` twin built from its resolved type hints: one source of truth, and a field whose type the
schema cannot express raises :class:`UnsupportedField` naming it, unless :data:`EXCLUDED` says why it is
left out. The twin takes the dataclass's module and qualified name, so the inference reads the field
docstrings from the dataclass's source as descriptions.

This module deliberately has no ``from __future__ import annotations``.
"""

import dataclasses
import enum
import types
import typing
from collections.abc import Awaitable, Mapping, Sequence
from typing import Any, Literal, NotRequired, Optional, TypedDict, get_args, get_origin

import pulumi

_HINT_NAMES = {"Output": pulumi.Output, "T": typing.TypeVar("T")}
"""What ``pulumi.Input``'s forward reference ``Output[T]`` needs to evaluate."""


def _names() -> dict[str, Any]:
    """Names annotations may use without a runtime import (``TYPE_CHECKING`` imports that would be circular):
    the public names of the component packages, plus what ``pulumi.Input`` needs."""
    from .. import autoscaler, monitoring, pooler, shared, timescaledb, workload

    names = dict(_HINT_NAMES)
    for package in (shared, timescaledb, pooler, monitoring, workload, autoscaler):
        names.update({name: getattr(package, name) for name in getattr(package, "__all__", dir(package))})
    return names

EXCLUDED: Mapping[str, str] = {
    "WorkloadArgs.after": "resources cannot cross the provider boundary: give the Workload a dependsOn option",
    "TimescaleDB.reconcile_target": "holds the StatefulSet resource; the provider's TimescaleDB runs its reconciler",
    "Monitoring.rule": "a CustomResource has no schema type of its own",
    "Monitoring.pod_monitors": "CustomResources have no schema type of their own",
    "Workload.autoscaler": "the library's own Autoscaler object, not the provider's; its HPA is a child of the Workload",
}
"""``Owner.field`` left out of the schema, with the reason (the schema test keeps this list exact)."""


class UnsupportedField(TypeError):
    """A field whose type the provider schema cannot express."""


def _pascal(name: str) -> str:
    return "".join(part[:1].upper() + part[1:] for part in name.split("_"))


def _is_input(hint: Any) -> bool:
    """``pulumi.Input[X]`` (optionally ``| None``) as it resolves: ``Union[X, Awaitable[X], Output[T]]``."""
    return typing.get_origin(hint) is typing.Union and any(get_origin(a) is Awaitable for a in get_args(hint))


def _input_base(hint: Any) -> Any:
    return next(get_args(a)[0] for a in get_args(hint) if get_origin(a) is Awaitable)


def _optional_base(hint: Any) -> Any | None:
    """``X`` of ``X | None``, or None when ``hint`` is not optional."""
    args = get_args(hint)
    if get_origin(hint) in (typing.Union, types.UnionType) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        if len(rest) == 1:
            return rest[0]
    return None


def _is_resource(hint: Any) -> bool:
    return isinstance(hint, type) and issubclass(hint, pulumi.Resource) and bool(getattr(hint, "pulumi_type", None))


def hints(cls: type) -> dict[str, Any]:
    """Resolved type hints of a dataclass's fields, or of a component class's own public annotations."""
    if dataclasses.is_dataclass(cls):
        resolved = typing.get_type_hints(cls, localns=_names())
        return {f.name: resolved[f.name] for f in dataclasses.fields(cls)}
    # Only the class's own annotations: the Pulumi base classes' do not resolve outside their module.
    own = {name: hint for name, hint in cls.__dict__.get("__annotations__", {}).items() if not name.startswith("_")}
    shim = type(cls.__name__, (), {"__annotations__": own, "__module__": cls.__module__})
    return typing.get_type_hints(shim, localns=_names())


def exposed(cls: type) -> dict[str, Any]:
    """The fields of ``cls`` the schema carries (every one not in :data:`EXCLUDED`)."""
    return {name: hint for name, hint in hints(cls).items() if f"{cls.__name__}.{name}" not in EXCLUDED}


class Deriver:
    """Builds (once per class) the ``TypedDict`` twins and the ``Enum`` types for ``Literal`` choices."""

    def __init__(self) -> None:
        self._twins: dict[type, type] = {}
        self._enums: dict[str, type[enum.Enum]] = {}

    def twin(self, cls: type) -> type:
        """The ``TypedDict`` twin of dataclass ``cls``: a defaulted field is ``NotRequired``."""
        if cls in self._twins:
            return self._twins[cls]
        defaults = {f.name for f in dataclasses.fields(cls)
                    if f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING}
        annotations: dict[str, Any] = {}
        for name, hint in exposed(cls).items():
            annotation = self.annotation(hint, f"{cls.__name__}.{name}")
            annotations[name] = NotRequired[annotation] if name in defaults else annotation
        twin: Any = TypedDict(cls.__name__, annotations)  # type: ignore[operator]
        twin.__module__, twin.__qualname__, twin.__doc__ = cls.__module__, cls.__qualname__, cls.__doc__
        self._twins[cls] = twin
        return twin

    def annotation(self, hint: Any, path: str) -> Any:
        """The schema-expressible annotation for ``hint`` at ``path`` (``Owner.field``)."""
        if hint in (str, int, float, bool) or _is_resource(hint):
            return hint
        if _is_input(hint):
            base = self.annotation(_input_base(hint), path)
            return Optional[pulumi.Input[base]] if type(None) in get_args(hint) else pulumi.Input[base]
        optional = _optional_base(hint)
        if optional is not None:
            return Optional[self.annotation(optional, path)]
        origin, args = get_origin(hint), get_args(hint)
        if origin is pulumi.Output:
            return pulumi.Input[self.annotation(args[0], path)]
        if origin is Literal and args and all(isinstance(a, str) for a in args):
            return self._enum(path, args)
        if origin in (dict, Mapping) and len(args) == 2 and args[0] is str:
            return dict[str, self.annotation(args[1], path)]  # type: ignore[misc]
        if origin in (list, Sequence, frozenset) and len(args) == 1:
            return list[self.annotation(args[0], path)]  # type: ignore[misc]
        if origin is tuple and args and len(set(args) - {Ellipsis}) == 1:
            return list[self.annotation(args[0], path)]  # type: ignore[misc]
        if dataclasses.is_dataclass(hint):
            return self.twin(hint)
        raise UnsupportedField(f"{path}: {hint!r} has no provider schema type (add a mapping or an EXCLUDED reason)")

    def _enum(self, path: str, choices: tuple[str, ...]) -> type[enum.Enum]:
        name = _pascal(path.replace(".", "_"))
        if name not in self._enums:
            members = {choice.upper().replace("-", "_"): choice for choice in choices}
            made = enum.Enum(name, members, module=__name__)  # type: ignore[misc]
            made.__doc__ = f"The choices of ``{path}``."
            self._enums[name] = made
        return self._enums[name]


def from_schema(cls: type, value: Mapping[str, Any], path: str = "args") -> Any:
    """Build dataclass ``cls`` from the provider's dict (snake_case keys); absent keys keep their defaults."""
    if isinstance(value, pulumi.Output):
        value = resolved(value, path)
    fields: dict[str, Any] = {}
    for name, hint in exposed(cls).items():
        if value.get(name) is not None:
            fields[name] = _convert_in(hint, value[name], f"{path}.{name}")
    return cls(**fields)


def resolved(value: "pulumi.Output[Any]", path: str) -> Any:
    """The plain value of a field that arrived as an Output (a field of another component's output object).

    Its data is already there when the provider constructs (the engine sent it), so this only unwraps it; the
    library components need such fields plain (labels, ports), so an unknown one (a preview before the
    producing component exists) is an error naming the input.
    """
    from pulumi.runtime.sync_await import _sync_await

    plain = _sync_await(value.future())
    if plain is None:
        raise ValueError(f"{path} is not known yet: pass it from a component that already exists, or run up first")
    return plain


def _convert_in(hint: Any, value: Any, path: str) -> Any:
    if isinstance(value, pulumi.Output) and not (_is_input(hint) or get_origin(hint) is pulumi.Output):
        value = resolved(value, path)  # a plain field given as another component's output
    if isinstance(value, enum.Enum):
        return value.value
    base = _optional_base(hint)
    if base is not None and not _is_input(hint):
        return _convert_in(base, value, path)
    origin, args = get_origin(hint), get_args(hint)
    if dataclasses.is_dataclass(hint):
        return from_schema(hint, value, path)
    if origin in (dict, Mapping) and isinstance(value, Mapping):
        return {key: _convert_in(args[1], item, f"{path}.{key}") for key, item in value.items()}
    if origin in (list, Sequence, frozenset, tuple) and isinstance(value, (list, tuple)):
        items = [_convert_in(args[0], item, f"{path}[{index}]") for index, item in enumerate(value)]
        if origin is tuple and Ellipsis not in args and len(items) != len(args):
            raise ValueError(f"{path} must have {len(args)} items, got {len(items)}")
        return frozenset(items) if origin is frozenset else tuple(items)
    return value


def to_schema(value: Any) -> Any:
    """A component's output as the schema carries it: dataclasses as dicts, sets as sorted lists."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_schema(getattr(value, f.name)) for f in dataclasses.fields(value)
                if f"{type(value).__name__}.{f.name}" not in EXCLUDED}
    if isinstance(value, frozenset):
        return sorted(value)
    if isinstance(value, Mapping):
        return {key: to_schema(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_schema(item) for item in value]
    return value
