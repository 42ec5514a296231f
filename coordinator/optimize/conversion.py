"""Keras / SavedModel → `.tflite` in each numeric mode, with a batch-1 static input signature.

Devices run one sample per invoke, and static shapes are what the Edge TPU compiler and XNNPACK want, so
every variant is converted from a concrete function whose input is `[1, ...]`.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from coordinator.optimize.errors import ModelError
from coordinator.optimize.graph import Graph

MODES = ("fp32", "float16", "dynamic", "int8", "int16x8")


class UnsupportedOpsError(ModelError):
    """The model needs TensorFlow ops that the LiteRT builtin op set does not have."""

    def __init__(self, ops: list[str]):
        self.ops = ops
        super().__init__(
            "the model needs TensorFlow ops outside the LiteRT builtin set (they would need SELECT_TF_OPS, "
            f"which devices do not have): {', '.join(ops)}"
        )


class ConversionError(RuntimeError):
    """The converter failed for another reason; the message keeps its error lines."""


def _concrete_function(source: Any) -> tuple[Any, Any]:
    """(concrete function with a [1, ...] input, object that keeps its variables alive)."""
    if isinstance(source, (str, Path)):
        loaded = tf.saved_model.load(str(source))
        sig = loaded.signatures["serving_default"]
        name, spec = next(iter(sig.structured_input_signature[1].items()))
        fixed = tf.TensorSpec([1, *spec.shape[1:]], spec.dtype)
        return tf.function(lambda x: sig(**{name: x})).get_concrete_function(fixed), loaded
    model = source
    spec = model.inputs[0]
    fixed = tf.TensorSpec([1, *spec.shape[1:]], spec.dtype)
    return tf.function(lambda x: model(x, training=False)).get_concrete_function(fixed), model


def convert(source: Any, mode: str = "fp32", *, representative: np.ndarray | None = None) -> bytes:
    """Convert a tf-keras model or a SavedModel directory. int8 has int8 input and output; int8 and
    int16x8 calibrate on `representative` rows (100-500 training samples)."""
    if mode not in MODES:
        raise ValueError(f"unknown conversion mode {mode!r}; expected one of {', '.join(MODES)}")
    fn, owner = _concrete_function(source)
    data = _convert(fn, owner, mode, representative)
    if _variable_ops(data):
        # Keras 3 models (and some SavedModels) come out of from_concrete_functions reading their weights
        # from resource variables that the file never initializes: the device would compute on whatever
        # memory the arena holds. Freeze the variables into constants and convert again.
        from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

        data = _convert(convert_variables_to_constants_v2(fn), None, mode, representative)
        left = _variable_ops(data)
        if left:
            raise ConversionError(f"{mode} conversion left resource-variable ops ({', '.join(left)}) after freezing: "
                                  "the weights would not be in the file")
    return data


VARIABLE_OPS = ("VAR_HANDLE", "READ_VARIABLE", "ASSIGN_VARIABLE")


def _variable_ops(data: bytes) -> list[str]:
    return [name for name in Graph(data).op_names() if name in VARIABLE_OPS]


def _convert(fn: Any, owner: Any, mode: str, representative: np.ndarray | None) -> bytes:
    converter = tf.lite.TFLiteConverter.from_concrete_functions([fn], owner) if owner is not None \
        else tf.lite.TFLiteConverter.from_concrete_functions([fn])
    if mode != "fp32":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if mode == "float16":
        converter.target_spec.supported_types = [tf.float16]
    if mode in ("int8", "int16x8"):
        if representative is None or len(representative) == 0:
            raise ValueError(f"{mode} conversion needs representative rows")
        rows = np.asarray(representative, dtype=fn.inputs[0].dtype.as_numpy_dtype)

        def gen():
            for i in range(len(rows)):
                yield [rows[i : i + 1]]

        converter.representative_dataset = gen
    if mode == "int8":
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    if mode == "int16x8":
        converter.target_spec.supported_ops = [tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]
    try:
        return bytes(converter.convert())
    except Exception as exc:  # ConverterError and friends; the text says which ops
        message = str(exc)
        ops = unsupported_ops(message)
        if ops:
            raise UnsupportedOpsError(ops) from exc
        raise ConversionError(f"{mode} conversion failed: {short_error(message)}") from exc


def plain_convert(model: Any) -> bytes:
    """The plain converter with no options (dynamic batch): the baseline benchmarks compare against."""
    return bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())


def unsupported_ops(message: str) -> list[str]:
    ops: list[str] = []
    for pattern in (r"TF Select ops: ([^\n]+)", r"Flex ops: ([^\n]+)", r"Custom ops: ([^\n]+)"):
        for m in re.finditer(pattern, message):
            ops += [o.strip().removeprefix("Flex") for o in m.group(1).split(",") if o.strip()]
    ops += re.findall(r"'tf\.(\w+)' op is neither a custom op nor a flex op", message)
    return list(dict.fromkeys(ops))


def short_error(message: str, limit: int = 400) -> str:
    """The converter's own error lines without the MLIR location dumps."""
    lines = [l.strip() for l in message.splitlines() if "error" in l.lower() and "loc(" not in l]
    text = "; ".join(dict.fromkeys(lines)) or message.strip().splitlines()[0] if message.strip() else "unknown error"
    return text[:limit]
