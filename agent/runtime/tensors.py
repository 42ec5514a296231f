"""A model's input and output tensors: their names, shapes, dtypes and quantization, and the checks and
conversions between what an app sends (float arrays) and what the interpreter takes.

Naming rule (the coordinator must describe models the same way: call `tensor_specs`): when the model has
exactly one signature (every TF 2 / Keras conversion has `serving_default`), tensors are named by it
("features", "logits"); otherwise by their tensor names ("serving_default_features:0").
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from agent.runtime.errors import InvalidInput
from edgefleet.v1 import manifest_pb2

_QUANTIZED_DTYPES = (np.int8, np.uint8, np.int16)


@dataclass(frozen=True)
class TensorBinding:
    name: str
    index: int                    # tensor index in the interpreter's primary subgraph
    dtype: np.dtype
    shape: tuple[int, ...]        # the shape signature: -1 where a dimension is dynamic
    scale: float = 0.0            # 0 when not quantized (or quantized per axis, see `per_axis`)
    zero_point: int = 0
    per_axis: bool = False        # per-axis quantized I/O: only raw values in the tensor's dtype

    @functools.cached_property  # read on every request: numpy dtype comparisons are not free
    def quantized(self) -> bool:
        return self.scale > 0 and any(self.dtype == d for d in _QUANTIZED_DTYPES)

    def spec(self) -> manifest_pb2.TensorSpec:
        return manifest_pb2.TensorSpec(name=self.name, shape=list(self.shape), dtype=self.dtype.name,
                                       scale=self.scale, zero_point=self.zero_point)

    def shape_text(self) -> str:
        return "[" + ", ".join("?" if d < 0 else str(d) for d in self.shape) + "]"

    # -- app values -> interpreter ------------------------------------------------------------

    def prepare(self, value: Any) -> np.ndarray:
        """Check `value` against this input and convert it to what the interpreter takes.

        Float values are quantized for int8/uint8/int16 inputs (q = round(x / scale) + zero_point,
        clipped); values already in the tensor's dtype pass unchanged. A missing leading batch
        dimension of 1 is added ([8, 8, 1] for a [1, 8, 8, 1] input).
        """
        try:
            array = np.asarray(value)
        except (ValueError, TypeError) as exc:  # ragged nested lists
            raise InvalidInput(f"input {self.name!r}: not an array: {exc}") from None
        array = self._fit_shape(array)
        if array.dtype == self.dtype:
            return array  # already what the tensor holds (for a quantized input: raw quantized values)
        kind = array.dtype.kind
        if self.dtype.kind == "f":
            if kind != "f":
                raise InvalidInput(f"input {self.name!r}: expected float values ({self.dtype.name}), got {array.dtype.name}")
            return array.astype(self.dtype, copy=False)
        if self.quantized:
            if kind != "f":
                raise InvalidInput(
                    f"input {self.name!r}: expected float values (quantized here to {self.dtype.name} with scale "
                    f"{self.scale:.6g} and zero point {self.zero_point}) or {self.dtype.name} values, got {array.dtype.name}")
            if not np.isfinite(array).all():
                raise InvalidInput(f"input {self.name!r}: NaN or infinite values cannot be quantized to {self.dtype.name}")
            info = np.iinfo(self.dtype)
            q = np.round(array / self.scale) + self.zero_point
            return np.clip(q, info.min, info.max).astype(self.dtype)
        # Plain integer or bool tensors (token ids, masks): integers that fit, nothing else.
        if self.dtype.kind in "iu" and kind in "iu":
            info = np.iinfo(self.dtype)
            if array.size and (array.min() < info.min or array.max() > info.max):
                raise InvalidInput(f"input {self.name!r}: values outside the {self.dtype.name} range "
                                   f"[{info.min}, {info.max}]")
            return array.astype(self.dtype)
        if self.per_axis:
            raise InvalidInput(f"input {self.name!r} is quantized per axis: send {self.dtype.name} values, "
                               f"got {array.dtype.name}")
        raise InvalidInput(f"input {self.name!r}: expected {self.dtype.name} values, got {array.dtype.name}")

    def _fit_shape(self, array: np.ndarray) -> np.ndarray:
        if array.shape == self.shape or _matches(array.shape, self.shape):  # the first: a static shape, sent whole
            return array
        implied = len(self.shape) >= 1 and self.shape[0] in (1, -1)
        if implied and _matches(array.shape, self.shape[1:]):
            return array.reshape((1,) + array.shape)
        hint = f" (or [{', '.join('?' if d < 0 else str(d) for d in self.shape[1:])}] with the batch implied)" if implied else ""
        raise InvalidInput(f"input {self.name!r}: expected shape {self.shape_text()}{hint}, "
                           f"got [{', '.join(str(d) for d in array.shape)}]")

    # -- interpreter -> app -------------------------------------------------------------------

    def to_float(self, array: np.ndarray) -> np.ndarray:
        """Dequantize a quantized output to float32: x = (q - zero_point) * scale."""
        if not self.quantized:
            return array
        return (array.astype(np.float32) - np.float32(self.zero_point)) * np.float32(self.scale)


def _matches(shape: tuple[int, ...], signature: tuple[int, ...]) -> bool:
    return len(shape) == len(signature) and all(s < 0 or s == d for d, s in zip(shape, signature))


def _binding(name: str, details: Mapping[str, Any]) -> TensorBinding:
    params = details.get("quantization_parameters") or {}
    scales = np.asarray(params.get("scales", ()), dtype=np.float64)
    zero_points = np.asarray(params.get("zero_points", ()), dtype=np.int64)
    signature = details.get("shape_signature")
    shape = tuple(int(d) for d in (signature if signature is not None and len(signature) else details["shape"]))
    per_axis = scales.size > 1
    if scales.size == 1:
        scale, zero_point = float(scales[0]), int(zero_points[0]) if zero_points.size else 0
    elif per_axis:
        scale, zero_point = 0.0, 0
    else:  # runtimes without quantization_parameters
        scale, zero_point = details.get("quantization", (0.0, 0))
    return TensorBinding(name=name, index=int(details["index"]), dtype=np.dtype(details["dtype"]),
                         shape=shape, scale=float(scale), zero_point=int(zero_point), per_axis=per_axis)


def _signature_names(interpreter: Any) -> tuple[dict[int, str], dict[int, str]] | None:
    """Tensor index -> signature name for inputs and outputs, when one signature covers the primary subgraph."""
    try:
        if len(interpreter.get_signature_list()) != 1:
            return None
        runner = interpreter.get_signature_runner()
        # A signature on another subgraph has its own tensor indices; the primary one is 0.
        if getattr(runner, "_subgraph_index", 0) != 0:
            return None
        inputs = {int(d["index"]): name for name, d in runner.get_input_details().items()}
        outputs = {int(d["index"]): name for name, d in runner.get_output_details().items()}
    except (AttributeError, ValueError, RuntimeError, KeyError):
        return None  # an older runtime without signature runners: tensor names it is
    return inputs, outputs


def bindings(interpreter: Any) -> tuple[list[TensorBinding], list[TensorBinding]]:
    """Inputs and outputs of an allocated interpreter, named by the rule in the module docstring."""
    in_details = interpreter.get_input_details()
    out_details = interpreter.get_output_details()
    names = _signature_names(interpreter)
    if names is not None:
        in_names, out_names = names
        if set(in_names) != {int(d["index"]) for d in in_details} or set(out_names) != {int(d["index"]) for d in out_details}:
            names = None
    if names is None:
        in_names = {int(d["index"]): d["name"] for d in in_details}
        out_names = {int(d["index"]): d["name"] for d in out_details}
    return ([_binding(in_names[int(d["index"])], d) for d in in_details],
            [_binding(out_names[int(d["index"])], d) for d in out_details])


def tensor_specs(interpreter: Any) -> tuple[list[manifest_pb2.TensorSpec], list[manifest_pb2.TensorSpec]]:
    """The manifest's `inputs` / `outputs` for a model, as the agent will name and check them."""
    inputs, outputs = bindings(interpreter)
    return [b.spec() for b in inputs], [b.spec() for b in outputs]
