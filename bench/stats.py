"""Percentiles and per-operation summaries."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) with linear interpolation between closest ranks."""
    if not values:
        return math.nan
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low = math.floor(position)
    high = math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def summarize(seconds: Sequence[float], wall_seconds: float | None = None) -> dict:
    """Latency percentiles in milliseconds and throughput.

    Throughput is operations per second of `wall_seconds` (a concurrent stage) or, for one
    client, operations per second of time spent in the operation.
    """
    busy = wall_seconds if wall_seconds is not None else sum(seconds)
    return {
        "n": len(seconds),
        "p50_ms": percentile(seconds, 50) * 1000,
        "p95_ms": percentile(seconds, 95) * 1000,
        "p99_ms": percentile(seconds, 99) * 1000,
        "mean_ms": statistics.fmean(seconds) * 1000 if seconds else math.nan,
        "max_ms": max(seconds) * 1000 if seconds else math.nan,
        "throughput_per_s": len(seconds) / busy if busy else math.nan,
    }


def ratio(numerator: float, denominator: float) -> float | None:
    """numerator/denominator, or None when it has no meaning (no floor, nothing measured)."""
    if not denominator or math.isnan(denominator) or math.isnan(numerator):
        return None
    return numerator / denominator


def most_common(values: Sequence[int]) -> int | None:
    """The usual count (robust to a one-off login or token lookup inside a measured window)."""
    return statistics.mode(values) if values else None
