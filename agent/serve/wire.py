"""Tensors on the Inference wire: `edgefleet.v1.Tensor` (name, shape, numpy dtype name, raw little-endian
C-order bytes) to numpy arrays and back.

Only the wire is checked here (a known dtype, a sane shape, as many bytes as shape × itemsize, no name
twice); whether the arrays fit the model (names, shapes, dtypes) is LoadedModel's check, which names
the tensor and what it expected. Decoding copies the data once (protobuf hands out a new bytes object on
every read of a bytes field); the arrays are read-only views of that copy.

On the fast socket a Tensor may name a slice of a shared-memory region instead of carrying `data`
(agent.serve.regions): the array is then a view of the region, not copied until the interpreter takes
it, and a request may ask for its outputs to be written to a region (`outputs_to`).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Iterable, Mapping, Sequence

import numpy as np

from agent.runtime.errors import InvalidInput
from edgefleet.v1 import inference_pb2

if TYPE_CHECKING:
    from agent.serve.regions import Regions

# What apps may send: floats (the normal case: the agent quantizes), and raw integer / bool tensors for
# models that take them (token ids, masks, already-quantized values).
WIRE_DTYPES = ("float32", "float16", "float64", "int8", "uint8", "int16", "int32", "int64", "bool")
DEFAULT_DTYPE = "float32"  # an app that leaves dtype empty sends float32
_LITTLE = {name: np.dtype(name).newbyteorder("<") for name in WIRE_DTYPES}
_NAMES = {np.dtype(name): name for name in WIRE_DTYPES}  # dtype.name is slow enough to matter per request
_NATIVE_LITTLE = np.dtype("<f4").isnative


def _dims(shape: Sequence[int]) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


def decode_tensor(tensor: inference_pb2.Tensor, name: str, regions: Regions | None = None) -> np.ndarray:
    """The array a Tensor carries (in `data`, or in a slice of one of `regions`: the fast socket's
    connection); raises InvalidInput naming the tensor when the wire fields disagree."""
    dtype_name = tensor.dtype or DEFAULT_DTYPE
    dtype = _LITTLE.get(dtype_name)
    if dtype is None:
        raise InvalidInput(f"input {name!r}: unknown dtype {dtype_name!r}; send one of {', '.join(WIRE_DTYPES)}")
    shape = tuple(tensor.shape)
    if any(d < 0 for d in shape):
        raise InvalidInput(f"input {name!r}: shape {_dims(shape)} has a negative dimension")
    expected = math.prod(shape) * dtype.itemsize
    if tensor.HasField("shared"):
        if regions is None:
            raise InvalidInput(f"input {name!r}: shared memory is served on the fast socket only (regions are "
                               "registered per connection): send the bytes in data")
        if tensor.data:
            raise InvalidInput(f"input {name!r}: both data and a shared-memory slice; send one of them")
        data: bytes | memoryview = regions.read(tensor.shared, f"input {name!r}")
    else:
        data = tensor.data  # every read of a bytes field copies it (110 kB for a 96×96 float image): read once
    if len(data) != expected:
        raise InvalidInput(
            f"input {name!r}: shape {_dims(shape)} of {dtype_name} needs {expected} bytes of data, got {len(data)}")
    array = np.frombuffer(data, dtype=dtype).reshape(shape)
    # Same values in the machine's byte order (a no-op on little-endian hosts, all edgefleet targets).
    return array if dtype.isnative else array.astype(dtype.newbyteorder("="))


def decode_inputs(tensors: Iterable[inference_pb2.Tensor], input_names: Sequence[str],
                  regions: Regions | None = None) -> dict[str, np.ndarray]:
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
        arrays[name] = decode_tensor(tensor, name, regions)
    return arrays


def dtype_name(dtype: np.dtype) -> str:
    """Tensor.dtype for an array of `dtype`."""
    return _NAMES.get(dtype) or dtype.name


def wire_bytes(array: np.ndarray) -> bytes:
    """Tensor.data for `array`: little-endian, C order."""
    dtype = array.dtype
    if _NATIVE_LITTLE and dtype.isnative:
        return array.tobytes()  # C order whatever the array's layout
    return np.ascontiguousarray(array, dtype=dtype.newbyteorder("<")).tobytes()


def encode_tensor(name: str, array: np.ndarray) -> inference_pb2.Tensor:
    array = np.asarray(array)
    return inference_pb2.Tensor(name=name, shape=array.shape, dtype=dtype_name(array.dtype), data=wire_bytes(array))


def encode_outputs(outputs: Mapping[str, np.ndarray], regions: Regions | None = None,
                   to: inference_pb2.SharedSlice | None = None) -> list[inference_pb2.Tensor]:
    """Response tensors: the bytes in each Tensor, or (`to`: a slice of one of `regions`) written there one
    after another, each at a multiple of 64 bytes from the slice's start, the Tensors naming where."""
    if to is None:
        return [encode_tensor(name, array) for name, array in outputs.items()]
    if regions is None:
        raise InvalidInput("outputs_to: shared memory is served on the fast socket only; leave outputs_to unset")
    from agent.serve.regions import OUTPUT_ALIGNMENT

    view = regions.write(to, "outputs_to")
    tensors, at = [], 0
    for name, array in outputs.items():
        array = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<"))
        at = -(-at // OUTPUT_ALIGNMENT) * OUTPUT_ALIGNMENT
        if at + array.nbytes > len(view):
            raise InvalidInput(f"outputs_to: the slice's {len(view)} bytes cannot hold output {name!r} ({array.nbytes} "
                               f"bytes, from byte {at} of the slice)")
        np.frombuffer(view, np.uint8, array.nbytes, at)[...] = array.reshape(-1).view(np.uint8)
        where = inference_pb2.SharedSlice(region_id=to.region_id, offset=to.offset + at, length=array.nbytes)
        tensors.append(inference_pb2.Tensor(name=name, shape=array.shape, dtype=dtype_name(array.dtype),
                                            shared=where))
        at += array.nbytes
    return tensors


def tensor_from_array(name: str, array: np.ndarray) -> inference_pb2.Tensor:
    """For clients (tests, benchmarks, example apps): the Tensor an app sends for `array`."""
    return encode_tensor(name, array)


def array_from_tensor(tensor: inference_pb2.Tensor) -> np.ndarray:
    """For clients: the array a response Tensor carries."""
    return decode_tensor(tensor, tensor.name)
