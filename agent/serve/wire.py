"""Tensors on the Inference wire: `edgefleet.v1.Tensor` (name, shape, numpy dtype name, raw little-endian
C-order bytes) to numpy arrays and back.

The fast socket's Predict frames are read by `read_predict` without the protobuf runtime: the tensors'
data stay views of the connection's receive buffer (no copy at all before the interpreter's own), which
on a 110 kB image saves two copies and two allocations per request. Anything that reader does not
expect (an unknown field, a field twice, a non-canonical encoding) goes to the protobuf parser instead,
so both read the same messages the same way.

Only the wire is checked here (a known dtype, a sane shape, as many bytes as shape × itemsize, no name
twice); whether the arrays fit the model (names, shapes, dtypes) is LoadedModel's check, which names
the tensor and what it expected. Decoding copies the data once (protobuf hands out a new bytes object on
every read of a bytes field); the arrays are read-only views of that copy.
"""

from __future__ import annotations

import math
from typing import Iterable, Mapping, NamedTuple, Sequence

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
    # every read of a bytes field copies it (110 kB for a 96×96 float image): read once
    return _array(name, tensor.dtype, tuple(tensor.shape), tensor.data)


def _array(name: str, dtype_name: str, shape: tuple[int, ...], data: bytes | memoryview) -> np.ndarray:
    dtype_name = dtype_name or DEFAULT_DTYPE
    dtype = _LITTLE.get(dtype_name)
    if dtype is None:
        raise InvalidInput(f"input {name!r}: unknown dtype {dtype_name!r}; send one of {', '.join(WIRE_DTYPES)}")
    if any(d < 0 for d in shape):
        raise InvalidInput(f"input {name!r}: shape {_dims(shape)} has a negative dimension")
    expected = math.prod(shape) * dtype.itemsize
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
        name = input_name(tensor.name, input_names, arrays)
        arrays[name] = decode_tensor(tensor, name)
    return arrays


def input_name(name: str, input_names: Sequence[str], seen: dict[str, np.ndarray]) -> str:
    """The input a request's tensor is for: its name, or the model's only input when it has none."""
    if not name:
        if len(input_names) != 1:
            raise InvalidInput("a tensor without a name; the model's inputs are "
                               + ", ".join(repr(n) for n in input_names))
        name = input_names[0]
    if name in seen:
        raise InvalidInput(f"input {name!r} sent twice")
    return name


# -- the fast socket's Predict frames, read in place -------------------------------------------------


class WireTensor(NamedTuple):
    name: str
    shape: tuple[int, ...]
    dtype: str
    data: memoryview      # a view of the frame: valid while the frame's buffer is


class FramedPredict:
    """A PredictRequest read in place from a frame (`read_predict`): `model`, and the tensors, whose
    arrays are views of the frame's buffer. Valid only while that buffer is (the fast server keeps it
    until the reply is built; nothing on the request path keeps an input array beyond the call)."""

    __slots__ = ("model", "tensors")

    def __init__(self, model: str, tensors: list[WireTensor]) -> None:
        self.model = model
        self.tensors = tensors

    def decode(self, input_names: Sequence[str]) -> dict[str, np.ndarray]:
        """Named arrays, with decode_inputs' checks and messages."""
        arrays: dict[str, np.ndarray] = {}
        for tensor in self.tensors:
            name = input_name(tensor.name, input_names, arrays)
            arrays[name] = _array(name, tensor.dtype, tensor.shape, tensor.data)  # read-only views
        return arrays


class _Unexpected(Exception):
    """Something read_predict leaves to the protobuf parser."""


def _varint_at(buf: memoryview, pos: int, end: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= end or shift > 63:
            raise _Unexpected()
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7


def _length_at(buf: memoryview, pos: int, end: int) -> tuple[int, int]:
    """A length prefix; one byte in the common case, without a call."""
    if pos < end and buf[pos] < 0x80:
        return buf[pos], pos + 1
    return _varint_at(buf, pos, end)


def _text(buf: memoryview, start: int, end: int) -> str:
    try:
        return str(buf[start:end], "utf-8")
    except UnicodeDecodeError:
        raise _Unexpected() from None  # the parser's DecodeError names it


def _read_tensor(buf: memoryview, pos: int, end: int) -> WireTensor:
    name = dtype = ""
    shape: list[int] = []
    data = None
    seen = 0  # bit per field: a second name, dtype or data goes to the parser (its last-wins rule)
    while pos < end:
        key = buf[pos]
        pos += 1
        if key & 7 != 2 or key > 0x22:  # not length-delimited (an unpacked shape, rare), or unknown
            raise _Unexpected()
        length, pos = _length_at(buf, pos, end)
        stop = pos + length
        if stop > end:
            raise _Unexpected()
        if key == 0x12:  # shape, packed
            at = pos
            while at < stop:
                value = buf[at]
                if value < 0x80:
                    at += 1
                else:
                    value, at = _varint_at(buf, at, stop)
                    if value >= 1 << 63:  # int64 on the wire
                        value -= 1 << 64
                shape.append(value)
        else:
            bit = 1 << (key >> 3)
            if seen & bit:
                raise _Unexpected()
            seen |= bit
            if key == 0x22:
                data = buf[pos:stop]
            elif key == 0x0A:
                name = _text(buf, pos, stop)
            elif key == 0x1A:
                dtype = _text(buf, pos, stop)
            else:
                raise _Unexpected()
        pos = stop
    return WireTensor(name, tuple(shape), dtype, data if data is not None else buf[0:0])


def read_predict(body: bytes | bytearray | memoryview) -> FramedPredict | None:
    """A PredictRequest's fields read in place, or None when the message holds anything else than
    model and inputs(name, shape, dtype, data) once each (then parse it with protobuf)."""
    buf = memoryview(body).toreadonly()  # arrays made from it are read-only, as decode_inputs' are
    if buf.format != "B":
        buf = buf.cast("B")
    pos, end = 0, len(buf)
    model: str | None = None
    tensors: list[WireTensor] = []
    try:
        while pos < end:
            key = buf[pos]
            length, pos = _length_at(buf, pos + 1, end)
            stop = pos + length
            if stop > end:
                raise _Unexpected()
            if key == 0x12:
                tensors.append(_read_tensor(buf, pos, stop))
            elif key == 0x0A and model is None:
                model = _text(buf, pos, stop)
            else:
                raise _Unexpected()
            pos = stop
    except _Unexpected:
        return None
    return FramedPredict(model or "", tensors)


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
