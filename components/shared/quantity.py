"""Parse and check Kubernetes resource quantities (``500m``, ``2Gi``, ``1.5``) without a cluster."""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

_BINARY_SUFFIXES = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL_SUFFIXES = {
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "": Decimal(1),
    "k": Decimal("1e3"),
    "M": Decimal("1e6"),
    "G": Decimal("1e9"),
    "T": Decimal("1e12"),
    "P": Decimal("1e15"),
    "E": Decimal("1e18"),
}
_QUANTITY = re.compile(r"^(?P<number>[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?P<suffix>[a-zA-Z]*)$")


class QuantityError(ValueError):
    """A string is not a Kubernetes quantity of the expected kind."""


def parse_quantity(value: str | int | float, *, field: str) -> Decimal:
    """Return the quantity's value in base units (cores for CPU, bytes for memory and storage)."""
    text = str(value).strip()
    match = _QUANTITY.match(text)
    if match is None:
        raise QuantityError(
            f"{field} ({value!r}) is not a Kubernetes quantity; use forms like '500m', '2', '512Mi', '20Gi'"
        )
    suffix = match.group("suffix")
    try:
        number = Decimal(match.group("number"))
    except InvalidOperation as exc:  # pragma: no cover - the regex admits only decimals
        raise QuantityError(f"{field} ({value!r}) is not a number") from exc
    if suffix in _BINARY_SUFFIXES:
        return number * _BINARY_SUFFIXES[suffix]
    if suffix in _DECIMAL_SUFFIXES:
        return number * _DECIMAL_SUFFIXES[suffix]
    raise QuantityError(
        f"{field} ({value!r}) has unknown unit {suffix!r}; "
        f"allowed: {', '.join(s for s in [*_DECIMAL_SUFFIXES, *_BINARY_SUFFIXES] if s)}"
    )


def cpu_cores(value: str | int | float, *, field: str) -> Decimal:
    """Parse a CPU quantity (``250m``, ``2``) into cores; it must be positive."""
    cores = parse_quantity(value, field=field)
    if cores <= 0:
        raise QuantityError(f"{field} ({value!r}) must be a positive CPU quantity such as '250m' or '2'")
    if str(value).strip().endswith(tuple(_BINARY_SUFFIXES)):
        raise QuantityError(f"{field} ({value!r}) is a memory unit; CPU takes cores ('2') or millicores ('500m')")
    return cores


def byte_size(value: str | int | float, *, field: str) -> int:
    """Parse a memory or storage quantity (``512Mi``, ``20Gi``) into bytes; it must be at least 1 MiB."""
    size = parse_quantity(value, field=field)
    if str(value).strip().endswith("m"):
        raise QuantityError(f"{field} ({value!r}) uses 'm' (milli); for mebibytes write 'Mi'")
    if size < 2**20:
        raise QuantityError(f"{field} ({value!r}) must be at least 1Mi; write sizes with units such as '512Mi' or '20Gi'")
    return int(size)
