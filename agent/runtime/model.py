"""One .tflite model loaded in an interpreter, with checked, float-in / float-out inference.

Thread safety: a LiteRT interpreter is not thread-safe (its tensors are shared state), so set-inputs /
invoke / get-outputs run under one lock per LoadedModel. Checking and quantizing inputs and
dequantizing outputs happen outside the lock, so concurrent callers overlap in that part only.
For parallel inference, load the model more than once (a pool of LoadedModel objects).
"""

from __future__ import annotations

import hashlib

import resource
import sys
import threading
import time
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from agent.runtime.backend import Backend
from agent.runtime.errors import InvalidInput, ModelLoadError
from agent.runtime.memory import drop_file_pages
from agent.runtime.plugins import select_backend
from agent.runtime.tensors import TensorBinding, bindings
from edgefleet.v1 import manifest_pb2

TASKS = ("classification", "regression")
# Golden-set rows per invoke when the model's batch dimension is dynamic.
_EVAL_BATCH = 256


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


class LoadedModel:
    def __init__(self, path: Path, backend: Backend, interpreter: Any, load_ms: float) -> None:
        """Wrap an allocated interpreter; use LoadedModel.load() to make one from a file."""
        self.path = path
        self.backend = backend
        self.load_ms = load_ms
        self._interpreter = interpreter
        self._lock = threading.Lock()
        self._inputs, self._outputs = bindings(interpreter)
        self._by_name = {b.name: b for b in self._inputs}
        # Current (allocated) input shapes: a request with another batch size resizes first.
        allocated = {int(d["index"]): tuple(int(n) for n in d["shape"]) for d in interpreter.get_input_details()}
        self._shapes = {b.index: allocated[b.index] for b in self._inputs}
        self._single = self._inputs[0] if len(self._inputs) == 1 else None
        self._float_outputs = not any(b.quantized for b in self._outputs)  # outputs need no dequantization

    @classmethod
    def load(cls, path: Path | str, backend: Backend | None = None, *, drop_pages: bool = True) -> LoadedModel:
        """Load and allocate the model; raises ModelLoadError with the runtime's own message. drop_pages=False
        skips drop_file_pages (a model closed right after use, as the install's acceptance test does)."""
        path = Path(path)
        if not path.is_file():
            raise ModelLoadError(f"cannot load {path}: no such file")
        backend = backend if backend is not None else select_backend(())
        started = time.perf_counter()
        try:
            interpreter = backend.create_interpreter(path)
            interpreter.allocate_tensors()
        except Exception as exc:  # the runtimes raise ValueError / RuntimeError with the reason
            message = f"cannot load {path.name}: {_one_line(exc)}"
            if backend.reason:
                message += f" (backend: {backend.reason})"
            raise ModelLoadError(message) from exc
        load_ms = (time.perf_counter() - started) * 1e3
        # The runtime has read the weights it needs (XNNPACK packed them): the file's pages need not
        # stay in this process's RSS (agent.runtime.memory.drop_file_pages; read back if ever needed).
        if drop_pages:
            drop_file_pages(path)
        return cls(path, backend, interpreter, load_ms)

    # -- description --------------------------------------------------------------------------

    @property
    def inputs(self) -> list[manifest_pb2.TensorSpec]:
        return [b.spec() for b in self._inputs]

    @property
    def outputs(self) -> list[manifest_pb2.TensorSpec]:
        return [b.spec() for b in self._outputs]

    @property
    def input_bindings(self) -> tuple[TensorBinding, ...]:
        return tuple(self._inputs)

    @property
    def output_bindings(self) -> tuple[TensorBinding, ...]:
        return tuple(self._outputs)

    # -- inference ----------------------------------------------------------------------------

    def predict(self, inputs: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """Run the model on named inputs; returns named outputs, dequantized to float32 if quantized.

        Raises InvalidInput naming the tensor for an unknown or missing name, a wrong shape or dtype.
        Outputs always keep the model's batch dimension, even when the request left it implied.
        """
        single = self._single
        if single is not None and len(inputs) == 1:  # the common case, without the general path's loops
            value = inputs.get(single.name)
            if value is not None:
                array = single.prepare(value)
                with self._lock:
                    interpreter = self._live()
                    if array.shape != self._shapes[single.index]:
                        self._resize(interpreter, {single.index: array})
                    interpreter.set_tensor(single.index, array)
                    interpreter.invoke()
                    # get_tensor returns a copy, so the next request cannot overwrite what is returned.
                    raw = {b.name: interpreter.get_tensor(b.index) for b in self._outputs}
                return raw if self._float_outputs else {b.name: b.to_float(raw[b.name]) for b in self._outputs}
        prepared = self._prepare(inputs)
        raw = self._run(prepared)
        return {b.name: b.to_float(raw[b.name]) for b in self._outputs}

    def prepare(self, inputs: Mapping[str, Any]) -> dict[int, np.ndarray]:
        """predict's checks and conversions alone: the arrays `run` takes, by tensor index. Raises
        InvalidInput as predict does. For a request repeated on new data (agent.serve.prepared)."""
        return self._prepare(inputs)

    def run(self, prepared: Mapping[int, np.ndarray]) -> dict[str, np.ndarray]:
        """predict on arrays `prepare` returned, without checking them again."""
        raw = self._run(prepared)
        return raw if self._float_outputs else {b.name: b.to_float(raw[b.name]) for b in self._outputs}

    def _prepare(self, inputs: Mapping[str, Any]) -> dict[int, np.ndarray]:
        unknown = [name for name in inputs if name not in self._by_name]
        if unknown:
            raise InvalidInput(f"unknown input {unknown[0]!r}; the model's inputs are "
                               + ", ".join(repr(b.name) for b in self._inputs))
        missing = [b.name for b in self._inputs if b.name not in inputs]
        if missing:
            raise InvalidInput(f"missing input {missing[0]!r}; the model needs "
                               + ", ".join(repr(b.name) for b in self._inputs))
        return {b.index: b.prepare(inputs[b.name]) for b in self._inputs}

    def _run(self, prepared: Mapping[int, np.ndarray]) -> dict[str, np.ndarray]:
        with self._lock:
            interpreter = self._live()
            if any(array.shape != self._shapes[index] for index, array in prepared.items()):
                self._resize(interpreter, prepared)
            for index, array in prepared.items():
                interpreter.set_tensor(index, array)
            interpreter.invoke()
            # get_tensor returns a copy, so the next request cannot overwrite what is returned.
            return {b.name: interpreter.get_tensor(b.index) for b in self._outputs}

    def _resize(self, interpreter: Any, prepared: Mapping[int, np.ndarray]) -> None:
        """Give the interpreter the request's shapes (dynamic dimensions only; checked before)."""
        try:
            for index, array in prepared.items():
                interpreter.resize_tensor_input(index, list(array.shape), strict=True)
            interpreter.allocate_tensors()
        except (RuntimeError, ValueError) as exc:
            # e.g. two inputs with different batch sizes; forget the shapes so the next request resizes again
            for index in prepared:
                self._shapes[index] = ()
            shapes = ", ".join(f"{b.name!r} [{', '.join(map(str, prepared[b.index].shape))}]" for b in self._inputs)
            raise InvalidInput(f"the model cannot run on inputs shaped {shapes}: {_one_line(exc)}") from exc
        for index, array in prepared.items():
            self._shapes[index] = array.shape

    def invoke_raw(self) -> None:
        """Invoke on whatever inputs are set, with no checks or conversions (for benchmarks)."""
        with self._lock:
            self._live().invoke()

    # -- evaluation and profiling -------------------------------------------------------------

    def evaluate(self, x: np.ndarray | Mapping[str, np.ndarray], y: np.ndarray, task: str) -> float:
        """Accuracy (classification) or mean absolute error (regression) of the first output on (x, y).

        `x` has one row per sample (a dict of arrays for a model with several inputs); `y` holds class
        indices or one-hot rows (classification) or targets (regression). A single-unit classifier
        output is read as a sigmoid: class 1 when above 0.5.
        """
        if task not in TASKS:
            raise ValueError(f"unknown task {task!r}; expected one of {', '.join(TASKS)}")
        columns = self._columns(x)
        count = len(next(iter(columns.values())))
        y = np.asarray(y)
        if count == 0:
            raise ValueError("empty evaluation set")
        if len(y) != count:
            raise ValueError(f"x has {count} samples but y has {len(y)}")
        predicted = self._predict_rows(columns, count).reshape(count, -1)
        if task == "regression":
            return float(np.mean(np.abs(predicted - y.reshape(count, -1).astype(np.float64))))
        if predicted.shape[1] == 1:
            labels_hat = (predicted[:, 0] > 0.5).astype(np.int64)
        else:
            labels_hat = np.argmax(predicted, axis=1)
        labels = np.argmax(y.reshape(count, -1), axis=1) if y.ndim > 1 and y.reshape(count, -1).shape[1] > 1 else y.reshape(count)
        return float(np.mean(labels_hat == labels))

    def _columns(self, x: np.ndarray | Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        if isinstance(x, Mapping):
            columns = {name: np.asarray(v) for name, v in x.items()}
        elif len(self._inputs) == 1:
            columns = {self._inputs[0].name: np.asarray(x)}
        else:
            raise InvalidInput("the model has several inputs: pass x as a dict of arrays named "
                               + ", ".join(repr(b.name) for b in self._inputs))
        counts = {len(v) for v in columns.values()}
        if len(counts) != 1:
            raise ValueError(f"inputs have different numbers of samples: {sorted(counts)}")
        return columns

    def _predict_rows(self, columns: Mapping[str, np.ndarray], count: int) -> np.ndarray:
        dynamic = all(b.shape and b.shape[0] == -1 for b in self._inputs)
        step = _EVAL_BATCH if dynamic else 1
        first = self._outputs[0]
        parts = []
        for start in range(0, count, step):
            batch = {name: v[start:start + step] for name, v in columns.items()}
            raw = self._run(self._prepare(batch))
            parts.append(first.to_float(raw[first.name]))
        return np.concatenate(parts, axis=0)

    def benchmark(self, runs: int = 50, warmup: int = 5, seed: int = 0) -> dict[str, float]:
        """Time `invoke` on random inputs: load_ms, p50_ms, p95_ms, mean_ms and peak_rss_bytes.

        peak_rss_bytes is the process's peak resident set (getrusage), so it describes this model only
        when measured in a process of its own (how the agent profiles candidate variants).
        """
        if runs < 1 or warmup < 0:
            raise ValueError(f"runs must be >= 1 and warmup >= 0, got runs={runs} warmup={warmup}")
        # Inputs from seeded SHAKE-256 bytes, not numpy.random: an agent never needs numpy.random (6.7 MB
        # resident once imported) for anything else, and timing needs arbitrary values, not a distribution.
        with self._lock:
            interpreter = self._live()
            for b in self._inputs:
                shape = self._shapes[b.index]
                size = int(np.prod(shape))
                raw = np.frombuffer(hashlib.shake_256(f"{seed}:{b.index}".encode()).digest(max(size, 1)), np.uint8)[:size]
                if b.dtype.kind == "f":
                    value = ((raw.astype(np.float32) - 127.5) / 64.0).reshape(shape).astype(b.dtype)  # about -2..2
                elif b.dtype.kind in "iu":
                    info = np.iinfo(b.dtype)
                    value = np.clip(raw.astype(np.int64) - 128, max(info.min, -128), min(info.max, 127)).reshape(shape).astype(b.dtype)
                else:
                    value = np.zeros(shape, b.dtype)
                interpreter.set_tensor(b.index, value)
        times = []
        for i in range(warmup + runs):
            started = time.perf_counter_ns()
            self.invoke_raw()
            if i >= warmup:
                times.append((time.perf_counter_ns() - started) / 1e6)
        return {
            "load_ms": self.load_ms,
            "p50_ms": _percentile(times, 50),
            "p95_ms": _percentile(times, 95),
            "mean_ms": float(np.mean(times)),
            "peak_rss_bytes": peak_rss_bytes(),
        }

    def _live(self) -> Any:
        if self._interpreter is None:
            raise RuntimeError(f"model {self.path.name} was closed")
        return self._interpreter

    def close(self) -> None:
        """Drop the interpreter (and with it any delegate) so the memory goes before the next model loads."""
        with self._lock:
            self._interpreter = None


def _percentile(values: list[float], q: float) -> float:
    """numpy.percentile's default (linear) rule without numpy.percentile, which imports numpy.ma (1.3 MB)."""
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100.0
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return float(ordered[low] + (ordered[high] - ordered[low]) * (rank - low))


def peak_rss_bytes() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)  # kilobytes on Linux, bytes on macOS
