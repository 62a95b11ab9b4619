"""Measure the generator's memory per buffered row and per simulated series, and its baseline RSS.

The stack refuses generator settings whose estimate exceeds the container's memory limit
(``components/workload/memory.py``); the constants there come from this script:

    .venv/bin/python bench/generator_memory.py
"""

from __future__ import annotations

import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "workloads"))

from tsflow.config import SimulationConfig  # noqa: E402
from tsflow.simulate import Fleet  # noqa: E402


def per_series_bytes(series: int = 200_000) -> float:
    """Traced allocation of a Fleet's state divided by its series count (noise pool excluded)."""
    tracemalloc.start()
    small = Fleet(SimulationConfig(devices=1, metrics_per_device=1, seed=1), "bench", time.time())
    base = tracemalloc.get_traced_memory()[0]
    del small
    tracemalloc.stop()
    tracemalloc.start()
    fleet = Fleet(SimulationConfig(devices=series // 10, metrics_per_device=10, seed=1), "bench", time.time())
    used = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    assert fleet.rows_per_tick == series
    return (used - base) / series


def per_row_bytes(rows_wanted: int = 500_000) -> float:
    """Traced allocation of buffered rows (one tick's timestamp shared, as in a tick) divided by rows."""
    fleet = Fleet(SimulationConfig(devices=1000, metrics_per_device=10, seed=1), "bench", time.time())
    tracemalloc.start()
    rows = []
    tick = 0
    while len(rows) < rows_wanted:
        rows.extend(fleet.tick(tick))
        tick += 1
    used = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    return used / len(rows)


def baseline_rss_bytes() -> int:
    """RSS (VmRSS; ru_maxrss would include the parent's at fork) of a process that imported `tsflow generate`."""
    code = (
        "import tsflow.cli, tsflow.generator, psycopg, prometheus_client;"
        "print(next(l.split()[1] for l in open('/proc/self/status') if l.startswith('VmRSS:')))"
    )
    env_path = str(Path(__file__).resolve().parents[1] / "workloads")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"PYTHONPATH": env_path})
    return int(out.stdout.strip()) * 1024


if __name__ == "__main__":
    print(f"per buffered row: {per_row_bytes():.0f} B")
    print(f"per series:       {per_series_bytes():.0f} B")
    print(f"baseline RSS:     {baseline_rss_bytes() / 2**20:.1f} MiB")
