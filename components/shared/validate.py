"""Small argument checks whose errors name the field and the bad value."""

from __future__ import annotations


def check_range(path: str, value: int, low: int, high: int | None = None) -> int:
    """Return ``value`` if it is an integer in ``[low, high]`` (no upper bound when ``high`` is None), else raise."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{path} ({value!r}) must be an integer")
    if value < low or (high is not None and value > high):
        bounds = f"between {low} and {high}" if high is not None else f">= {low}"
        raise ValueError(f"{path} ({value}) must be {bounds}")
    return value
