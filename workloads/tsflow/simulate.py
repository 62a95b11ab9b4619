"""Simulated device fleet: deterministic (seeded) sine or random-walk series with noise and spikes."""

from __future__ import annotations

import math
import random
import struct
import zlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Iterator

from .config import SimulationConfig

Row = tuple[datetime, str, str, float]

# PostgreSQL binary COPY: stream header and trailer, and per row: field count, then (length, bytes) per field.
COPY_SIGNATURE = b"PGCOPY\n\xff\r\n\x00" + b"\x00" * 8  # signature, flags, header extension length
COPY_TRAILER = b"\xff\xff"
_PG_EPOCH_US = 946_684_800 * 1_000_000  # 2000-01-01T00:00:00Z, PostgreSQL's timestamp origin, in Unix microseconds
_UNIX_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_row_start = struct.Struct(">hiq").pack  # 4 fields; timestamptz: length 8, microseconds since _PG_EPOCH
_float8 = struct.Struct(">d").pack


def _text_fields(device_id: str, metric: str) -> bytes:
    """The constant middle of a series' binary row: device_id and metric, then the float8 length word."""
    dev, met = device_id.encode(), metric.encode()
    return struct.pack(">i", len(dev)) + dev + struct.pack(">i", len(met)) + met + struct.pack(">i", 8)

_NOISE_POOL = 4099  # prime, so pool offsets do not line up with the fleet size
_METRIC_NAMES = ("temperature", "humidity", "pressure", "voltage", "current", "rpm", "vibration", "load")


def metric_names(count: int) -> list[str]:
    """The first `count` metric names (`metric_<n>` beyond the built-in list)."""
    return [_METRIC_NAMES[i] if i < len(_METRIC_NAMES) else f"metric_{i}" for i in range(count)]


def device_names(generator_id: str, count: int) -> list[str]:
    """Device ids, prefixed by the generator id so two generators never share a device."""
    return [f"{generator_id}-d{i:04d}" for i in range(count)]


@dataclass
class _Series:
    device_id: str
    metric: str
    shape: str
    base: float
    amplitude: float
    period_s: float
    phase: float
    state: float
    copy_fields: bytes = field(default=b"", repr=False)

    def __post_init__(self) -> None:
        self.copy_fields = _text_fields(self.device_id, self.metric)


class Fleet:
    """Produces one sample per (device, metric) per tick; tick k is at `start + k * interval`."""

    def __init__(self, cfg: SimulationConfig, generator_id: str, start_epoch: float) -> None:
        seed = cfg.seed if cfg.seed is not None else zlib.crc32(generator_id.encode())
        self._rng = random.Random(seed)
        self._cfg = cfg
        self._start = start_epoch
        self._series: list[_Series] = []
        for device in device_names(generator_id, cfg.devices):
            for metric in metric_names(cfg.metrics_per_device):
                shape = cfg.shape if cfg.shape != "mixed" else self._rng.choice(("sine", "walk"))
                base = self._rng.uniform(10.0, 100.0)
                self._series.append(_Series(
                    device_id=device, metric=metric, shape=shape, base=base,
                    amplitude=self._rng.uniform(1.0, 10.0), period_s=self._rng.uniform(300.0, 3600.0),
                    phase=self._rng.uniform(0.0, 2 * math.pi), state=base,
                ))
        # Gaussian noise is drawn once into a pool and read with a random start per tick:
        # a per-sample rng.gauss() would cost more than the COPY of the sample.
        self._noise = [self._rng.gauss(0.0, cfg.noise) for _ in range(_NOISE_POOL)]
        self._until_spike = self._next_spike_gap()

    @property
    def rows_per_tick(self) -> int:
        """Samples produced by one tick."""
        return len(self._series)

    def tick_epoch(self, tick: int) -> float:
        """Unix time of tick `tick`."""
        return self._start + tick * self._cfg.interval

    def tick_micros(self, tick: int) -> int:
        """Unix time of tick `tick` in whole microseconds (PostgreSQL's resolution), rounded once: `tick` and
        `tick_copy` both derive their timestamps from it, so the two encodings of a row never differ."""
        return round(self.tick_epoch(tick) * 1_000_000)

    def tick(self, tick: int) -> list[Row]:
        """All samples of tick `tick` (call with increasing ticks: random walks carry state)."""
        ts = _UNIX_EPOCH + timedelta(microseconds=self.tick_micros(tick))
        return [(ts, s.device_id, s.metric, value) for s, value in self._values(tick)]

    def tick_copy(self, tick: int) -> list[bytes]:
        """The same samples as `tick`, each already a binary COPY row (for COPY_SIGNATURE ... COPY_TRAILER).

        Encoding here, in the producer thread, from per-series constant bytes, costs a fraction of the
        driver's per-field adaptation and leaves the writer thread nothing to do but send.
        """
        micros = self.tick_micros(tick) - _PG_EPOCH_US
        start = _row_start(4, 8, micros)
        float8 = _float8
        return [start + s.copy_fields + float8(value) for s, value in self._values(tick)]

    def _values(self, tick: int) -> Iterator[tuple[_Series, float]]:
        """Each series with its value at tick `tick`."""
        epoch = self.tick_epoch(tick)
        noise = self._noise
        n_noise = len(noise)
        k = self._rng.randrange(n_noise)
        two_pi = 2 * math.pi
        for s in self._series:
            k = k + 1 if k + 1 < n_noise else 0
            if s.shape == "sine":
                value = s.base + s.amplitude * math.sin(two_pi * epoch / s.period_s + s.phase) + noise[k]
            else:
                s.state += noise[k] + 0.01 * (s.base - s.state)
                value = s.state
            self._until_spike -= 1
            if self._until_spike < 0:
                value += self._cfg.spike_magnitude * s.amplitude * (1 if self._rng.random() < 0.5 else -1)
                self._until_spike = self._next_spike_gap()
            yield s, value

    def _next_spike_gap(self) -> int:
        """Samples until the next spike: geometric with p = spike_probability (huge when p = 0)."""
        p = self._cfg.spike_probability
        if p <= 0:
            return 2**62
        if p >= 1:
            return 0
        return int(math.log(1.0 - self._rng.random()) / math.log(1.0 - p))
