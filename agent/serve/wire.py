"""Tensors on the Inference wire: `edgefleet.v1.Tensor` (name, shape, numpy dtype name, raw little-endian
C-order bytes) to numpy arrays and back.

Only the wire is checked here (a known dtype, a sane shape, as many bytes as shape × itemsize, no name
twice); whether the arrays fit the model (names, shapes, dtypes) is LoadedModel's check, which names
the tensor and what it expected. Decoding copies the data once (protobuf hands out a new bytes object on
every read of a bytes field); the arrays are read-only views of that copy.
"""

from __future__ import annotations

import math
from typing import Iterable, Mapping, Sequence

import numpy as np

from agent.runtime.errors import InvalidInput
from edgefleet.v1 import inference_pb2

# What apps may send: floats (the normal case: the agent quantizes), and raw integer / bool tensors for
# models that take them (token ids, masks, already-quantized values).
WIRE_DTYPES = ("float32", "float16", "float64", "int8", "uint8", "int16", "int32", "int64", "bool")
DEFAULT_DTYPE = "float32"  # an app that leaves dtype empty sends float32
_LITTLE = {name: np.dtype(name).newbyteorder("<") for name in WIRE_DTYPES}
_NAMES = {np.dtype(name): name for name in WIRE_DTYPES}  # dtype.name is slow enough to matter per request
_NATIVE_LITTLE = np.dtype("<f4").isnative


def _dims(shape: Sequence[int]) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


def decode_tensor(tensor: inference_pb2.Tensor, name: str) -> np.ndarray:
    """The array a Tensor carries; raises InvalidInput naming the tensor when the wire fields disagree."""
    dtype_name = tensor.dtype or DEFAULT_DTYPE
    dtype = _LITTLE.get(dtype_name)
    if dtype is None:
        raise InvalidInput(f"input {name!r}: unknown dtype {dtype_name!r}; send one of {', '.join(WIRE_DTYPES)}")
    shape = tuple(tensor.shape)
    if any(d < 0 for d in shape):
        raise InvalidInput(f"input {name!r}: shape {_dims(shape)} has a negative dimension")
    expected = math.prod(shape) * dtype.itemsize
    data = tensor.data  # every read of a bytes field copies it (110 kB for a 96×96 float image): read once
    if len(data) != expected:
        raise InvalidInput(
            f"input {name!r}: shape {_dims(shape)} of {dtype_name} needs {expected} bytes of data, got {len(data)}")
    array = np.frombuffer(data, dtype=dtype).reshape(shape)
    # Same values in the machine's byte order (a no-op on little-endian hosts, all edgefleet targets).
    return array if dtype.isnative else array.astype(dtype.newbyteorder("="))


def decode_inputs(tensors: Iterable[inference_pb2.Tensor], input_names: Sequence[str]) -> dict[str, np.ndarray]:
    """Named arrays from a PredictRequest. A model with one input also takes one tensor without a name."""
    arrays: dict[str, np.ndarray] = {}
    for tensor in tensors:
        name = tensor.name
        if not name:
            if len(input_names) != 1:
                raise InvalidInput("a tensor without a name; the model's inputs are "
                                   + ", ".join(repr(n) for n in input_names))
            name = input_names[0]
        if name in arrays:
            raise InvalidInput(f"input {name!r} sent twice")
        arrays[name] = decode_tensor(tensor, name)
    return arrays


def encode_tensor(name: str, array: np.ndarray) -> inference_pb2.Tensor:
    array = np.asarray(array)
    dtype = array.dtype
    if _NATIVE_LITTLE and dtype.isnative:
        data = array.tobytes()  # C order whatever the array's layout
    else:
        data = np.ascontiguousarray(array, dtype=dtype.newbyteorder("<")).tobytes()
    return inference_pb2.Tensor(name=name, shape=array.shape, dtype=_NAMES.get(dtype) or dtype.name, data=data)


def encode_outputs(outputs: Mapping[str, np.ndarray]) -> list[inference_pb2.Tensor]:
    return [encode_tensor(name, array) for name, array in outputs.items()]


def tensor_from_array(name: str, array: np.ndarray) -> inference_pb2.Tensor:
    """For clients (tests, benchmarks, example apps): the Tensor an app sends for `array`."""
    return encode_tensor(name, array)


def array_from_tensor(tensor: inference_pb2.Tensor) -> np.ndarray:
    """For clients: the array a response Tensor carries."""
    return decode_tensor(tensor, tensor.name)
