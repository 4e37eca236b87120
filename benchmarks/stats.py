"""Latency statistics: percentiles and throughput from a list of per-call times.

Pure numpy, shared by every section that times something, so p50/p90/p99 mean the same thing in
every table (linear interpolation between order statistics, numpy's default).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

PERCENTILES = (50, 90, 99)


def percentile(values_ms: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) of `values_ms`; NaN for no values."""
    arr = np.asarray(values_ms, dtype=np.float64)
    if arr.size == 0:
        return float("nan")
    return float(np.percentile(arr, q))


def summarize(times_ms: Sequence[float], items_per_call: int = 1) -> dict[str, float]:
    """p50/p90/p99/mean/min/max in ms per call, and items per second at the median.

    Throughput comes from the median, not the mean, so one stall does not move it.
    """
    arr = np.asarray(times_ms, dtype=np.float64)
    if arr.size == 0:
        raise ValueError("no timings to summarize")
    out = {f"p{q}_ms": percentile(arr, q) for q in PERCENTILES}
    out.update(mean_ms=float(arr.mean()), min_ms=float(arr.min()), max_ms=float(arr.max()),
               runs=int(arr.size))
    out["items_per_s"] = 1000.0 * items_per_call / out["p50_ms"] if out["p50_ms"] > 0 else 0.0
    return out


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    """numerator / denominator, or None when either is missing or the denominator is zero."""
    if numerator is None or denominator is None or denominator == 0:
        return None
    return float(numerator) / float(denominator)
