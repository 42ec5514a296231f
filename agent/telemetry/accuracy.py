"""How well a model does on the device, from three sources, aggregated (never raw outputs on the wire):

- golden set: the labelled samples shipped with the model and kept by the install, evaluated at
  activation and every K minutes (accuracy for classification, mean absolute error for regression);
- online: labels apps send later through Feedback, scored against the top-1 prediction the agent
  remembered for that request (accuracy), or targets against the predicted value (MAE), with the count;
- confidence: the mean top-1 probability of the predictions (a drop often precedes an accuracy drop).

Top-1 and its confidence: a first output with more than one unit is a class score vector; when its
rows are not already probabilities (all within [0, 1] and summing to 1) they are read as logits and
softmaxed. A single unit is a binary classifier: a probability when within [0, 1], else a logit
(sigmoid); class 1 above 0.5, confidence max(p, 1 - p).
"""

from __future__ import annotations

import math

import threading
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

# Rows up to this many classes are summarized in plain Python (a few µs less per request than numpy).
_SHORT_ROW = 64

# (x, y) of the golden set the install kept for a model, or None when it has none.
GoldenData = tuple[Any, np.ndarray]


@dataclass(frozen=True)
class OutputSummary:
    """Plain Python numbers (cheap to keep and to add up), one per row of the request."""

    rows: int
    top1: tuple[int, ...] | None = None          # classification: class index per row
    confidence: tuple[float, ...] | None = None  # classification: top-1 probability per row
    values: tuple[float, ...] | None = None      # regression: first output value per row


def summarize(output: np.ndarray, task: str) -> OutputSummary:
    """Top-1 class and confidence (classification) or the predicted value (regression) per row.

    On the request path: a handful of numpy reductions, no copies of the output.
    """
    output = np.asarray(output)
    rows = int(output.shape[0]) if output.ndim >= 2 else 1
    scores = output.reshape(rows, -1)
    units = scores.shape[1]
    if task == "regression" or units == 0:
        return OutputSummary(rows=rows, values=tuple(scores[:, 0].tolist()) if units else (0.0,) * rows)
    if units == 1:
        p = scores[:, 0].astype(np.float64)
        if p.min() < 0 or p.max() > 1:
            p = 1.0 / (1.0 + np.exp(-p))
        top1 = (p > 0.5).astype(np.int64)
        return OutputSummary(rows=rows, top1=tuple(top1.tolist()), confidence=tuple(np.where(top1 == 1, p, 1.0 - p).tolist()))
    if rows == 1 and units <= _SHORT_ROW:  # the common case with a few classes: plain Python beats numpy calls
        values = scores[0].tolist()
        total = sum(values)
        if not math.isnan(total):  # (NaN or inf-inf: numpy's path below decides)
            peak = max(values)
            top = values.index(peak)  # the first maximum, as argmax
            if peak <= 1 and min(values) >= 0 and abs(total - 1.0) <= 1e-3:
                return OutputSummary(rows=1, top1=(top,), confidence=(float(peak),))
            return OutputSummary(rows=1, top1=(top,), confidence=(1.0 / sum(math.exp(v - peak) for v in values),))
    if rows == 1:  # kept to a few numpy calls
        row = scores[0]
        top = int(row.argmax())
        peak = float(row[top])
        if peak <= 1 and float(row.min()) >= 0 and abs(float(row.sum(dtype=np.float64)) - 1.0) <= 1e-3:
            return OutputSummary(rows=1, top1=(top,), confidence=(peak,))
        return OutputSummary(rows=1, top1=(top,), confidence=(1.0 / float(np.exp(row.astype(np.float64) - peak).sum()),))
    top1 = scores.argmax(axis=1)
    picked = scores[np.arange(rows), top1].astype(np.float64)  # each row's maximum
    sums = scores.sum(axis=1, dtype=np.float64)
    if picked.max() <= 1 and scores.min() >= 0 and np.abs(sums - 1.0).max() <= 1e-3:
        return OutputSummary(rows=rows, top1=tuple(top1.tolist()), confidence=tuple(picked.tolist()))
    # softmax of the top-1 logit: 1 / sum(exp(s - s_top))
    confidence = 1.0 / np.exp(scores.astype(np.float64) - picked[:, None]).sum(axis=1)
    return OutputSummary(rows=rows, top1=tuple(top1.tolist()), confidence=tuple(confidence.tolist()))


class OnlineScore:
    """Feedback scored against remembered predictions: accuracy or MAE, and how many labels made it."""

    def __init__(self, task: str) -> None:
        self.task = task
        self.count = 0
        self._total = 0.0  # correct predictions, or the sum of absolute errors

    def add_label(self, predicted: int, label: int) -> bool:
        correct = int(predicted) == int(label)
        self.count += 1
        self._total += correct
        return correct

    def add_target(self, predicted: float, target: float) -> float:
        error = abs(float(predicted) - float(target))
        self.count += 1
        self._total += error
        return error

    def merge(self, other: OnlineScore) -> None:
        self.count += other.count
        self._total += other._total

    @property
    def metric(self) -> float | None:
        return self._total / self.count if self.count else None


class ConfidenceMean:
    def __init__(self) -> None:
        self.count = 0
        self.total = 0.0

    def add(self, confidence: tuple[float, ...]) -> None:
        self.count += len(confidence)
        self.total += sum(confidence)

    @property
    def mean(self) -> float | None:
        return self.total / self.count if self.count else None


@dataclass(frozen=True)
class GoldenResult:
    metric: float
    count: int
    at: float  # monotonic clock of the evaluation


class GoldenSchedule:
    """When the golden set is due for a model: at activation, then every `every_s` seconds."""

    def __init__(self, every_s: float, clock: Callable[[], float]) -> None:
        if every_s <= 0:
            raise ValueError(f"golden-set interval must be above 0 s, got {every_s}")
        self.every_s = every_s
        self._clock = clock
        self._due_at: float | None = None  # None: due now (just activated)
        self.result: GoldenResult | None = None
        self.unavailable = False           # the install kept no golden set for this model
        self._lock = threading.Lock()

    def due(self) -> bool:
        with self._lock:
            return not self.unavailable and (self._due_at is None or self._clock() >= self._due_at)

    def record(self, result: GoldenResult | None) -> None:
        with self._lock:
            if result is None:
                self.unavailable = True
            else:
                self.result = result
            self._due_at = self._clock() + self.every_s

    def failed(self) -> None:
        """Evaluation raised: try again at the next interval, not on every tick."""
        with self._lock:
            self._due_at = self._clock() + self.every_s
