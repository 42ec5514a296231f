"""Measure a `.tflite` artifact with the LiteRT interpreter, the way a device would run it.

- metric: accuracy (classification) or MAE (regression) over the WHOLE validation split; quantized inputs
  are quantized and quantized outputs dequantized with the tensors' own scale and zero point;
- size: file bytes and gzip bytes (level 9: what a transfer with compression would carry);
- latency: p50 / p95 of `invoke()` alone over at least 50 runs (more, up to 5,000, until 0.25 s have
  been spent) after a warm-up, 1 thread, batch 1;
- peak memory estimate: file size (weights are read from the mapped flatbuffer) plus the peak of
  activation tensors alive at once under TFLite's arena planning (see `Graph.peak_activation_bytes`);
  interpreter code and kernel scratch buffers are not included;
- ops, input/output dtypes, shapes and quantization parameters, MACs and weight sparsity from the flatbuffer.
"""
from __future__ import annotations

import gzip
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from ai_edge_litert.interpreter import Interpreter

from coordinator.optimize.graph import read_graph

MIN_INVOKES = 50
MAX_INVOKES = 5000
MIN_SECONDS = 0.25
_EVAL_BATCH = 256


@dataclass
class Measurement:
    size_bytes: int
    gzip_bytes: int
    metric: float | None
    metric_name: str | None
    latency_p50_ms: float
    latency_p95_ms: float
    peak_memory_bytes: int
    ops: list[str]
    input_dtype: str
    output_dtype: str
    input_quant: dict[str, float] | None
    output_quant: dict[str, float] | None
    input_shape: list[int]
    output_shape: list[int]
    macs: int
    weight_sparsity: float


def _quant(detail: dict[str, Any]) -> dict[str, float] | None:
    scale, zero_point = detail["quantization"]
    if not scale:
        return None
    return {"scale": float(scale), "zero_point": int(zero_point)}


def _shape(detail: dict[str, Any]) -> list[int]:
    """The declared shape, -1 for a dynamic dimension."""
    sig = detail.get("shape_signature")
    return [int(d) for d in (sig if sig is not None and len(sig) else detail["shape"])]


def to_input(x: np.ndarray, detail: dict[str, Any]) -> np.ndarray:
    """Cast (and quantize, for an integer input) real-valued rows to what the input tensor takes."""
    dtype = np.dtype(detail["dtype"])
    q = _quant(detail)
    if q is not None and np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        x = np.round(np.asarray(x, dtype=np.float64) / q["scale"] + q["zero_point"])
        return np.clip(x, info.min, info.max).astype(dtype)
    return np.asarray(x).astype(dtype)


def from_output(y: np.ndarray, detail: dict[str, Any]) -> np.ndarray:
    q = _quant(detail)
    if q is not None and np.issubdtype(np.dtype(detail["dtype"]), np.integer):
        return (y.astype(np.float64) - q["zero_point"]) * q["scale"]
    return y.astype(np.float64)


def make_interpreter(model: bytes) -> Interpreter:
    interpreter = Interpreter(model_content=model, num_threads=1)
    interpreter.allocate_tensors()
    return interpreter


def predict(model: bytes, x: np.ndarray) -> np.ndarray:
    """Real-valued outputs for every row of `x` (first output tensor). Batches when the model's batch
    axis is dynamic, else one row per invoke."""
    interpreter = make_interpreter(model)
    inp = interpreter.get_input_details()[0]
    out = interpreter.get_output_details()[0]
    sig = inp.get("shape_signature")
    dynamic_batch = sig is not None and len(sig) > 0 and sig[0] == -1
    results = []
    step = _EVAL_BATCH if dynamic_batch else 1
    current = None
    for start in range(0, len(x), step):
        rows = x[start : start + step]
        if dynamic_batch and len(rows) != current:
            interpreter.resize_tensor_input(inp["index"], [len(rows), *inp["shape"][1:]])
            interpreter.allocate_tensors()
            current = len(rows)
        interpreter.set_tensor(inp["index"], to_input(rows, inp))
        interpreter.invoke()
        results.append(from_output(interpreter.get_tensor(out["index"]), out).reshape(len(rows), -1))
    return np.concatenate(results, axis=0)


def score(outputs: np.ndarray, y: np.ndarray, task: str) -> float:
    """Accuracy (argmax, or > 0.5 for a single sigmoid output) or mean absolute error."""
    outputs = outputs.reshape(len(outputs), -1)
    if task == "classification":
        pred = outputs.argmax(axis=1) if outputs.shape[1] > 1 else (outputs[:, 0] > 0.5).astype(np.int64)
        return float(np.mean(pred == np.asarray(y).reshape(-1)))
    return float(np.mean(np.abs(outputs - np.asarray(y, dtype=np.float64).reshape(len(outputs), -1))))


def latency_ms(model: bytes, sample: np.ndarray | None = None, invokes: int = MIN_INVOKES, warmup: int = 5,
               min_seconds: float = MIN_SECONDS) -> tuple[float, float]:
    """p50 and p95 of single `invoke()` calls, 1 thread, batch 1: at least `invokes` runs, and more (up to
    MAX_INVOKES) until `min_seconds` have been spent, so microsecond models get a stable median too."""
    interpreter = make_interpreter(model)
    inp = interpreter.get_input_details()[0]
    shape = [1, *inp["shape"][1:]]
    if list(inp["shape"]) != shape:
        interpreter.resize_tensor_input(inp["index"], shape)
        interpreter.allocate_tensors()
    x = to_input(sample[None] if sample is not None else np.zeros(shape, dtype=np.float32), inp)
    interpreter.set_tensor(inp["index"], x.reshape(shape))
    for _ in range(warmup):
        interpreter.invoke()
    times: list[float] = []
    started = time.perf_counter()
    while len(times) < max(invokes, MIN_INVOKES) or (time.perf_counter() - started < min_seconds and len(times) < MAX_INVOKES):
        t0 = time.perf_counter()
        interpreter.invoke()
        times.append(time.perf_counter() - t0)
    return float(np.percentile(times, 50) * 1e3), float(np.percentile(times, 95) * 1e3)


def measure_tflite(
    model: bytes | Path,
    *,
    x_val: np.ndarray | None = None,
    y_val: np.ndarray | None = None,
    task: str | None = None,
    input_features: list[int] | None = None,
    invokes: int = MIN_INVOKES,
) -> Measurement:
    """Measure one artifact. `input_features` selects the columns an RFE variant reads."""
    data = Path(model).read_bytes() if isinstance(model, Path) else bytes(model)
    graph = read_graph(data)
    interpreter = make_interpreter(data)
    inp = interpreter.get_input_details()[0]
    out = interpreter.get_output_details()[0]
    if x_val is not None and input_features is not None:
        x_val = np.asarray(x_val)[:, input_features]
    metric = None
    metric_name = None
    if x_val is not None and y_val is not None and task is not None:
        metric = score(predict(data, x_val), y_val, task)
        metric_name = "accuracy" if task == "classification" else "mae"
    p50, p95 = latency_ms(data, x_val[0] if x_val is not None else None, invokes=invokes)
    return Measurement(
        size_bytes=len(data),
        gzip_bytes=len(gzip.compress(data, compresslevel=9, mtime=0)),
        metric=metric,
        metric_name=metric_name,
        latency_p50_ms=p50,
        latency_p95_ms=p95,
        peak_memory_bytes=len(data) + graph.peak_activation_bytes(),
        ops=graph.op_names(),
        input_dtype=np.dtype(inp["dtype"]).name,
        output_dtype=np.dtype(out["dtype"]).name,
        input_quant=_quant(inp),
        output_quant=_quant(out),
        input_shape=_shape(inp),
        output_shape=_shape(out),
        macs=graph.macs(),
        weight_sparsity=graph.weight_sparsity(),
    )
