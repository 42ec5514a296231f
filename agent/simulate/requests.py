"""The synthetic request stream of one simulated device: Predict calls at a configured rate.

Arrivals are a Poisson process (exponential gaps, mean 1/rate), so a fleet does not fire in lockstep.
Each call goes through the device's InferenceServicer, as an app's Predict would (the same waiting
line, timing, telemetry and trial figures). A call still running when the next one is due makes that
one be skipped (counted), rather than queueing work the shared pool cannot keep up with.

Inputs: rows of the active model's golden set when the install kept one (what the model is judged
on), else random values in each input's range:
- an int8/uint8/int16 quantized input: uniform over the float range its scale and zero point can
  represent (the servicer quantizes, as for any app);
- the first input of a model whose manifest carries calibration statistics: drawn from them, bin by
  bin (so drift telemetry sees data like the calibration data);
- other float inputs: uniform in [0, 1) (models usually take normalized inputs); other integer inputs
  in [0, 10); booleans at random.
After a golden-set row, with probability `feedback`, a Feedback carries the row's label (or target),
as an app that learns the truth would: that is what online accuracy in telemetry and the trial measure.
"""

from __future__ import annotations

import logging
import math
import random
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from agent.serve.host import ServedModel
from agent.serve.servicer import ApiError, InferenceServicer
from agent.serve.wire import tensor_from_array
from agent.simulate.scheduler import Pool, Timer, Timers
from edgefleet.v1 import inference_pb2, manifest_pb2

log = logging.getLogger(__name__)

ROWS = 32  # prepared requests per model, used in turn
_QUANTIZED = {"int8": (-128, 127), "uint8": (0, 255), "int16": (-32768, 32767)}
_FLOATS = ("float32", "float16", "float64")

Golden = Callable[[ServedModel], "tuple[Any, np.ndarray] | None"]


@dataclass(frozen=True)
class Row:
    request: inference_pb2.PredictRequest
    label: int | None = None       # classification: the true class of a golden-set row
    target: float | None = None    # regression: the true value


def golden_rows(served: ServedModel, x: Any, y: np.ndarray, count: int, rng: np.random.Generator | None = None) -> list[Row]:
    """Up to `count` requests of one golden-set row each, with the row's label or target: the first rows, or
    with `rng` a random sample (so that across a fleet the rows sent cover the whole golden set)."""
    columns = dict(x) if isinstance(x, dict) else {served.input_names[0]: x}
    y = np.asarray(y)
    n = min(count, len(y))
    picked = range(n) if rng is None else sorted(rng.choice(len(y), size=n, replace=False).tolist())
    classification = served.task == "classification"
    rows = []
    for i in picked:
        tensors = [tensor_from_array(name, _floats(np.asarray(values[i:i + 1]))) for name, values in columns.items()]
        truth = y[i]
        if classification:
            flat = np.ravel(truth)
            label = int(np.argmax(flat)) if flat.size > 1 else int(flat[0])
            rows.append(Row(inference_pb2.PredictRequest(inputs=tensors), label=label))
        else:
            rows.append(Row(inference_pb2.PredictRequest(inputs=tensors), target=float(np.ravel(truth)[0])))
    return rows


def random_rows(served: ServedModel, count: int, rng: np.random.Generator) -> list[Row]:
    """`count` requests of random values in each input's range (see the module docstring)."""
    specs = list(served.model.inputs)
    calibration = served.manifest.calibration.features if served.manifest is not None else ()
    rows = []
    for _ in range(count):
        tensors = []
        for i, spec in enumerate(specs):
            shape = tuple(1 if d < 0 else int(d) for d in spec.shape)
            values = _from_calibration(calibration, shape, rng) if i == 0 and calibration else None
            if values is None:
                values = _in_range(spec, shape, rng)
            tensors.append(tensor_from_array(spec.name, values))
        rows.append(Row(inference_pb2.PredictRequest(inputs=tensors)))
    return rows


def _floats(values: np.ndarray) -> np.ndarray:
    return values.astype(np.float32) if values.dtype.kind == "f" else values


def _in_range(spec: manifest_pb2.TensorSpec, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    dtype = spec.dtype or "float32"
    if dtype in _QUANTIZED and spec.scale > 0:
        low, high = _QUANTIZED[dtype]
        return rng.uniform((low - spec.zero_point) * spec.scale, (high - spec.zero_point) * spec.scale, shape).astype(np.float32)
    if dtype in _FLOATS:
        return rng.random(shape, dtype=np.float32)
    if dtype == "bool":
        return rng.random(shape) < 0.5
    return rng.integers(0, 10, shape).astype(dtype)


def _from_calibration(features: Sequence[manifest_pb2.FeatureStats], shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray | None:
    """Values drawn feature by feature from the calibration bins, in the layout agent.telemetry.drift reads."""
    sample = shape[1:] if len(shape) > 1 else shape
    size = math.prod(sample)
    k = len(features)
    if k == size:  # element j of a sample is feature j
        values = np.array([_draw(f, 1, rng)[0] for f in features], dtype=np.float32)
        return values.reshape(shape)
    if sample and sample[-1] == k:  # every element of channel c is a sample of feature c
        per_channel = size // k
        values = np.stack([_draw(f, per_channel, rng) for f in features], axis=-1).astype(np.float32)
        return values.reshape(shape)
    return None


def _draw(feature: manifest_pb2.FeatureStats, count: int, rng: np.random.Generator) -> np.ndarray:
    edges = np.asarray(feature.bin_edges, dtype=np.float64)
    fractions = np.asarray(feature.expected_fractions, dtype=np.float64)
    if len(edges) >= 2 and len(fractions) == len(edges) - 1 and fractions.sum() > 0:
        bins = rng.choice(len(fractions), size=count, p=fractions / fractions.sum())
        return rng.uniform(edges[bins], edges[bins + 1])
    if feature.std > 0:
        return rng.normal(feature.mean, feature.std, count)
    return np.full(count, feature.mean)


class RequestStream:
    def __init__(
        self,
        servicer: InferenceServicer,
        timers: Timers,
        pool: Pool,
        *,
        rate: float,
        golden: Golden,
        feedback: float = 0.5,
        seed: int | None = None,
        rows: int = ROWS,
    ) -> None:
        """`rate`: requests per second (0: none). `golden(served)`: the model's golden set (x, y) or None."""
        if rate < 0:
            raise ValueError(f"request rate must be 0 or more per second, got {rate}")
        if not 0 <= feedback <= 1:
            raise ValueError(f"feedback must be a fraction between 0 and 1, got {feedback}")
        self.rate = rate
        self.feedback = feedback
        self._servicer = servicer
        self._timers = timers
        self._pool = pool
        self._golden = golden
        self._rows = rows
        self._gaps = random.Random(seed)                       # timer thread only
        self._coin = random.Random(None if seed is None else seed + 1)  # pool threads
        self._rng = np.random.default_rng(seed)                # the device's strand (activations)
        self._inputs: list[Row] | None = None
        self._next = 0
        self._busy = False
        self._running = False
        self._timer: Timer | None = None
        self.source = ""               # golden | random: where the current model's inputs come from
        self.sent = 0
        self.answered = 0
        self.failed = 0
        self.skipped = 0
        self.labelled = 0

    # -- the model ----------------------------------------------------------------------------

    def on_activate(self, served: ServedModel | None) -> None:
        """ModelHost listener: prepare requests for the model that serves now (None: stop sending)."""
        if served is None:
            self._inputs, self.source = None, ""
            return
        rows: list[Row] = []
        try:
            golden = self._golden(served)
            if golden is not None:
                rows, self.source = golden_rows(served, golden[0], golden[1], self._rows, self._rng), "golden"
        except Exception as exc:  # noqa: BLE001 - a golden set this model cannot take: random inputs then
            log.warning("golden-set inputs unusable for %s (%s): sending random inputs", served.key, exc)
        if not rows:
            rows, self.source = random_rows(served, self._rows, self._rng), "random"
        self._next = 0
        self._inputs = rows

    # -- the stream ---------------------------------------------------------------------------

    def start(self, first_delay_s: float | None = None) -> None:
        if self.rate <= 0 or self._running:
            return
        self._running = True
        delay = self._gaps.expovariate(self.rate) if first_delay_s is None else first_delay_s
        self._timer = self._timers.call_later(delay, self._due)

    def stop(self) -> None:
        self._running = False
        if self._timer is not None:
            self._timer.cancel()

    def _due(self) -> None:
        """Timer thread: schedule the next arrival, then hand this one to the pool."""
        if not self._running:
            return
        self._timer = self._timers.call_later(self._gaps.expovariate(self.rate), self._due)
        if self._inputs is None:
            return  # no model yet: nothing an app could call
        if self._busy:
            self.skipped += 1
            return
        self._busy = True
        self._pool.post(self._call)

    def _call(self) -> None:
        try:
            rows = self._inputs
            if rows is None:
                return
            row = rows[self._next % len(rows)]
            self._next += 1
            self.sent += 1
            response = self._servicer.predict(row.request)
            self.answered += 1
            if (row.label is not None or row.target is not None) and self._coin.random() < self.feedback:
                self._servicer.feedback(inference_pb2.FeedbackRequest(
                    request_id=response.request_id, label=row.label or 0, target=row.target or 0.0))
                self.labelled += 1
        except ApiError as exc:
            self.failed += 1
            log.debug("simulated request failed: %s", exc.message)
        finally:
            self._busy = False
