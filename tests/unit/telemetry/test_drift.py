"""agent.telemetry.drift: PSI against hand-computed values and known distributions, per feature and per channel."""

from __future__ import annotations

import math

import numpy as np
import pytest

from agent.telemetry.drift import (
    DRIFT_MODERATE,
    DRIFT_SIGNIFICANT,
    CalibrationError,
    DriftAccumulator,
    calibration_stats,
    level,
    psi,
)
from edgefleet.v1 import manifest_pb2


def test_psi_by_hand() -> None:
    assert psi([0.5, 0.5], [0.5, 0.5]) == 0.0
    expected = (0.2 - 0.5) * math.log(0.2 / 0.5) + (0.8 - 0.5) * math.log(0.8 / 0.5)
    assert psi([0.2, 0.8], [0.5, 0.5]) == pytest.approx(expected)
    assert psi([20, 80], [5, 5]) == pytest.approx(expected)  # counts are normalized
    # an empty bin is floored at 1e-4, not infinite
    floored = (1e-4 - 0.5) * math.log(1e-4 / 0.5) + (1 - 0.5) * math.log(1 / 0.5)
    assert psi([0, 1], [0.5, 0.5]) == pytest.approx(floored)
    with pytest.raises(ValueError):
        psi([1, 2, 3], [1, 2])


def test_levels() -> None:
    assert level(0.05) == "none" and level(DRIFT_MODERATE) == "moderate" and level(DRIFT_SIGNIFICANT) == "significant"


def test_calibration_stats_are_equal_frequency_bins() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(5000, 3))
    stats = calibration_stats(x, bins=10)
    assert len(stats.features) == 3
    for j, feature in enumerate(stats.features):
        assert len(feature.bin_edges) == 11 and len(feature.expected_fractions) == 10
        np.testing.assert_allclose(feature.expected_fractions, 0.1, atol=0.002)
        assert feature.bin_edges[0] == pytest.approx(x[:, j].min()) and feature.bin_edges[-1] == pytest.approx(x[:, j].max())
        assert feature.mean == pytest.approx(x[:, j].mean()) and feature.std == pytest.approx(x[:, j].std())


def _accumulate(stats: manifest_pb2.CalibrationStats, batches) -> DriftAccumulator:
    acc = DriftAccumulator(stats)
    for batch in batches:
        assert acc.observe(batch.astype(np.float32))
    return acc


def test_same_distribution_is_stable_and_a_shift_is_significant() -> None:
    rng = np.random.default_rng(1)
    stats = calibration_stats(rng.normal(size=(20_000, 4)))
    same = _accumulate(stats, [rng.normal(size=(1, 4)) for _ in range(3000)]).figures()
    assert same.method == "psi" and same.samples == 3000 and len(same.per_feature) == 4
    assert same.max_score < DRIFT_MODERATE

    shifted = rng.normal(size=(3000, 4))
    shifted[:, 2] += 1.0  # one feature moves by one standard deviation
    drift = _accumulate(stats, [shifted[i:i + 10] for i in range(0, 3000, 10)]).figures()
    assert drift.max_score == max(drift.per_feature) == drift.per_feature[2]
    assert drift.per_feature[2] > DRIFT_SIGNIFICANT
    assert all(drift.per_feature[j] < DRIFT_MODERATE for j in (0, 1, 3))


def test_accumulator_matches_an_independent_histogram() -> None:
    rng = np.random.default_rng(2)
    stats = calibration_stats(rng.uniform(0, 1, size=(4000, 2)), bins=5)
    live = rng.beta(2, 5, size=(500, 2))
    figures = _accumulate(stats, [live[i:i + 50] for i in range(0, 500, 50)]).figures()
    assert figures.samples == 500
    for j, feature in enumerate(stats.features):
        edges = np.array(feature.bin_edges)
        # np.histogram on [edges[0], edges[-1]] with values clipped into range: the device's binning rule
        counts, _ = np.histogram(np.clip(live[:, j], edges[0], edges[-1]), bins=edges)
        assert figures.per_feature[j] == pytest.approx(psi(counts, feature.expected_fractions), rel=1e-6)


def test_window_resets() -> None:
    rng = np.random.default_rng(3)
    stats = calibration_stats(rng.normal(size=(2000, 2)))
    acc = _accumulate(stats, [rng.normal(size=(50, 2)) + 3])
    assert acc.figures(reset=True).max_score > DRIFT_SIGNIFICANT
    empty = acc.figures()
    assert empty.samples == 0 and list(empty.per_feature) == [] and empty.max_score == 0


def test_images_drift_per_channel() -> None:
    rng = np.random.default_rng(4)
    calibration = rng.uniform(0, 1, size=(200, 16, 16, 3))
    stats = calibration_stats(calibration)  # 768 elements per sample: one feature per channel
    assert len(stats.features) == 3
    acc = DriftAccumulator(stats)
    for _ in range(10):
        image = rng.uniform(0, 1, size=(1, 16, 16, 3))
        image[..., 0] *= 0.3  # the red channel goes dark
        assert acc.observe(image.astype(np.float32))
    figures = acc.figures()
    assert figures.samples == 10 * 64  # 256 pixels each, every fourth counted (at most 64 rows per request)
    assert figures.per_feature[0] > DRIFT_SIGNIFICANT and max(figures.per_feature[1:]) < DRIFT_SIGNIFICANT


def test_large_requests_are_subsampled() -> None:
    rng = np.random.default_rng(5)
    stats = calibration_stats(rng.uniform(size=(100, 32, 32, 3)))
    acc = DriftAccumulator(stats, max_rows=256)
    acc.observe(rng.uniform(size=(1, 32, 32, 3)).astype(np.float32))  # 1024 pixels
    assert acc.samples == 256


def test_inputs_that_do_not_fit_are_left_out() -> None:
    stats = calibration_stats(np.random.default_rng(6).normal(size=(100, 4)))
    acc = DriftAccumulator(stats)
    assert not acc.observe(np.zeros((1, 5), np.float32))          # other shape
    assert not acc.observe(np.zeros((1, 4), np.int8))             # raw quantized values
    assert acc.observe(np.array([[np.nan, 0, 0, 0], [0, 0, 0, 0]], np.float32))
    assert acc.samples == 1  # the row with a NaN is not a full sample


@pytest.mark.parametrize(
    "feature, message",
    [
        (manifest_pb2.FeatureStats(bin_edges=[0, 1, 2], expected_fractions=[1.0]), "need 2 fractions"),
        (manifest_pb2.FeatureStats(bin_edges=[0, 2, 1], expected_fractions=[0.5, 0.5]), "non-decreasing"),
        (manifest_pb2.FeatureStats(bin_edges=[0, 1, 2], expected_fractions=[0.0, 0.0]), "not all 0"),
    ],
)
def test_unusable_calibration_is_refused(feature, message) -> None:
    with pytest.raises(CalibrationError, match=message):
        DriftAccumulator(manifest_pb2.CalibrationStats(features=[feature]))
    with pytest.raises(CalibrationError, match="no features"):
        DriftAccumulator(manifest_pb2.CalibrationStats())


def test_constant_feature_detects_any_change() -> None:
    x = np.column_stack([np.full(100, 2.0), np.linspace(0, 1, 100)])
    stats = calibration_stats(x)
    acc = DriftAccumulator(stats)
    acc.observe(np.array([[2.0, 0.5]] * 20, np.float32))
    assert acc.figures(reset=True).per_feature[0] == pytest.approx(0.0, abs=1e-9)
    acc.observe(np.array([[2.5, 0.5]] * 20, np.float32))
    assert acc.figures().per_feature[0] > DRIFT_SIGNIFICANT
