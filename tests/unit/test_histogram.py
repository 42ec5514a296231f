"""agent.telemetry.histogram: percentiles within a bucket of the exact figure, merge, wire round trip."""

from __future__ import annotations

import bisect
import math
import threading

import numpy as np
import pytest

from agent.telemetry.histogram import DEFAULT_BOUNDS, LatencyHistogram, log_bounds
from edgefleet.v1 import telemetry_pb2


def _bucket_width(value: float, bounds: tuple[float, ...]) -> float:
    i = bisect.bisect_left(bounds, value)
    lower = bounds[i - 1] if i else 0.0
    upper = bounds[min(i, len(bounds) - 1)]
    return upper - lower


def _filled(values: np.ndarray) -> LatencyHistogram:
    histogram = LatencyHistogram()
    for v in values:
        histogram.observe(float(v))
    return histogram


def test_default_bounds_are_log_spaced() -> None:
    assert DEFAULT_BOUNDS[0] == 0.01 and DEFAULT_BOUNDS[-1] == 10_000.0
    ratios = np.array(DEFAULT_BOUNDS[1:]) / np.array(DEFAULT_BOUNDS[:-1])
    assert np.allclose(ratios, 10 ** (1 / 20), rtol=1e-4)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("distribution", ["lognormal", "uniform", "bimodal"])
def test_percentiles_within_one_bucket_of_numpy(seed: int, distribution: str) -> None:
    rng = np.random.default_rng(seed)
    if distribution == "lognormal":
        values = rng.lognormal(mean=0.0, sigma=1.5, size=5000)
    elif distribution == "uniform":
        values = rng.uniform(0.02, 40.0, size=5000)
    else:  # a fast path and a slow path, as with a cache in front of a model
        values = np.concatenate([rng.normal(0.8, 0.05, 4500), rng.normal(25.0, 3.0, 500)]).clip(0.01)
    histogram = _filled(values)
    assert histogram.count == len(values)
    assert histogram.sum_ms == pytest.approx(values.sum())
    for q in (1, 10, 50, 90, 95, 99, 99.9):
        # Between two samples the "exact" percentile depends on the interpolation rule; the estimate must
        # sit within one bucket of the samples that bracket the rank (equal wherever data is dense).
        low = float(np.percentile(values, q, method="lower"))
        high = float(np.percentile(values, q, method="higher"))
        estimate = histogram.percentile(q)
        assert low - _bucket_width(low, DEFAULT_BOUNDS) <= estimate <= high + _bucket_width(high, DEFAULT_BOUNDS), (
            q, estimate, low, high)
        if bisect.bisect_left(DEFAULT_BOUNDS, low) == bisect.bisect_left(DEFAULT_BOUNDS, high):
            # the bracketing samples share a bucket (dense data): numpy's default is within it too
            exact = float(np.percentile(values, q))
            assert abs(estimate - exact) <= _bucket_width(exact, DEFAULT_BOUNDS), (q, estimate, exact)


def test_merge_equals_observing_everything() -> None:
    rng = np.random.default_rng(9)
    a, b = rng.lognormal(0, 1, 700), rng.lognormal(1, 0.5, 300)
    merged = _filled(a).merge(_filled(b))
    everything = _filled(np.concatenate([a, b]))
    assert merged == everything
    assert merged.counts == everything.counts
    assert merged.sum_ms == pytest.approx(everything.sum_ms)
    for q in (50, 95, 99):
        assert merged.percentile(q) == everything.percentile(q)


def test_merge_refuses_other_bounds() -> None:
    with pytest.raises(ValueError, match="different bucket bounds"):
        LatencyHistogram().merge(LatencyHistogram(log_bounds(per_decade=10)))


def test_bucket_edges_and_overflow() -> None:
    h = LatencyHistogram([1.0, 2.0, 4.0])
    for v in (0.0, 1.0, 1.5, 2.0, 4.0, 4.0001, 100.0):
        h.observe(v)
    # upper bounds are inclusive: <=1 | (1,2] | (2,4] | >4
    assert h.counts == (2, 2, 1, 2)
    assert h.percentile(100) == 4.0  # the overflow bucket reads as its lower edge
    assert h.percentile(0) == 0.0


def test_interpolates_inside_a_bucket() -> None:
    h = LatencyHistogram([1.0, 2.0])
    for _ in range(4):
        h.observe(1.5)
    # four samples spread over (1, 2]: the median sits halfway
    assert h.percentile(50) == pytest.approx(1.5)
    assert h.percentile(25) == pytest.approx(1.25)


def test_empty_and_invalid() -> None:
    h = LatencyHistogram()
    assert h.percentile(95) == 0.0 and h.count == 0 and h.mean_ms() == 0.0
    for bad in (-0.001, math.nan, math.inf):
        with pytest.raises(ValueError, match="latency"):
            h.observe(bad)
    with pytest.raises(ValueError, match="0..100"):
        h.percentile(101)
    with pytest.raises(ValueError, match="strictly increasing"):
        LatencyHistogram([2.0, 1.0])


def test_proto_round_trip() -> None:
    h = _filled(np.random.default_rng(3).lognormal(0, 1, 200))
    message = h.to_proto()
    assert isinstance(message, telemetry_pb2.LatencyHistogram)
    assert len(message.counts) == len(message.bounds_ms) + 1
    wire = telemetry_pb2.LatencyHistogram.FromString(message.SerializeToString())
    back = LatencyHistogram.from_proto(wire)
    assert back == h and back.sum_ms == pytest.approx(h.sum_ms)
    assert back.percentile(95) == h.percentile(95)


def test_from_proto_rejects_inconsistent_messages() -> None:
    with pytest.raises(ValueError, match="2 bounds but 2 counts"):
        LatencyHistogram.from_proto(telemetry_pb2.LatencyHistogram(bounds_ms=[1, 2], counts=[1, 1]))
    with pytest.raises(ValueError, match="sum"):
        LatencyHistogram.from_proto(telemetry_pb2.LatencyHistogram(bounds_ms=[1], counts=[1, 1], sum_ms=-3))
    with pytest.raises(ValueError):
        LatencyHistogram.from_proto(telemetry_pb2.LatencyHistogram())


def test_reset_and_snapshot() -> None:
    h = _filled(np.full(10, 3.0))
    copy = h.snapshot(reset=True)
    assert copy.count == 10 and h.count == 0 and h.sum_ms == 0.0
    h.observe(5.0)
    assert copy.count == 10  # the snapshot is independent
    h.reset()
    assert h.count == 0 and h.counts == (0,) * (len(DEFAULT_BOUNDS) + 1)


def test_concurrent_observe_and_snapshot_lose_nothing() -> None:
    h = LatencyHistogram()
    per_thread, threads = 5000, 4
    start = threading.Barrier(threads + 1)
    collected: list[LatencyHistogram] = []

    def produce(seed: int) -> None:
        values = np.random.default_rng(seed).lognormal(0, 1, per_thread)
        start.wait(timeout=10)
        for v in values:
            h.observe(float(v))

    workers = [threading.Thread(target=produce, args=(i,)) for i in range(threads)]
    for w in workers:
        w.start()
    start.wait(timeout=10)
    while any(w.is_alive() for w in workers):
        collected.append(h.snapshot(reset=True))  # the telemetry loop draining intervals
    for w in workers:
        w.join(timeout=30)
    collected.append(h.snapshot(reset=True))
    assert sum(c.count for c in collected) == per_thread * threads
