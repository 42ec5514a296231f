"""Latency histogram with fixed log-spaced buckets: cheap to observe, mergeable across intervals and
devices, and small on the wire. Percentiles come from the buckets alone, so the agent and the
coordinator (which merges histograms from many devices) compute the same figure from the same counts.

Default buckets: 20 per decade from 0.01 ms to 10 s (121 upper bounds, each 12.2 % above the last),
plus an overflow bucket. A percentile is therefore exact to within one bucket: about 12 %.
"""

from __future__ import annotations

import bisect
import math
import threading
from typing import Sequence

from edgefleet.histogram import percentile
from edgefleet.v1 import telemetry_pb2

PER_DECADE = 20
MIN_MS = 0.01
DECADES = 6  # 0.01 ms ... 10,000 ms


def log_bounds(min_ms: float = MIN_MS, decades: int = DECADES, per_decade: int = PER_DECADE) -> tuple[float, ...]:
    """Upper bucket bounds min_ms * 10**(i / per_decade), rounded so they print and compare cleanly."""
    return tuple(float(f"{min_ms * 10 ** (i / per_decade):.6g}") for i in range(decades * per_decade + 1))


DEFAULT_BOUNDS = log_bounds()


class LatencyHistogram:
    """Counts of latencies per bucket; bucket i holds bounds[i-1] < ms <= bounds[i] (the last: > bounds[-1]).

    Thread-safe: observe / merge / percentile / to_proto / reset may be called from any thread.
    """

    def __init__(self, bounds: Sequence[float] = DEFAULT_BOUNDS) -> None:
        bounds = tuple(float(b) for b in bounds)
        if not bounds or any(b <= 0 or not math.isfinite(b) for b in bounds) or any(
            lo >= hi for lo, hi in zip(bounds, bounds[1:])
        ):
            raise ValueError("histogram bounds must be finite, positive and strictly increasing")
        self._bounds = bounds
        self._counts = [0] * (len(bounds) + 1)
        self._sum_ms = 0.0
        self._lock = threading.Lock()

    @property
    def bounds(self) -> tuple[float, ...]:
        return self._bounds

    @property
    def counts(self) -> tuple[int, ...]:
        with self._lock:
            return tuple(self._counts)

    @property
    def count(self) -> int:
        with self._lock:
            return sum(self._counts)

    @property
    def sum_ms(self) -> float:
        with self._lock:
            return self._sum_ms

    def mean_ms(self) -> float:
        with self._lock:
            n = sum(self._counts)
            return self._sum_ms / n if n else 0.0

    def observe(self, ms: float) -> None:
        if not ms >= 0 or math.isinf(ms):  # also rejects NaN
            raise ValueError(f"latency must be a finite number of milliseconds >= 0, got {ms!r}")
        i = bisect.bisect_left(self._bounds, ms)
        with self._lock:
            self._counts[i] += 1
            self._sum_ms += ms

    def merge(self, other: LatencyHistogram) -> LatencyHistogram:
        """Add `other`'s counts into this histogram (in place); returns self."""
        if other._bounds != self._bounds:
            raise ValueError("cannot merge histograms with different bucket bounds")
        if other is self:
            with self._lock:
                self._counts = [2 * c for c in self._counts]
                self._sum_ms *= 2
            return self
        counts, sum_ms = other._state()
        with self._lock:
            self._counts = [a + b for a, b in zip(self._counts, counts)]
            self._sum_ms += sum_ms
        return self

    def _state(self) -> tuple[list[int], float]:
        with self._lock:
            return list(self._counts), self._sum_ms

    def percentile(self, q: float) -> float:
        """The q-th percentile (0..100) in ms by the protocol's rule (edgefleet.histogram); 0.0 when empty."""
        if not 0 <= q <= 100:
            raise ValueError(f"percentile must be within 0..100, got {q}")
        counts, _ = self._state()
        return percentile(self._bounds, counts, q)

    def reset(self) -> None:
        with self._lock:
            self._counts = [0] * (len(self._bounds) + 1)
            self._sum_ms = 0.0

    def snapshot(self, reset: bool = False) -> LatencyHistogram:
        """A copy of the current counts, optionally resetting this one in the same step (per-interval telemetry)."""
        copy = LatencyHistogram(self._bounds)
        with self._lock:
            copy._counts, copy._sum_ms = list(self._counts), self._sum_ms
            if reset:
                self._counts = [0] * (len(self._bounds) + 1)
                self._sum_ms = 0.0
        return copy

    def to_proto(self) -> telemetry_pb2.LatencyHistogram:
        counts, sum_ms = self._state()
        return telemetry_pb2.LatencyHistogram(bounds_ms=self._bounds, counts=counts, sum_ms=sum_ms)

    @classmethod
    def from_proto(cls, message: telemetry_pb2.LatencyHistogram) -> LatencyHistogram:
        """Rebuild from the wire; raises ValueError when the message is inconsistent (garbage from a device)."""
        histogram = cls(tuple(message.bounds_ms))
        if len(message.counts) != len(message.bounds_ms) + 1:
            raise ValueError(f"histogram has {len(message.bounds_ms)} bounds but {len(message.counts)} counts "
                             f"(expected {len(message.bounds_ms) + 1})")
        if not math.isfinite(message.sum_ms) or message.sum_ms < 0:
            raise ValueError(f"histogram sum must be finite and >= 0, got {message.sum_ms}")
        histogram._counts = list(message.counts)
        histogram._sum_ms = message.sum_ms
        return histogram

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, LatencyHistogram):
            return NotImplemented
        return self._bounds == other._bounds and self._state()[0] == other._state()[0]

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return f"LatencyHistogram(count={self.count}, p50={self.percentile(50):.3g} ms, p95={self.percentile(95):.3g} ms)"
