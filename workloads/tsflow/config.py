"""Typed settings of the three commands and the value parsers the CLI uses for them."""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass
from typing import Callable, TypeVar

T = TypeVar("T")

ENV_PREFIX = "TSFLOW_"
SHAPES = ("sine", "walk", "mixed")

_DURATION = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def env_name(option: str) -> str:
    """`--metrics-port` -> `TSFLOW_METRICS_PORT`."""
    return ENV_PREFIX + option.lstrip("-").replace("-", "_").upper()


def _int(text: str) -> int:
    try:
        return int(str(text).strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None


def _float(text: str) -> float:
    try:
        value = float(str(text).strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise argparse.ArgumentTypeError(f"not a finite number: {text!r}")
    return value


def duration(text: str) -> float:
    """Parse `250ms`, `5`, `5s`, `10m`, `2h`, `30d` into seconds (>= 0)."""
    match = _DURATION.match(str(text))
    if not match:
        raise argparse.ArgumentTypeError(f"invalid duration {text!r} (use e.g. 500ms, 5s, 10m, 2h, 30d)")
    value = float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative, got {text!r}")
    return value


def _bounded(parse: Callable[[str], T], ok: Callable[[T], bool], requirement: str, doc: str) -> Callable[[str], T]:
    """A converter: ``parse`` the text, then reject values failing ``ok`` with "<requirement>, got <text>"."""

    def convert(text: str) -> T:
        value = parse(text)
        if not ok(value):
            raise argparse.ArgumentTypeError(f"{requirement}, got {text!r}")
        return value

    convert.__doc__ = doc
    return convert


positive_duration = _bounded(duration, lambda v: v > 0, "must be > 0", "A duration that must be > 0.")
positive_int = _bounded(_int, lambda v: v >= 1, "must be >= 1", "An integer >= 1.")
non_negative_int = _bounded(_int, lambda v: v >= 0, "must be >= 0", "An integer >= 0.")
port = _bounded(_int, lambda v: 0 <= v <= 65535, "must be a port 0-65535", "A TCP port, 0 meaning 'any free port'.")
non_negative_float = _bounded(_float, lambda v: v >= 0, "must be >= 0", "A float >= 0.")
positive_float = _bounded(_float, lambda v: v > 0, "must be > 0", "A float > 0.")
probability = _bounded(_float, lambda v: 0.0 <= v <= 1.0, "must be between 0 and 1", "A float in [0, 1].")


def _choice(values: tuple[str, ...], normalize: Callable[[str], str], doc: str) -> Callable[[str], str]:
    """A converter accepting only ``values`` (after ``normalize``), so an environment value is checked too."""

    def convert(text: str) -> str:
        value = normalize(str(text).strip())
        if value not in values:
            raise argparse.ArgumentTypeError(f"must be one of {', '.join(values)}, got {text!r}")
        return value

    convert.__doc__ = doc
    return convert


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
log_level = _choice(LOG_LEVELS, str.upper, "A logging level name (any case).")
shape = _choice(SHAPES, str.lower, "A value shape: sine, walk or mixed.")


def boolean(text: str) -> bool:
    """`true/false/1/0/yes/no/on/off`."""
    lowered = str(text).strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise argparse.ArgumentTypeError(f"must be true or false, got {text!r}")


def identifier(text: str) -> str:
    """A non-empty label without ':' (it is the separator inside batch ids)."""
    value = str(text).strip()
    if not value or ":" in value or len(value) > 200:
        raise argparse.ArgumentTypeError(f"must be 1-200 characters without ':', got {text!r}")
    return value


@dataclass(frozen=True)
class DbConfig:
    """How to reach the primary; an empty dsn means libpq's PG* environment variables."""

    dsn: str = ""
    connect_timeout: float = 5.0
    startup_timeout: float = 60.0
    max_backoff: float = 30.0


@dataclass(frozen=True)
class HttpConfig:
    """Where /metrics, /healthz and /readyz are served."""

    host: str = "0.0.0.0"
    port: int = 8000


@dataclass(frozen=True)
class MigrateConfig:
    """Settings of `tsflow migrate` (durations in seconds)."""

    db: DbConfig
    chunk_interval: float = 86400.0
    compress_after: float = 7 * 86400.0
    retention: float = 30 * 86400.0


@dataclass(frozen=True)
class SimulationConfig:
    """Shape of the simulated fleet."""

    devices: int = 10
    metrics_per_device: int = 3
    interval: float = 1.0
    shape: str = "mixed"
    noise: float = 0.5
    spike_probability: float = 0.001
    spike_magnitude: float = 8.0
    seed: int | None = None


@dataclass(frozen=True)
class GeneratorConfig:
    """Settings of `tsflow generate`."""

    db: DbConfig
    http: HttpConfig
    sim: SimulationConfig
    generator_id: str
    batch_rows: int = 20000
    batch_age: float = 1.0
    buffer_batches: int = 30
    max_rows: int = 0
    pace: bool = True
    backfill: float = 0.0
    shutdown_timeout: float = 25.0
    ledger_retention: float = 7 * 86400.0
    lease_ttl: float = 30.0


@dataclass(frozen=True)
class ConsumerConfig:
    """Settings of `tsflow consume`."""

    db: DbConfig
    http: HttpConfig
    read_dsn: str = ""
    interval: float = 30.0
    window: float = 3600.0
    threshold: float = 4.0
    min_samples: int = 10
    once: bool = False
