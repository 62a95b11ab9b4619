"""The tsflow generator's memory need, estimated from settings, so a pod that cannot fit is refused.

Figures measured by ``bench/generator_memory.py`` (CPython 3.11, tracemalloc and VmRSS): 105 B per
buffered row, 266 B per simulated series, 37 MiB for the interpreter with tsflow, psycopg and
prometheus_client imported. Rows in memory at worst: the full queue (``buffer_batches`` batches), the
batch being written, the pending batch, and one whole tick (``devices x metrics`` rows).
"""

from __future__ import annotations

from dataclasses import dataclass

BYTES_PER_ROW = 105
BYTES_PER_SERIES = 266
BASELINE_BYTES = 37 * 2**20
ALLOCATOR_OVERHEAD = 1.25
"""Headroom for the allocator's fragmentation and the COPY buffer on top of the traced sizes."""
DEFAULT_BUFFER_BATCHES = 30
"""tsflow's ``--buffer-batches`` default (the stack does not change it)."""


@dataclass(frozen=True, kw_only=True)
class GeneratorLoad:
    """The settings the generator's memory grows with."""

    devices: int
    metrics_per_device: int
    batch_rows: int
    buffer_batches: int = DEFAULT_BUFFER_BATCHES

    @property
    def series(self) -> int:
        """Simulated series: one sample of each per tick."""
        return self.devices * self.metrics_per_device

    def memory_bytes(self) -> int:
        """Estimated peak memory of ``tsflow generate`` with these settings."""
        rows = (self.buffer_batches + 2) * self.batch_rows + self.series
        data = BYTES_PER_ROW * rows + BYTES_PER_SERIES * self.series
        return int(BASELINE_BYTES + ALLOCATOR_OVERHEAD * data)

    def check_fits(self, memory_limit_bytes: int, *, path: str) -> None:
        """Raise ``ValueError`` naming ``path`` when the estimate exceeds ``memory_limit_bytes``."""
        need = self.memory_bytes()
        if need > memory_limit_bytes:
            raise ValueError(
                f"{path}: devices ({self.devices}) x metricsPerDevice ({self.metrics_per_device}) and batchRows "
                f"({self.batch_rows}) need about {need // 2**20}Mi of memory (up to {self.buffer_batches + 2} batches "
                f"and one tick buffered), more than the container limit ({memory_limit_bytes // 2**20}Mi); "
                "lower them or raise resources.memoryLimit"
            )
