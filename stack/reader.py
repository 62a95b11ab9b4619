"""A strict reader for structured Pulumi config: typed getters, units, and unknown-key detection.

Every error names the full config key, the bad value and what is allowed, e.g.
``timescale-k8s:timescaledb.replicas (0): must be an integer >= 1``.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from components.shared.images import check_digest_pinned_image, check_pinned_image
from components.shared.names import DNS_LABEL
from components.shared.quantity import QuantityError, byte_size, cpu_cores
from components.shared.types import Resources

T = TypeVar("T")

_SQL_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_MISSING = object()


class ConfigError(ValueError):
    """A stack config value is missing, malformed, or inconsistent with another value.

    ``problems`` holds each problem on its own; ``str()`` is the one message shown to the user (a single
    problem as is, several under a count).
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.problems: tuple[str, ...] = (message,)

    @classmethod
    def listing(cls, problems: Sequence[str]) -> ConfigError:
        """One error for ``problems`` (in order, each once)."""
        unique = tuple(dict.fromkeys(problems))
        error = cls(_listed(unique))
        error.problems = unique
        return error


class ProblemCollector:
    """Runs independent parts of a config read and gathers every ``ConfigError``, so all are reported at once."""

    def __init__(self) -> None:
        self._problems: list[str] = []

    def attempt(self, read: Callable[[], T]) -> T | None:
        """``read()``, or None (its problems kept) when it raises ``ConfigError``."""
        try:
            return read()
        except ConfigError as error:
            self._problems.extend(error.problems)
            return None

    def add(self, problem: str) -> None:
        self._problems.append(problem)

    def raise_any(self) -> None:
        """Raise one ``ConfigError`` listing every problem gathered, if there is one."""
        if self._problems:
            raise ConfigError.listing(self._problems)


class ConfigSection:
    """One mapping in the stack config; every key read is remembered so leftovers can be reported."""

    def __init__(self, data: Any, path: str) -> None:
        if data is None:
            data = {}
        if not isinstance(data, Mapping):
            raise ConfigError(f"{path} ({data!r}): must be a mapping of settings, got {type(data).__name__}")
        self._data: Mapping[str, Any] = data
        self._path = path
        self._read: set[str] = set()

    @property
    def path(self) -> str:
        return self._path

    def key_path(self, key: str) -> str:
        """The full config key of ``key`` (``project:section.key``)."""
        return f"{self._path}{key}" if self._path.endswith(":") else f"{self._path}.{key}"

    def has(self, key: str) -> bool:
        return key in self._data and self._data[key] is not None

    def _raw(self, key: str, default: Any) -> Any:
        self._read.add(key)
        value = self._data.get(key, _MISSING)
        if value is _MISSING or value is None:
            if default is _MISSING:
                raise ConfigError(f"{self.key_path(key)}: is required but not set")
            return default
        return value

    def section(self, key: str) -> ConfigSection:
        """A nested mapping (absent means empty, so its own defaults apply)."""
        return ConfigSection(self._raw(key, {}), self.key_path(key))

    def optional(self, read: Callable[[str], T], key: str, default: T | None = None) -> T | None:
        """``read(key)`` when the key is set, else ``default`` (the key still counts as known)."""
        self._read.add(key)
        return read(key) if self.has(key) else default

    def integer(self, key: str, default: Any = _MISSING, *, minimum: int | None = None, maximum: int | None = None) -> int:
        value = self._raw(key, default)
        if isinstance(value, bool) or not isinstance(value, (int, float, str)) or not _is_integral(value):
            raise ConfigError(f"{self.key_path(key)} ({value!r}): must be a whole number{_range_text(minimum, maximum)}")
        number = int(float(value))
        if (minimum is not None and number < minimum) or (maximum is not None and number > maximum):
            raise ConfigError(f"{self.key_path(key)} ({value!r}): must be a whole number{_range_text(minimum, maximum)}")
        return number

    def number(self, key: str, default: Any = _MISSING, *, minimum: float | None = None, maximum: float | None = None) -> float:
        value = self._raw(key, default)
        try:
            number = float(value) if not isinstance(value, bool) else float("nan")
        except (TypeError, ValueError):
            number = float("nan")
        if number != number or (minimum is not None and number < minimum) or (maximum is not None and number > maximum):
            raise ConfigError(f"{self.key_path(key)} ({value!r}): must be a number{_range_text(minimum, maximum)}")
        return number

    def boolean(self, key: str, default: Any = _MISSING) -> bool:
        value = self._raw(key, default)
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise ConfigError(f"{self.key_path(key)} ({value!r}): must be true or false")

    def text(self, key: str, default: Any = _MISSING, *, choices: tuple[str, ...] | None = None) -> str:
        value = self._raw(key, default)
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{self.key_path(key)} ({value!r}): must be a non-empty string")
        if choices is not None and value not in choices:
            raise ConfigError(f"{self.key_path(key)} ({value!r}): must be one of {', '.join(choices)}")
        return value

    def dns_label(self, key: str, default: Any = _MISSING) -> str:
        value = self.text(key, default)
        if not DNS_LABEL.match(value):
            raise ConfigError(
                f"{self.key_path(key)} ({value!r}): must be a DNS-1123 label "
                "(lower-case letters, digits and '-', at most 63 characters, starting and ending alphanumeric)"
            )
        return value

    def sql_identifier(self, key: str, default: Any = _MISSING) -> str:
        value = self.text(key, default)
        if not _SQL_IDENTIFIER.match(value):
            raise ConfigError(
                f"{self.key_path(key)} ({value!r}): must be a lower-case SQL identifier "
                "(letters, digits and '_', starting with a letter or '_', at most 63 characters)"
            )
        return value

    def image(self, key: str, default: Any = _MISSING, *, digest: bool = False) -> str:
        """A pinned image: a full-version tag or a digest, or (``digest``) a digest whatever the tag."""
        value = self.text(key, default)
        check = check_digest_pinned_image if digest else check_pinned_image
        return checked(lambda: check(value, field=self.key_path(key)))

    def cpu(self, key: str, default: Any = _MISSING) -> str:
        value = str(self._raw(key, default))
        checked(lambda: cpu_cores(value, field=self.key_path(key)))
        return value

    def size(self, key: str, default: Any = _MISSING) -> str:
        value = str(self._raw(key, default))
        checked(lambda: byte_size(value, field=self.key_path(key)))
        return value

    def string_map(self, key: str) -> dict[str, str]:
        """A flat mapping of string keys to scalar values, returned as strings."""
        value = self._raw(key, {})
        if not isinstance(value, Mapping) or not all(
            isinstance(k, str) and isinstance(v, (str, int, float, bool)) for k, v in value.items()
        ):
            raise ConfigError(f"{self.key_path(key)} ({value!r}): must be a mapping of names to plain values")
        return {k: (str(v).lower() if isinstance(v, bool) else _scalar_text(v)) for k, v in value.items()}

    def string_list(self, key: str, default: Any = _MISSING, *, example: str = "") -> tuple[str, ...]:
        """A non-empty list of non-empty strings."""
        value = self._raw(key, default)
        if (isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)) or not value
                or not all(isinstance(v, str) and v for v in value)):
            hint = f", e.g. {example}" if example else ""
            raise ConfigError(f"{self.key_path(key)} ({value!r}): must be a non-empty list of strings{hint}")
        return tuple(value)

    def resources(self, key: str, default: Resources) -> Resources:
        """A ``{cpuRequest, memoryRequest, cpuLimit, memoryLimit}`` block; absent keys keep the default."""
        block = self.section(key)
        resources = Resources(
            cpu_request=block.cpu("cpuRequest", default.cpu_request),
            memory_request=block.size("memoryRequest", default.memory_request),
            cpu_limit=block.optional(block.cpu, "cpuLimit", default.cpu_limit),
            memory_limit=block.optional(block.size, "memoryLimit", default.memory_limit),
        )
        block.done()
        checked(lambda: resources.check(block.path))
        return resources

    def done(self) -> None:
        """Reject keys nobody read: they are typos or settings this version does not know."""
        unknown = sorted(set(self._data) - self._read)
        if unknown:
            key = unknown[0]
            hint = difflib.get_close_matches(key, sorted(self._read), n=1)
            suggestion = f"; did you mean '{hint[0]}'?" if hint else ""
            raise ConfigError(
                f"{self.key_path(key)}: unknown setting{suggestion} (known: {', '.join(sorted(self._read))})"
            )


def checked(check: Callable[[], T], *, prefix: str = "", renames: Mapping[str, str] | None = None) -> T:
    """Run a component-level check, re-raising its error as a ``ConfigError`` in config-key spelling.

    ``renames`` maps component field paths to config keys where they differ; ``prefix`` is the config
    section the component's field names are relative to. A check reporting several problems at once
    (an error with a ``problems`` tuple, like ``components.timescaledb.checks.Problems``) becomes one
    ``ConfigError`` with every problem on its own line.
    """
    try:
        return check()
    except (QuantityError, ValueError) as error:
        if isinstance(error, ConfigError):
            raise
        problems = getattr(error, "problems", None) or (str(error),)
        lines = [config_spelling(problem, prefix=prefix, renames=renames) for problem in problems]
        raise ConfigError.listing(lines) from error


def config_spelling(message: str, *, prefix: str = "", renames: Mapping[str, str] | None = None) -> str:
    """A component's message about its fields, spelled with the config keys (``prefix`` + renames + camelCase)."""
    for field_path, key in (renames or {}).items():
        message = re.sub(rf"\b{re.escape(field_path)}\b", key, message)
    message = _camel_outside_values(message)
    return f"{prefix}.{message}" if prefix else message


def _listed(lines: Sequence[str]) -> str:
    if len(lines) == 1:
        return lines[0]
    return f"{len(lines)} configuration problems:\n" + "\n".join(f"- {line}" for line in lines)


_SNAKE_WORD = re.compile(r"\b[a-z]+(?:_[a-z]+)+\b")
_VALUE = re.compile(r"\([^()]*\)|'[^']*'|\"[^\"]*\"")
"""Parenthesised or quoted text in an error: the user's values, which must be shown as given."""


def _camel_outside_values(message: str) -> str:
    """Spell snake_case field names as camelCase config keys, leaving quoted and bracketed values alone."""
    parts, last = [], 0
    for value in _VALUE.finditer(message):
        parts.append(_SNAKE_WORD.sub(lambda m: _camel(m.group(0)), message[last : value.start()]))
        parts.append(value.group(0))
        last = value.end()
    parts.append(_SNAKE_WORD.sub(lambda m: _camel(m.group(0)), message[last:]))
    return "".join(parts)


def _camel(word: str) -> str:
    head, *rest = word.split("_")
    return head + "".join(part.capitalize() for part in rest)


def _is_integral(value: int | float | str) -> bool:
    try:
        return float(value).is_integer()
    except ValueError:
        return False


def _scalar_text(value: str | int | float) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _range_text(minimum: float | None, maximum: float | None) -> str:
    if minimum is not None and maximum is not None:
        return f" from {minimum} to {maximum}"
    if minimum is not None:
        return f" >= {minimum}"
    if maximum is not None:
        return f" <= {maximum}"
    return ""
