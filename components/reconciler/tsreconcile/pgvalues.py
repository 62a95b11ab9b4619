"""Compare a declared parameter value with ``pg_settings`` the way PostgreSQL parses it.

``max_connections: "200"`` matches setting ``200``; ``wal_keep_size: "1GB"`` matches setting ``1024``
with unit ``MB``; ``wal_log_hints: "on"`` matches ``on``/``true``/``1``. Without this a run could never
tell "applied" from "different spelling", and a second run would not be a no-op.
"""

from __future__ import annotations

import re
from typing import Optional

_MEMORY = {"B": 1, "kB": 1024, "MB": 1024**2, "GB": 1024**3, "TB": 1024**4}
_TIME = {"us": 1, "ms": 1000, "s": 1000**2, "min": 60 * 1000**2, "h": 3600 * 1000**2, "d": 86400 * 1000**2}
_NUMBER = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*$")
_UNIT = re.compile(r"^(\d*)\s*([A-Za-z]+)$")
_TRUE = {"on", "true", "yes", "1", "t", "y"}
_FALSE = {"off", "false", "no", "0", "f", "n"}


def _base(unit: str) -> Optional[float]:
    """Size of one ``unit`` (e.g. ``8kB``, ``ms``) in bytes or microseconds; None for unknown units."""
    match = _UNIT.match(unit)
    if not match:
        return None
    count = int(match.group(1) or 1)
    name = match.group(2)
    factor = _MEMORY.get(name, _TIME.get(name))
    return None if factor is None else count * factor


def _boolean(text: str) -> Optional[bool]:
    lowered = text.strip().strip("'").lower()
    return True if lowered in _TRUE else False if lowered in _FALSE else None


def _number(text: str, unit: Optional[str]) -> Optional[float]:
    """``text`` in the setting's unit (so it compares with ``pg_settings.setting``); None if unparsable."""
    match = _NUMBER.match(text.strip().strip("'"))
    if not match:
        return None
    value, suffix = float(match.group(1)), match.group(2)
    if not suffix:
        return value
    setting_unit = _base(unit) if unit else None
    suffix_size = _base(suffix)
    if setting_unit is None or suffix_size is None:
        return None
    return value * suffix_size / setting_unit


def value_matches(declared: str, setting: str, unit: Optional[str], vartype: str) -> bool:
    """True if the server's ``setting`` (with ``unit`` and ``vartype`` from pg_settings) is ``declared``."""
    if vartype == "bool":
        return _boolean(declared) is not None and _boolean(declared) == _boolean(setting)
    if vartype in ("integer", "real"):
        number = _number(declared, unit)
        return number is not None and abs(number - float(setting)) < 1e-9
    return declared.strip().strip("'").lower() == setting.strip().lower()


def loosely_equal(declared: str, stored: object) -> bool:
    """Compare a declared value with one from Patroni's DCS config (which may hold numbers or booleans)."""
    if stored is None:
        return False
    if isinstance(stored, bool):
        return _boolean(declared) == stored
    text = str(stored)
    if _boolean(declared) is not None and _boolean(text) is not None:
        return _boolean(declared) == _boolean(text)
    return declared.strip().strip("'").lower() == text.strip().strip("'").lower()
