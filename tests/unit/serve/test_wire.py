"""agent.serve.wire.read_predict: the fast socket's Predict frames read in place must mean exactly what
protobuf's parser makes of them, and leave to that parser whatever they do not expect."""

from __future__ import annotations

import numpy as np
import pytest

from agent.client import encode_predict
from agent.runtime.errors import InvalidInput
from agent.serve import wire
from edgefleet.v1 import inference_pb2


def as_parsed(framed: wire.FramedPredict) -> tuple:
    return framed.model, [(t.name, t.shape, t.dtype, bytes(t.data)) for t in framed.tensors]


def as_protobuf(body: bytes) -> tuple:
    request = inference_pb2.PredictRequest.FromString(body)
    return request.model, [(t.name, tuple(t.shape), t.dtype, t.data) for t in request.inputs]


T = inference_pb2.Tensor
BODIES = {
    "client-encoded image": b"".join(bytes(p) for p in encode_predict(
        {"input": np.arange(96 * 96 * 3, dtype=np.float32).reshape(1, 96, 96, 3)}, model="mobilenet")),
    "two tensors, no model": inference_pb2.PredictRequest(inputs=[
        T(name="a", shape=[2, 3], dtype="float32", data=bytes(24)),
        T(name="b", shape=[1], dtype="int8", data=b"\x05")]).SerializeToString(),
    "unnamed tensor, empty dtype": inference_pb2.PredictRequest(inputs=[T(shape=[1, 2], data=bytes(8))]).SerializeToString(),
    "negative and large dimensions": inference_pb2.PredictRequest(inputs=[
        T(name="x", shape=[-1, 300, 2**40], dtype="float32")]).SerializeToString(),
    "non-ASCII names": inference_pb2.PredictRequest(model="modèle", inputs=[T(name="entrée")]).SerializeToString(),
    "empty tensor": inference_pb2.PredictRequest(inputs=[T()]).SerializeToString(),
    "empty message": b"",
    # A repeated field may come in several packed runs: they concatenate.
    "shape in two runs": b"\x12\x08" + b"\x12\x02\x01\x02" + b"\x12\x02\x03\x04",
}


@pytest.mark.parametrize("body", BODIES.values(), ids=BODIES.keys())
def test_read_in_place_equals_protobuf(body: bytes) -> None:
    framed = wire.read_predict(bytearray(body))
    assert framed is not None
    assert as_parsed(framed) == as_protobuf(body)


LEFT_TO_PROTOBUF = {
    "unknown request field": b"\x1a\x01x",
    "model twice": b"\x0a\x01a\x0a\x01b",
    "tensor name twice": b"\x12\x06\x0a\x01a\x0a\x01b",
    "tensor data twice": b"\x12\x06\x22\x01a\x22\x01b",
    "unknown tensor field": b"\x12\x02\x28\x01",
    "unpacked shape entry": b"\x12\x02\x10\x03",
    "length past the end": b"\x12\x05\x0a\x01",
    "invalid UTF-8": b"\x0a\x01\xff",
    "varint cut short": b"\x12\x80",
}


@pytest.mark.parametrize("body", LEFT_TO_PROTOBUF.values(), ids=LEFT_TO_PROTOBUF.keys())
def test_anything_unexpected_is_left_to_protobuf(body: bytes) -> None:
    assert wire.read_predict(body) is None


def test_arrays_are_read_only_views_of_the_frame() -> None:
    x = np.arange(12, dtype=np.float32).reshape(1, 3, 4)
    frame = bytearray(b"".join(bytes(p) for p in encode_predict({"x": x})))
    arrays = wire.read_predict(frame).decode(["x"])
    np.testing.assert_array_equal(arrays["x"], x)
    assert not arrays["x"].flags.writeable
    frame[-4:] = np.float32(99).tobytes()  # the same memory: no copy was made
    assert arrays["x"][0, 2, 3] == 99


def test_decode_checks_as_decode_inputs_does() -> None:
    body = inference_pb2.PredictRequest(inputs=[T(name="x", shape=[2], dtype="float32", data=bytes(4))]).SerializeToString()
    with pytest.raises(InvalidInput) as framed:
        wire.read_predict(body).decode(["x"])
    with pytest.raises(InvalidInput) as parsed:
        wire.decode_inputs(inference_pb2.PredictRequest.FromString(body).inputs, ["x"])
    assert str(framed.value) == str(parsed.value) and "'x'" in str(framed.value)
    twice = inference_pb2.PredictRequest(inputs=[T(name="x", shape=[1], dtype="float32", data=bytes(4))] * 2).SerializeToString()
    with pytest.raises(InvalidInput, match="sent twice"):
        wire.read_predict(twice).decode(["x"])
    unnamed = inference_pb2.PredictRequest(inputs=[T(shape=[1], dtype="float32", data=bytes(4))]).SerializeToString()
    with pytest.raises(InvalidInput, match="without a name"):
        wire.read_predict(unnamed).decode(["a", "b"])
