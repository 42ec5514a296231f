"""Edge TPU fit of an int8 variant: a compatibility analysis of the flatbuffer, and `edgetpu_compiler`
when it is on PATH.

The analysis applies the Edge TPU model requirements (coral.ai/docs/edgetpu/models-intro): tensors int8
(uint8), shapes static, activation tensors of rank above 3 with only the 3 innermost dimensions above 1, and every op
in the supported list below. The compiler maps ops in order and stops at the first it cannot map (the rest
runs on the CPU), so that op is named as the blocking one. A float input QUANTIZE or output DEQUANTIZE at
the graph boundary runs on the CPU without blocking the ops between them.
"""
from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from coordinator.optimize.artifacts import ArtifactStore
from coordinator.optimize.graph import Graph, Op, read_graph
from coordinator.optimize.results import EdgeTpuFit

NOT_COMPILED = "compatible, not compiled: compiler not installed"
COMPILER = "edgetpu_compiler"
COMPILER_TIMEOUT_S = 180
# TFLite builtin ops the Edge TPU compiler (v16) can map.
SUPPORTED_OPS = frozenset({
    "ADD", "AVERAGE_POOL_2D", "CONCATENATION", "CONV_2D", "DEPTHWISE_CONV_2D", "EXPAND_DIMS",
    "FULLY_CONNECTED", "HARD_SWISH", "L2_NORMALIZATION", "LOGISTIC", "MAXIMUM", "MAX_POOL_2D", "MEAN",
    "MINIMUM", "MUL", "PACK", "PAD", "PRELU", "QUANTIZE", "REDUCE_MAX", "REDUCE_MIN", "RELU", "RELU6",
    "RELU_N1_TO_1", "RESHAPE", "RESIZE_BILINEAR", "RESIZE_NEAREST_NEIGHBOR", "RSQRT", "SLICE", "SOFTMAX",
    "SPACE_TO_DEPTH", "SPLIT", "SQUARED_DIFFERENCE", "SQUEEZE", "STRIDED_SLICE", "SUB", "SUM", "TANH",
    "TRANSPOSE", "TRANSPOSE_CONV", "UNIDIRECTIONAL_SEQUENCE_LSTM",
})
_INT8 = {"int8", "uint8"}
_ALLOWED_CONST = _INT8 | {"int32"}  # biases and shape operands


def is_int8_model(graph: Graph) -> bool:
    """Quantized to 8 bits inside: some activation is int8/uint8 and none is int16 or a float between ops."""
    activations = graph.activation_dtypes()
    return bool(activations & _INT8) and "int16" not in activations


def _boundary(graph: Graph, op: Op) -> bool:
    if op.name == "QUANTIZE":
        return all(i in graph.inputs for i in op.inputs)
    if op.name == "DEQUANTIZE":
        return all(o in graph.outputs for o in op.outputs)
    return False


def _blocker(graph: Graph, op: Op) -> str | None:
    if op.name not in SUPPORTED_OPS:
        return f"op #{op.index} {op.name} is not supported by the Edge TPU"
    for index in (*op.inputs, *op.outputs):
        if index < 0:
            continue
        t = graph.tensors[index]
        if t.is_dynamic:
            return f"op #{op.index} {op.name}: tensor {t.name!r} has a dynamic shape {list(t.shape_signature)}"
        if not t.is_constant and len(t.shape) > 3 and any(d > 1 for d in t.shape[:-3]):
            return f"op #{op.index} {op.name}: tensor {t.name!r} has shape {list(t.shape)}; only the 3 innermost dimensions may exceed 1"
        allowed = _ALLOWED_CONST if t.is_constant else _INT8 | ({"int32"} if op.name in ("RESHAPE", "PAD", "MEAN", "SUM") else set())
        if t.dtype not in allowed:
            return f"op #{op.index} {op.name}: tensor {t.name!r} is {t.dtype}, not int8"
    return None


def analyze(data: bytes) -> EdgeTpuFit:
    """Compatibility from the flatbuffer alone."""
    graph = read_graph(data)
    if not is_int8_model(graph):
        dtypes = ", ".join(sorted(graph.activation_dtypes()))
        return EdgeTpuFit("not_applicable", f"not an int8 model (activations: {dtypes}); the Edge TPU runs int8 models only")
    core = [op for op in graph.ops if not _boundary(graph, op)]
    for position, op in enumerate(core):
        reason = _blocker(graph, op)
        if reason is not None:
            return EdgeTpuFit(
                "incompatible",
                f"{reason}; the compiler would map {position} of {len(graph.ops)} ops and run the rest on the CPU",
                position / len(graph.ops),
            )
    return EdgeTpuFit("compatible", NOT_COMPILED, len(core) / len(graph.ops) if graph.ops else 0.0)


def _parse_summary(text: str) -> tuple[int, int] | None:
    tpu = re.search(r"Number of operations that will run on Edge TPU:\s*(\d+)", text)
    cpu = re.search(r"Number of operations that will run on CPU:\s*(\d+)", text)
    if tpu and cpu:
        return int(tpu.group(1)), int(cpu.group(1))
    total = re.search(r"Total number of operations:\s*(\d+)", text)
    if tpu and total:
        return int(tpu.group(1)), int(total.group(1)) - int(tpu.group(1))
    return None


def compile_model(data: bytes, compiler: str, store: ArtifactStore | None, timeout_s: float = COMPILER_TIMEOUT_S) -> EdgeTpuFit:
    """Run `edgetpu_compiler -s` and keep its mapping summary (and the compiled model, when a store is given)."""
    with tempfile.TemporaryDirectory(prefix="edgetpu-") as tmp:
        src = Path(tmp) / "model.tflite"
        src.write_bytes(data)
        out_dir = Path(tmp) / "out"
        out_dir.mkdir()
        try:
            run = subprocess.run([compiler, "-s", "-o", str(out_dir), str(src)], capture_output=True, text=True, timeout=timeout_s)
        except subprocess.TimeoutExpired:
            return EdgeTpuFit("incompatible", f"edgetpu_compiler did not finish within {timeout_s:.0f} s")
        except OSError as exc:
            return EdgeTpuFit("incompatible", f"edgetpu_compiler could not run: {exc}")
        text = run.stdout + run.stderr
        if run.returncode != 0:
            last = [line for line in text.strip().splitlines() if line.strip()][-2:]
            return EdgeTpuFit("incompatible", f"edgetpu_compiler failed (exit {run.returncode}): {' '.join(last)}")
        counts = _parse_summary(text)
        compiled = out_dir / "model_edgetpu.tflite"
        sha = store.put(compiled.read_bytes())[0] if store is not None and compiled.exists() else None
    if counts is None:
        return EdgeTpuFit("compiled", "compiled; the compiler printed no operation counts", 0.0, sha)
    tpu, cpu = counts
    fraction = tpu / (tpu + cpu) if tpu + cpu else 0.0
    # The op table (-s) says per op kind whether it mapped; keep it as the mapping summary.
    table = [" ".join(line.split()) for line in text.splitlines()
             if re.search(r"Mapped to Edge TPU|not supported|not mapped|unspecified limitation", line)]
    detail = f"compiled: {tpu} of {tpu + cpu} ops on the Edge TPU, {cpu} on the CPU"
    if table:
        detail += "; " + "; ".join(table)
    return EdgeTpuFit("compiled", detail, fraction, sha)


def check(data: bytes, store: ArtifactStore | None = None) -> EdgeTpuFit:
    """Analysis, then the compiler when installed (its verdict replaces the estimate)."""
    fit = analyze(data)
    if fit.status == "not_applicable":
        return fit
    compiler = shutil.which(COMPILER)
    if compiler is None:
        return fit
    compiled = compile_model(data, compiler, store)
    if compiled.status == "compiled" and fit.status == "incompatible":
        compiled.detail += f" (analysis: {fit.detail})"
    return compiled
