"""Shared-memory tensors on the fast socket (agent.serve.regions, agent.serve.fast, agent.client): a client
registers a sealed memfd per connection, Predicts name slices of it; every bad region or slice is refused
with a message naming what was wrong, and the agent never maps something that could shrink under it.
Also the bounded spinning of both sides."""

from __future__ import annotations

import array
import fcntl
import mmap
import os
import socket
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

from agent.client import FRAME, InferenceError, LocalClient, Method, Status, encode_predict
from agent.runtime import LoadedModel
from agent.serve.fast import FastServer
from agent.serve.regions import Regions
from edgefleet.v1 import inference_pb2
from tests.unit.serve.test_fast import call, connect, manifest_for, read_frame, serve, sockdir, wait_for  # noqa: F401


def memfd(size: int, *, seal: bool = True, name: str = "test-region") -> int:
    fd = os.memfd_create(name, os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    os.ftruncate(fd, size)
    if seal:
        fcntl.fcntl(fd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_SHRINK)
    return fd


def register(sock: socket.socket, fd: int | None, name: str = "r") -> tuple[int, bytes]:
    body = inference_pb2.RegisterRegionRequest(name=name).SerializeToString()
    frame = FRAME.pack(len(body), Method.REGISTER_REGION) + body
    if fd is None:
        sock.sendall(frame)
    else:
        sock.sendmsg([frame], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [fd]).tobytes())])
    reply = read_frame(sock)
    assert reply is not None
    return reply


def region_id(sock: socket.socket, fd: int) -> int:
    status, body = register(sock, fd)
    assert status == Status.OK, body
    return inference_pb2.RegisterRegionResponse.FromString(body).region_id


def shared_request(region: int, offset: int, length: int, shape=(1, 4), **kw) -> inference_pb2.PredictRequest:
    where = inference_pb2.SharedSlice(region_id=region, offset=offset, length=length)
    return inference_pb2.PredictRequest(
        inputs=[inference_pb2.Tensor(name="features", shape=list(shape), dtype="float32", shared=where)], **kw)


def predict(sock: socket.socket, request: inference_pb2.PredictRequest) -> tuple[int, bytes]:
    return call(sock, Method.PREDICT, request.SerializeToString())


def maps_of(name: str) -> int:
    with open("/proc/self/maps") as maps:
        return sum(f"memfd:{name}" in line for line in maps)


def fds_of(name: str) -> int:
    count = 0
    for entry in os.listdir("/proc/self/fd"):
        try:
            count += f"memfd:{name}" in os.readlink(f"/proc/self/fd/{entry}")
        except OSError:
            pass
    return count


# -- the client uses it by itself -------------------------------------------------------------------


def test_local_client_sends_large_inputs_through_a_region(serve, models: Path, reference) -> None:
    w, b = reference
    agent = serve(LoadedModel.load(models / "float32.tflite"), manifest_for())
    client = agent.client(transport="fast", shared_memory_min_bytes=64)
    x = np.random.default_rng(0).normal(size=(500, 4)).astype(np.float32)  # 8 kB: above the threshold given
    for rows in (x, x[:2], x[::-1], x * 2):  # large, small (in the frame), a strided view, new values
        outputs, _, _ = client.predict({"features": rows})
        np.testing.assert_allclose(outputs["logits"], rows @ w + b, rtol=1e-4, atol=1e-4)
    assert client.shared_memory_off == "" and client._region is not None and client._region.region_id == 1
    bigger = np.ones((5000, 4), np.float32)  # outgrows the region: a larger one replaces it
    np.testing.assert_allclose(client.predict({"features": bigger})[0]["logits"], bigger @ w + b, rtol=1e-4, atol=1e-4)
    assert client._region.region_id == 2 and client._region.size >= bigger.nbytes
    assert len(agent.observer.predictions) == 5


def test_shared_memory_off_sends_the_bytes(serve, models: Path, reference) -> None:
    w, b = reference
    agent = serve(LoadedModel.load(models / "float32.tflite"), manifest_for())
    client = agent.client(transport="fast", shared_memory=False, shared_memory_min_bytes=1)
    x = np.ones((100, 4), np.float32)
    np.testing.assert_allclose(client.predict({"features": x})[0]["logits"], x @ w + b, rtol=1e-5)
    assert client._region is None


def test_int8_model_quantizes_inputs_from_a_region(serve, models: Path, reference) -> None:
    w, b = reference
    agent = serve(LoadedModel.load(models / "int8.tflite"), manifest_for())
    client = agent.client(transport="fast", shared_memory_min_bytes=1)
    x = np.array([[0.5, -0.25, 0.75, -0.9]], np.float32)
    outputs, _, _ = client.predict({"features": x})
    expected = x @ w + b
    np.testing.assert_allclose(outputs["logits"], expected, atol=3 * np.abs(expected).max() / 64)
    assert client._region is not None


def test_an_agent_without_shared_memory_gets_the_bytes(serve, models: Path, reference) -> None:
    w, b = reference
    agent = serve(LoadedModel.load(models / "float32.tflite"), manifest_for())
    del agent.fast._methods[Method.REGISTER_REGION]  # as an agent from before shared memory answers
    client = agent.client(transport="fast", shared_memory_min_bytes=1)
    x = np.ones((3, 4), np.float32)
    np.testing.assert_allclose(client.predict({"features": x})[0]["logits"], x @ w + b, rtol=1e-5)
    assert "UNIMPLEMENTED" in client.shared_memory_off and client._region is None
    np.testing.assert_allclose(client.predict({"features": x})[0]["logits"], x @ w + b, rtol=1e-5)


def test_the_region_is_registered_again_after_the_agent_restarts(serve, models: Path) -> None:
    agent = serve(LoadedModel.load(models / "float32.tflite"), manifest_for())
    client = agent.client(transport="fast", shared_memory_min_bytes=1)
    x = {"features": np.ones((1, 4), np.float32)}
    client.predict(x)
    agent.fast.stop(0)
    wait_for(lambda: agent.fast.connections == 0)
    agent.fast.start()
    assert client.predict(x)[0]["logits"].shape == (1, 3)
    assert client._region.region_id == 1  # ids are per connection: the new one starts over


@pytest.mark.parametrize("shared", [{"features": (3, 0)}, {"features": (1, 4096)}, {"a": (2, 64), "b": (2, 128)}])
@pytest.mark.parametrize("model", ["", "digits:3"])
def test_encode_predict_with_shared_tensors_is_the_protobuf_encoding(shared: dict, model: str) -> None:
    inputs = {name: np.arange(6, dtype=np.float32).reshape(2, 3) for name in shared}
    parts = encode_predict(inputs, model, shared)
    expected = inference_pb2.PredictRequest(model=model, inputs=[inference_pb2.Tensor(
        name=name, shape=[2, 3], dtype="float32",
        shared=inference_pb2.SharedSlice(region_id=shared[name][0], offset=shared[name][1], length=24)) for name in shared])
    assert b"".join(bytes(p) for p in parts) == expected.SerializeToString()


# -- the protocol, frame by frame -------------------------------------------------------------------


def test_a_slice_and_outputs_to_the_region(serve, models: Path, reference) -> None:
    w, b = reference
    agent = serve(LoadedModel.load(models / "float32.tflite"), manifest_for())
    fd = memfd(4096)
    memory = mmap.mmap(fd, 4096)
    x = np.array([[0.5, -1.0, 2.0, 0.25], [1.0, 0.0, -0.5, 3.0]], np.float32)
    memory[256:256 + x.nbytes] = x.tobytes()
    with connect(agent) as sock:
        region = region_id(sock, fd)
        out = inference_pb2.SharedSlice(region_id=region, offset=1000, length=100)
        status, body = predict(sock, shared_request(region, 256, x.nbytes, shape=x.shape, outputs_to=out))
        assert status == Status.OK, body
        (tensor,) = inference_pb2.PredictResponse.FromString(body).outputs
        assert tensor.data == b"" and tensor.shared.offset == 1000 and tensor.shared.length == 24
        written = np.frombuffer(memory, np.float32, 6, tensor.shared.offset).reshape(tensor.shape)
        np.testing.assert_allclose(written, x @ w + b, rtol=1e-5)
        small = inference_pb2.SharedSlice(region_id=region, offset=1000, length=20)
        status, body = predict(sock, shared_request(region, 256, x.nbytes, shape=x.shape, outputs_to=small))
        assert status == Status.INVALID_ARGUMENT and b"20 bytes cannot hold output 'logits' (24 bytes, from byte 0" in body
        outside = inference_pb2.SharedSlice(region_id=region, offset=4090, length=100)
        status, body = predict(sock, shared_request(region, 256, x.nbytes, shape=x.shape, outputs_to=outside))
        assert status == Status.INVALID_ARGUMENT and b"outputs_to: bytes 4090..4190 are outside region" in body
    del written
    memory.close()
    os.close(fd)


@pytest.mark.parametrize("offset, length, shape, message", [
    (4090, 16, (1, 4), "bytes 4090..4106 are outside region 1 (4096 bytes)"),
    (2 ** 63, 16, (1, 4), "are outside region 1"),
    (0, 12, (1, 4), "needs 16 bytes of data, got 12"),
    (0, 32, (1, 4), "needs 16 bytes of data, got 32"),
])
def test_bad_slices_are_invalid_argument(serve, models: Path, offset, length, shape, message) -> None:
    agent = serve(LoadedModel.load(models / "float32.tflite"), manifest_for())
    fd = memfd(4096)
    with connect(agent) as sock:
        region = region_id(sock, fd)
        status, body = predict(sock, shared_request(region, offset, length, shape=shape))
        assert status == Status.INVALID_ARGUMENT and message in body.decode() and "'features'" in body.decode()
        status, _ = predict(sock, shared_request(region, 0, 16))  # the connection goes on
        assert status == Status.OK
    os.close(fd)
    assert [kind for _, kind in agent.observer.errors] == ["invalid_input"]


def test_unknown_and_unregistered_regions(serve, models: Path) -> None:
    agent = serve(LoadedModel.load(models / "float32.tflite"), manifest_for())
    fd = memfd(4096, name="gone-region")
    with connect(agent) as sock:
        status, body = predict(sock, shared_request(7, 0, 16))
        assert status == Status.INVALID_ARGUMENT and b"unknown shared-memory region 7" in body and b"none is registered" in body
        region = region_id(sock, fd)
        os.close(fd)
        assert maps_of("gone-region") == 1  # the agent's mapping (same process here)
        status, _ = call(sock, Method.UNREGISTER_REGION,
                         inference_pb2.UnregisterRegionRequest(region_id=region).SerializeToString())
        assert status == Status.OK and maps_of("gone-region") == 0
        status, body = predict(sock, shared_request(region, 0, 16))
        assert status == Status.INVALID_ARGUMENT and f"unknown shared-memory region {region}".encode() in body
        status, body = call(sock, Method.UNREGISTER_REGION,
                            inference_pb2.UnregisterRegionRequest(region_id=region).SerializeToString())
        assert status == Status.INVALID_ARGUMENT and f"unknown region {region}".encode() in body


def test_regions_belong_to_their_connection(serve, models: Path) -> None:
    agent = serve(LoadedModel.load(models / "float32.tflite"), manifest_for())
    fd = memfd(4096, name="conn-region")
    with connect(agent) as first, connect(agent) as second:
        region = region_id(first, fd)
        status, body = predict(second, shared_request(region, 0, 16))
        assert status == Status.INVALID_ARGUMENT and b"unknown shared-memory region" in body
    os.close(fd)
    wait_for(lambda: agent.fast.connections == 0)
    assert maps_of("conn-region") == 0  # unmapped when the connection ended


@pytest.mark.parametrize("kind, message", [
    ("unsealed", "not sealed against shrinking: add F_SEAL_SHRINK"),
    ("no-sealing", "not sealed against shrinking"),  # a memfd without MFD_ALLOW_SEALING is sealed shut, not shrink-proof
    ("disk-file", "not a memfd that takes seals"),
    ("pipe", "not a memfd (not a regular file)"),
    ("empty", "the memfd is empty"),
    ("too-large", "8192 bytes is above the limit of 4096 bytes per region"),
    ("no-fd", "no file descriptor came with the RegisterRegion frame"),
])
def test_regions_the_agent_refuses(serve, kind: str, message: str) -> None:
    agent = serve(max_region_bytes=4096)
    closing: list[int] = []
    if kind == "unsealed":
        fd = memfd(4096, seal=False)
    elif kind == "no-sealing":
        fd = os.memfd_create("plain", os.MFD_CLOEXEC)
        os.ftruncate(fd, 4096)
    elif kind == "disk-file":
        handle, _ = tempfile.mkstemp()
        os.ftruncate(handle, 4096)
        fd = handle
    elif kind == "pipe":
        fd, other = os.pipe()
        closing.append(other)
    elif kind == "empty":
        fd = memfd(0)
    elif kind == "too-large":
        fd = memfd(8192)
    else:
        fd = None
    with connect(agent) as sock:
        status, body = register(sock, fd)
        assert status == Status.INVALID_ARGUMENT and message in body.decode()
        assert call(sock, Method.HEALTH, b"")[0] == Status.OK  # the connection goes on
    for other in closing + ([fd] if fd is not None else []):
        os.close(other)


def test_a_sealed_region_cannot_be_shrunk_under_the_agent(serve, models: Path) -> None:
    agent = serve(LoadedModel.load(models / "float32.tflite"), manifest_for())
    fd = memfd(4096)
    with connect(agent) as sock:
        region = region_id(sock, fd)
        with pytest.raises(PermissionError):
            os.ftruncate(fd, 0)  # what would turn the agent's next read into SIGBUS
        assert predict(sock, shared_request(region, 4080, 16))[0] == Status.OK
    os.close(fd)


def test_too_many_regions_per_connection(serve) -> None:
    agent = serve(max_regions=2)
    fds = [memfd(4096) for _ in range(3)]
    with connect(agent) as sock:
        assert [region_id(sock, fd) for fd in fds[:2]] == [1, 2]
        status, body = register(sock, fds[2])
        assert status == Status.INVALID_ARGUMENT and b"already has 2 regions, the limit" in body
        call(sock, Method.UNREGISTER_REGION, inference_pb2.UnregisterRegionRequest(region_id=1).SerializeToString())
        assert region_id(sock, fds[2]) == 3
    for fd in fds:
        os.close(fd)


def test_descriptors_sent_with_other_frames_are_closed(serve) -> None:
    agent = serve()
    fd = memfd(4096, name="stray-region")
    with connect(agent) as sock:
        sock.sendmsg([FRAME.pack(0, Method.HEALTH)], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [fd]).tobytes())])
        assert read_frame(sock)[0] == Status.OK
        os.close(fd)
        assert fds_of("stray-region") == 0  # the agent kept no copy (same process here)
        assert call(sock, Method.HEALTH, b"")[0] == Status.OK


def test_shared_memory_over_grpc_is_refused(serve, models: Path) -> None:
    agent = serve(LoadedModel.load(models / "float32.tflite"), manifest_for())
    import grpc

    with pytest.raises(grpc.RpcError) as excinfo:
        agent.stub.Predict(shared_request(1, 0, 16), timeout=10)
    assert excinfo.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "fast socket only" in excinfo.value.details()


def test_region_limits_are_checked() -> None:
    with pytest.raises(ValueError, match="max_regions"):
        Regions(max_regions=0)
    with pytest.raises(ValueError, match="max_regions"):
        FastServer("/tmp/x.sock", None, max_regions=0)  # type: ignore[arg-type]


# -- spinning -------------------------------------------------------------------------------------


def test_spin_bounds_are_checked(sockdir: Path) -> None:
    with pytest.raises(ValueError, match="spin_s"):
        FastServer(sockdir / "f.sock", None, spin_s=0.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="spin_s"):
        LocalClient(sockdir / "i.sock", spin_s=-1)


def test_spinning_sides_answer_and_an_idle_agent_does_not_spin(serve, models: Path, reference) -> None:
    w, b = reference
    agent = serve(LoadedModel.load(models / "float32.tflite"), manifest_for(), spin_s=0.01)  # the largest spin
    client = agent.client(transport="fast", spin_s=0.01)
    x = np.ones((2, 4), np.float32)
    for _ in range(50):  # a hot loop: the agent spins between these
        np.testing.assert_allclose(client.predict({"features": x})[0]["logits"], x @ w + b, rtol=1e-5)
    # Requests stop: at most one spin (10 ms) follows, then the connection's thread sleeps.
    started, cpu = time.monotonic(), time.process_time()
    wait_for(lambda: time.monotonic() - started > 0.5)  # a measuring window, not synchronization
    assert time.process_time() - cpu < 0.2  # wait_for's own polling and one spin; a spinning thread would be ~0.5
    assert client.health().status == "serving"
