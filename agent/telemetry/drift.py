"""Input drift: how far the inputs a model sees on the device have moved from its calibration data.

Method: Population Stability Index (PSI) per feature, over each telemetry window,

    PSI = sum over bins b of (a_b - e_b) * ln(a_b / e_b)

where e_b is the fraction of the calibration data in bin b (shipped in the manifest's CalibrationStats:
bin edges and expected fractions per feature) and a_b the fraction of this window's inputs in the same
bin. Both fractions are floored at 1e-4 so an empty bin gives a large but finite score. Telemetry
carries the PSI of every feature, the maximum, and the sample count (PSI over a few dozen samples is
noisy and biased upward: read it together with `samples`).

Thresholds (the usual reading of PSI): below 0.1 no significant shift; 0.1 to 0.25 a moderate shift
worth watching; 0.25 or more a significant shift (`DRIFT_MODERATE`, `DRIFT_SIGNIFICANT`, `level()`).

Bins: FeatureStats.bin_edges holds B+1 edges for B bins; a value v falls in bin i when
edges[i] <= v < edges[i+1] (the first bin also takes everything below, the last everything above).
`calibration_stats()` builds them from calibration data with equal-frequency (quantile) edges, 10 bins
by default, and counts the expected fractions with the same rule the device uses.

Features: taken from the model's first input, as floats the app sent (before quantization):
- when a sample has exactly as many elements as there are features (tabular data, small images such
  as 8×8 digits), element j of each sample is feature j;
- else when the last dimension equals the number of features, every element of channel c is a sample
  of feature c (images: one feature per colour channel);
- else drift is not computed for that model (logged once).
`calibration_stats(..., per="auto")` picks the first layout for samples of up to 256 elements and the
second above. To keep the request path cheap at most 64 rows per request are counted (an even stride
through the rows of a batch or the pixels of an image). Non-finite values and integer inputs (already quantized by the
app) are left out.

Privacy: only bin counts stay on the device and only PSI scores leave it.
"""

from __future__ import annotations

import logging
import math
import threading
from typing import Literal

import numpy as np

from edgefleet.v1 import manifest_pb2, telemetry_pb2

log = logging.getLogger(__name__)

METHOD = "psi"
EPSILON = 1e-4
DRIFT_MODERATE = 0.1
DRIFT_SIGNIFICANT = 0.25
DEFAULT_BINS = 10
MAX_ELEMENT_FEATURES = 256   # auto layout: per element up to this many elements per sample, else per channel
MAX_ROWS_PER_REQUEST = 64

Layout = Literal["element", "channel"]


def level(score: float) -> str:
    """none | moderate | significant, by the thresholds above."""
    if score >= DRIFT_SIGNIFICANT:
        return "significant"
    if score >= DRIFT_MODERATE:
        return "moderate"
    return "none"


def psi(actual: np.ndarray, expected: np.ndarray) -> float:
    """PSI of two distributions over the same bins (fractions or counts; both are normalized)."""
    a = np.asarray(actual, dtype=np.float64)
    e = np.asarray(expected, dtype=np.float64)
    if a.shape != e.shape or a.ndim != 1 or a.size == 0:
        raise ValueError(f"psi needs two 1-D distributions of the same length, got {a.shape} and {e.shape}")
    a = np.maximum(a / a.sum() if a.sum() > 0 else a, EPSILON)
    e = np.maximum(e / e.sum() if e.sum() > 0 else e, EPSILON)
    return float(np.sum((a - e) * np.log(a / e)))


def feature_matrix(array: np.ndarray, n_features: int) -> tuple[np.ndarray, Layout] | None:
    """(rows × n_features values, layout) from a batch [N, ...] of the first input; None when they do not fit."""
    array = np.asarray(array)
    if array.ndim == 0 or n_features < 1:
        return None
    rows = array.shape[0] if array.ndim >= 2 else 1
    per_row = array.size // rows if rows else 0
    if per_row == n_features:
        return array.reshape(rows, n_features), "element"
    if array.ndim >= 2 and array.shape[-1] == n_features:
        return array.reshape(-1, n_features), "channel"
    return None


def bin_indices(values: np.ndarray, inner: np.ndarray) -> np.ndarray:
    """Bin of each value: values (rows × F), inner edges (F × K, padded with +inf) -> rows × F indices."""
    return (values[:, :, None] >= inner[None, :, :]).sum(axis=2)


def calibration_stats(x: np.ndarray, bins: int = DEFAULT_BINS, per: Literal["auto", "element", "channel"] = "auto") -> manifest_pb2.CalibrationStats:
    """CalibrationStats for samples x [N, ...] of a model's first input (the coordinator ships these)."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim < 2 or x.shape[0] < 1:
        raise ValueError(f"calibration data must be a batch [N, ...] with N >= 1, got shape {x.shape}")
    if bins < 2:
        raise ValueError(f"bins must be at least 2, got {bins}")
    per_row = int(np.prod(x.shape[1:]))
    if per == "auto":
        per = "element" if per_row <= MAX_ELEMENT_FEATURES else "channel"
    if per == "element":
        values = x.reshape(x.shape[0], per_row)
    elif per == "channel":
        values = x.reshape(-1, x.shape[-1])
    else:
        raise ValueError(f"per must be auto, element or channel, got {per!r}")
    stats = manifest_pb2.CalibrationStats()
    for column in values.T:
        column = column[np.isfinite(column)]
        feature = stats.features.add()
        if column.size == 0:
            feature.bin_edges.extend([0.0, 0.0, 0.0])
            feature.expected_fractions.extend([0.5, 0.5])
            continue
        lo, hi = float(column.min()), float(column.max())
        inner = np.unique(np.quantile(column, np.linspace(0, 1, bins + 1)[1:-1]))
        inner = inner[(inner > lo) & (inner <= hi)]
        if inner.size == 0:  # a constant feature: below, equal, above
            inner = np.array([lo, np.nextafter(lo, np.inf)])
        counts = np.bincount(np.searchsorted(inner, column, side="right"), minlength=inner.size + 1)
        feature.bin_edges.extend([lo, *inner.tolist(), max(hi, float(inner[-1]))])
        feature.expected_fractions.extend((counts / counts.sum()).tolist())
        feature.mean = float(column.mean())
        feature.std = float(column.std())
    return stats


class CalibrationError(ValueError):
    """CalibrationStats that cannot be used (the message says which feature and why)."""


def _checked(calibration: manifest_pb2.CalibrationStats) -> tuple[np.ndarray, list[np.ndarray]]:
    """(inner edges F × K padded with +inf, expected fractions per feature)."""
    if not calibration.features:
        raise CalibrationError("no features")
    inners, expected = [], []
    for i, feature in enumerate(calibration.features):
        edges = np.asarray(feature.bin_edges, dtype=np.float64)
        fractions = np.asarray(feature.expected_fractions, dtype=np.float64)
        if edges.size < 2 or fractions.size != edges.size - 1:
            raise CalibrationError(f"feature {i}: {edges.size} bin edges need {max(edges.size - 1, 1)} fractions, got {fractions.size}")
        if not np.isfinite(edges).all() or np.any(np.diff(edges) < 0):
            raise CalibrationError(f"feature {i}: bin edges must be finite and non-decreasing")
        if not np.isfinite(fractions).all() or (fractions < 0).any() or fractions.sum() <= 0:
            raise CalibrationError(f"feature {i}: expected fractions must be finite, >= 0 and not all 0")
        inners.append(edges[1:-1])
        expected.append(fractions / fractions.sum())
    width = max(1, max(inner.size for inner in inners))
    matrix = np.full((len(inners), width), np.inf)
    for i, inner in enumerate(inners):
        matrix[i, : inner.size] = inner
    return matrix, expected


class DriftAccumulator:
    """Bin counts of one model's inputs over a window; `figures()` turns them into PSI scores."""

    def __init__(self, calibration: manifest_pb2.CalibrationStats, max_rows: int = MAX_ROWS_PER_REQUEST) -> None:
        self._inner, self._expected = _checked(calibration)
        self.n_features = len(self._expected)
        sizes = np.array([e.size for e in self._expected])
        self._offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        self._total_bins = int(sizes.sum())
        self._counts = np.zeros(self._total_bins, dtype=np.int64)
        self._rows = 0
        self._max_rows = max_rows
        self._lock = threading.Lock()
        self._mismatch_logged = False

    @property
    def samples(self) -> int:
        return self._rows

    def observe(self, array: np.ndarray) -> bool:
        """Count one request's first input; False when it was left out (shape or dtype does not fit)."""
        array = np.asarray(array)
        if array.dtype.kind != "f":
            return False
        fitted = feature_matrix(array, self.n_features)
        if fitted is None:
            if not self._mismatch_logged:
                self._mismatch_logged = True
                log.warning("drift: input of shape %s does not map to %d calibration features; drift not computed",
                            list(array.shape), self.n_features)
            return False
        values = fitted[0]
        if values.shape[0] > self._max_rows:
            values = values[:: math.ceil(values.shape[0] / self._max_rows)]
        finite = np.isfinite(values)
        # Padding edges are +inf: a finite value never passes them, and non-finite values are left out.
        flat = bin_indices(values, self._inner) + self._offsets[None, :]
        if finite.all():
            counts = np.bincount(flat.ravel(), minlength=self._total_bins)
            rows = values.shape[0]
        else:
            counts = np.bincount(flat[finite], minlength=self._total_bins)
            rows = int(finite.all(axis=1).sum())
        with self._lock:
            self._counts += counts
            self._rows += rows
        return True

    def figures(self, reset: bool = True) -> telemetry_pb2.DriftFigures:
        with self._lock:
            counts, rows = self._counts.copy(), self._rows
            if reset:
                self._counts[:] = 0
                self._rows = 0
        out = telemetry_pb2.DriftFigures(method=METHOD, samples=rows)
        if rows == 0:
            return out
        scores = []
        for offset, expected in zip(self._offsets, self._expected):
            actual = counts[offset: offset + expected.size]
            scores.append(psi(actual, expected) if actual.sum() else 0.0)
        out.per_feature.extend(scores)
        out.max_score = max(scores)
        return out
