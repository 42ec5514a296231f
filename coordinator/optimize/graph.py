"""Read a `.tflite` flatbuffer: tensors, ops, weights, MACs, sparsity and activation memory.

Everything here is computed from the artifact itself (the file a device runs), with the flatbuffer schema
that ships in ai-edge-litert; no TensorFlow.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
from ai_edge_litert import schema_py_generated as schema
from ai_edge_litert.tools import flatbuffer_utils

_OP_NAMES = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
_TYPE_NAMES = {v: k for k, v in vars(schema.TensorType).items() if not k.startswith("_")}
_NUMPY_DTYPES = {
    "FLOAT32": "float32", "FLOAT16": "float16", "FLOAT64": "float64", "INT8": "int8", "UINT8": "uint8",
    "INT16": "int16", "UINT16": "uint16", "INT32": "int32", "UINT32": "uint32", "INT64": "int64",
    "BOOL": "bool", "INT4": "int8",
}
# Ops whose input 1 is a weight tensor, and the axis of that tensor that indexes output channels.
WEIGHT_OPS = {"CONV_2D": 0, "FULLY_CONNECTED": 0, "DEPTHWISE_CONV_2D": 3, "TRANSPOSE_CONV": 0, "CONV_3D": 4}


class NotTfliteError(ValueError):
    """The bytes are not a TFLite flatbuffer."""


@dataclass(frozen=True)
class Tensor:
    index: int
    name: str
    dtype: str  # numpy name
    shape: tuple[int, ...]
    shape_signature: tuple[int, ...] | None  # -1 marks a dynamic dimension
    data: np.ndarray | None  # raw bytes of a constant tensor
    scales: np.ndarray | None
    zero_points: np.ndarray | None
    quantized_dimension: int
    is_variable: bool

    @property
    def is_constant(self) -> bool:
        return self.data is not None and self.data.size > 0

    @property
    def is_dynamic(self) -> bool:
        return self.shape_signature is not None and any(d < 0 for d in self.shape_signature)

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * np.dtype(self.dtype).itemsize  # () -> 1 element

    @property
    def quantized(self) -> bool:
        return self.scales is not None and self.scales.size > 0

    def values(self) -> np.ndarray:
        """The stored values of a constant tensor, in its own dtype."""
        if not self.is_constant:
            raise ValueError(f"tensor {self.name} has no constant data")
        return np.frombuffer(self.data.tobytes(), dtype=self.dtype).reshape(self.shape)

    def dequantized(self) -> np.ndarray:
        """Real values of a constant: `(q - zero_point) * scale`, per channel where quantized per channel."""
        v = self.values().astype(np.float64)
        if not self.quantized:
            return v
        shape = [1] * v.ndim
        if self.scales.size > 1:
            shape[self.quantized_dimension] = self.scales.size
        return (v - self.zero_points.reshape(shape)) * self.scales.reshape(shape)


@dataclass(frozen=True)
class Op:
    index: int
    name: str  # builtin name (CONV_2D) or the custom code (FlexMatrixDeterminant)
    custom: bool
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]


class Graph:
    """The main subgraph of a `.tflite` model."""

    def __init__(self, data: bytes):
        if len(data) < 8 or data[4:8] != b"TFL3":
            raise NotTfliteError("not a TFLite flatbuffer (no TFL3 identifier)")
        try:
            model = flatbuffer_utils.read_model_from_bytearray(bytearray(data))
        except Exception as exc:  # a damaged flatbuffer raises anything from struct to IndexError
            raise NotTfliteError(f"damaged TFLite flatbuffer ({exc})") from exc
        if not model.subgraphs:
            raise NotTfliteError("TFLite file has no subgraph")
        self.n_subgraphs = len(model.subgraphs)
        sub = model.subgraphs[0]
        self.tensors = [self._tensor(i, t, model.buffers) for i, t in enumerate(sub.tensors)]
        self.ops = []
        for i, op in enumerate(sub.operators or []):
            code = model.operatorCodes[op.opcodeIndex]
            builtin = max(code.builtinCode, code.deprecatedBuiltinCode)
            custom = builtin == schema.BuiltinOperator.CUSTOM
            name = code.customCode.decode() if custom and code.customCode else _OP_NAMES.get(builtin, f"OP_{builtin}")
            self.ops.append(Op(i, name, custom, tuple(op.inputs), tuple(op.outputs)))
        self.inputs = tuple(sub.inputs)
        self.outputs = tuple(sub.outputs)

    @staticmethod
    def _tensor(index: int, t, buffers) -> Tensor:
        data = buffers[t.buffer].data if t.buffer < len(buffers) else None
        q = t.quantization
        scales = np.asarray(q.scale, dtype=np.float64) if q is not None and q.scale is not None else None
        zps = np.asarray(q.zeroPoint, dtype=np.int64) if q is not None and q.zeroPoint is not None else None
        sig = tuple(int(d) for d in t.shapeSignature) if t.shapeSignature is not None else None
        return Tensor(
            index=index,
            name=t.name.decode() if isinstance(t.name, bytes) else str(t.name),
            dtype=_NUMPY_DTYPES.get(_TYPE_NAMES.get(t.type, ""), "uint8"),
            shape=tuple(int(d) for d in t.shape) if t.shape is not None else (),
            shape_signature=sig,
            data=np.asarray(data, dtype=np.uint8) if data is not None and len(data) else None,
            scales=scales,
            zero_points=zps,
            quantized_dimension=int(q.quantizedDimension) if q is not None else 0,
            is_variable=bool(t.isVariable),
        )

    @cached_property
    def _producer(self) -> dict[int, Op]:
        return {out: op for op in self.ops for out in op.outputs}

    def op_names(self) -> list[str]:
        """Distinct op names in execution order."""
        return list(dict.fromkeys(op.name for op in self.ops))

    def weights(self) -> list[tuple[Op, Tensor]]:
        """The weight tensor of each conv / fully-connected op, looking through a DEQUANTIZE of a constant
        (float16 and some hybrid models store weights that way)."""
        found = []
        for op in self.ops:
            if op.name not in WEIGHT_OPS or len(op.inputs) < 2 or op.inputs[1] < 0:
                continue
            t = self.tensors[op.inputs[1]]
            if not t.is_constant:
                src = self._producer.get(t.index)
                if src is not None and src.name == "DEQUANTIZE" and self.tensors[src.inputs[0]].is_constant:
                    t = self.tensors[src.inputs[0]]
                else:
                    continue
            found.append((op, t))
        return found

    def weight_sparsity(self) -> float:
        """Fraction of exactly-zero real values over all conv / fully-connected weights."""
        zeros = total = 0
        for _, t in self.weights():
            v = t.dequantized()
            zeros += int(np.count_nonzero(v == 0))
            total += v.size
        return zeros / total if total else 0.0

    def unique_weights_per_channel(self, op: Op, t: Tensor) -> list[int]:
        """Distinct stored values in each output channel of a weight tensor (clustering check)."""
        axis = WEIGHT_OPS[op.name] if t.values().ndim > WEIGHT_OPS[op.name] else 0
        v = np.moveaxis(t.values(), axis, 0)
        return [int(np.unique(ch).size) for ch in v]

    def macs(self) -> int:
        """Multiply-accumulates of one inference (batch 1) over conv, depthwise, fully-connected and
        transpose-conv ops; element-wise ops are not counted."""
        total = 0
        for op in self.ops:
            if op.name not in WEIGHT_OPS or len(op.inputs) < 2:
                continue
            w = self.tensors[op.inputs[1]]
            out = self.tensors[op.outputs[0]]
            if op.name == "TRANSPOSE_CONV":  # inputs: output_shape, weights, input
                src = self.tensors[op.inputs[2]]
                total += int(np.prod(src.shape)) * int(np.prod(w.shape[:3]))
                continue
            out_elems = int(np.prod(out.shape)) if out.shape else 1
            if op.name == "CONV_2D":
                total += out_elems * int(np.prod(w.shape[1:]))
            elif op.name == "DEPTHWISE_CONV_2D":
                total += out_elems * int(np.prod(w.shape[1:3]))
            elif op.name == "CONV_3D":
                total += out_elems * int(np.prod(w.shape[:4]))
            else:  # FULLY_CONNECTED: weights [units, in]
                total += out_elems * int(w.shape[-1])
        return total

    def peak_activation_bytes(self) -> int:
        """Peak bytes of non-constant tensors alive at once when ops run in order: each tensor lives from
        the op that produces it (graph inputs: from the start) to its last consumer (graph outputs: to the
        end), which is how TFLite's arena planner shares memory. Kernel scratch buffers are not counted."""
        n = len(self.ops)
        first: dict[int, int] = {i: 0 for i in self.inputs}
        last: dict[int, int] = {i: n for i in self.outputs}
        for op in self.ops:
            for t in op.outputs:
                first.setdefault(t, op.index)
            for t in op.inputs:
                if t >= 0:
                    last[t] = max(last.get(t, op.index), op.index)
        live = np.zeros(n + 1, dtype=np.int64)
        for t_index, start in first.items():
            t = self.tensors[t_index]
            if t.is_constant:
                continue
            end = n if t.is_variable else last.get(t_index, start)
            live[start : end + 1] += t.nbytes
        return int(live.max()) if live.size else 0

    def activation_dtypes(self) -> set[str]:
        return {t.dtype for t in self.tensors if not t.is_constant}


def read_graph(data: bytes) -> Graph:
    return Graph(data)
