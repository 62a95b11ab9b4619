"""Pure anomaly detection: z-score of each series' latest minute against its trailing window."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Iterable

# (bucket, device_id, metric, avg_value)
Bucket = tuple[datetime, str, str, float]


@dataclass(frozen=True)
class SeriesStats:
    """Trailing-window statistics of one (device, metric) series."""

    device_id: str
    metric: str
    latest_bucket: datetime
    latest_value: float
    mean: float
    stddev: float
    baseline_buckets: int

    @property
    def zscore(self) -> float | None:
        """(latest - mean) / stddev, None when the baseline is flat."""
        if self.stddev <= 0 or math.isnan(self.stddev):
            return None
        return (self.latest_value - self.mean) / self.stddev


@dataclass(frozen=True)
class Anomaly:
    """A flagged latest minute."""

    time: datetime
    device_id: str
    metric: str
    value: float
    zscore: float
    mean: float
    stddev: float


def window_stats(buckets: Iterable[Bucket], window: timedelta) -> list[SeriesStats]:
    """Per series: latest bucket vs the buckets in [latest - window, latest)."""
    series: dict[tuple[str, str], list[tuple[datetime, float]]] = {}
    for bucket, device_id, metric, avg_value in buckets:
        if avg_value is None:
            continue
        series.setdefault((device_id, metric), []).append((bucket, float(avg_value)))
    out: list[SeriesStats] = []
    for (device_id, metric), points in sorted(series.items()):
        points.sort()
        latest_bucket, latest_value = points[-1]
        baseline = [v for b, v in points[:-1] if b >= latest_bucket - window]
        n = len(baseline)
        mean = sum(baseline) / n if n else math.nan
        stddev = math.sqrt(sum((v - mean) ** 2 for v in baseline) / (n - 1)) if n > 1 else math.nan
        out.append(SeriesStats(device_id, metric, latest_bucket, latest_value, mean, stddev, n))
    return out


def find_anomalies(stats: Iterable[SeriesStats], threshold: float, min_samples: int) -> list[Anomaly]:
    """Series whose |z| >= threshold, given at least `min_samples` baseline buckets."""
    found: list[Anomaly] = []
    for s in stats:
        z = s.zscore
        if s.baseline_buckets < min_samples or z is None or abs(z) < threshold:
            continue
        found.append(Anomaly(s.latest_bucket, s.device_id, s.metric, s.latest_value, z, s.mean, s.stddev))
    return found
