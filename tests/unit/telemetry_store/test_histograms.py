"""The coordinator reads percentiles exactly as the agent does, and merging histograms merges the data."""
from __future__ import annotations

import random

import pytest

from coordinator.telemetry import histograms

from .factories import histogram


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_percentiles_match_the_agent(seed):
    rng = random.Random(seed)
    h = histogram([rng.lognormvariate(0, 1.5) for _ in range(rng.randint(1, 500))])
    for q in (0, 1, 50, 90, 95, 99, 99.9, 100):
        assert histograms.percentile(h.bounds, h.counts, q) == pytest.approx(h.percentile(q), rel=1e-12)


def test_merged_counts_give_the_percentile_of_all_observations():
    rng = random.Random(7)
    a = [rng.uniform(0.5, 3) for _ in range(300)]
    b = [rng.uniform(20, 40) for _ in range(100)]
    ha, hb, both = histogram(a), histogram(b), histogram(a + b)
    merged = [0] * len(ha.counts)
    histograms.add_counts(merged, ha.counts)
    histograms.add_counts(merged, hb.counts)
    for q in (50, 95, 99):
        assert histograms.percentile(ha.bounds, merged, q) == pytest.approx(both.percentile(q))
    # and not the mean of the two devices' percentiles
    assert histograms.percentile(ha.bounds, merged, 95) != pytest.approx((ha.percentile(95) + hb.percentile(95)) / 2)


def test_empty_and_overflow():
    h = histogram([])
    assert histograms.percentile(h.bounds, h.counts, 95) == 0.0
    over = histogram([50_000.0])
    assert histograms.percentile(over.bounds, over.counts, 50) == over.bounds[-1]


def test_layout_digest_names_the_bounds():
    h = histogram([1.0])
    assert histograms.layout_digest(h.bounds) == histograms.layout_digest(list(h.bounds))
    assert histograms.layout_digest(h.bounds) != histograms.layout_digest(h.bounds[:-1])
    assert len(histograms.layout_digest(h.bounds)) == 16
