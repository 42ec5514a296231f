"""Percentiles of a latency histogram (telemetry_pb2.LatencyHistogram's bounds and counts).

Part of the protocol: the agent reports p50/p95/p99 with this rule and the coordinator reads merged
histograms with it, so one device's histogram gives back exactly the figures that device reported.
"""
from __future__ import annotations

from typing import Sequence


def percentile(bounds: Sequence[float], counts: Sequence[int], q: float) -> float:
    """The q-th percentile (0..100) in ms; 0.0 when the histogram is empty.

    `counts` has one bucket more than `bounds` (the overflow). Linear interpolation inside the bucket;
    the first bucket interpolates from 0; the overflow bucket has no upper edge, so a percentile
    falling there reads as the last bound (a lower limit of the truth).
    """
    total = sum(counts)
    if total == 0:
        return 0.0
    rank = q / 100 * total
    cumulative = 0
    for i, c in enumerate(counts):
        if c and cumulative + c >= rank:
            if i >= len(bounds):
                return float(bounds[-1]) if bounds else 0.0
            lower = bounds[i - 1] if i else 0.0
            upper = bounds[i]
            return lower + (upper - lower) * max(rank - cumulative, 0.0) / c
        cumulative += c
    return float(bounds[-1]) if bounds else 0.0
