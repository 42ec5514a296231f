"""agent.serve.fast (the framed unix socket) and agent.client.LocalClient: frames, Predict on float and int8
models, the same errors as gRPC, the shared waiting line and telemetry, the connection bound, fallback
to gRPC, reconnecting after an agent restart, the socket file."""

from __future__ import annotations

import os
import shutil
import socket
import stat
import struct
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import grpc
import numpy as np
import pytest

from agent.client import FRAME, InferenceError, LocalClient, Method, Status, _send, encode_predict, fast_socket_path
from agent.runtime import LoadedModel
from agent.serve import InferenceServer, ModelHost
from agent.serve.fast import FastServer
from agent.serve.service import LocalModelService
from agent.serve.wire import tensor_from_array
from agent.telemetry.collector import TelemetryCollector
from edgefleet.v1 import hardware_pb2, inference_pb2, inference_pb2_grpc, manifest_pb2


def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Wait until condition() holds; the Event is never set, its wait is the bounded pause."""
    deadline = time.monotonic() + timeout
    pause = threading.Event()
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        pause.wait(0.005)


@pytest.fixture
def sockdir() -> Iterator[Path]:
    # Short: a unix socket path must stay under 108 bytes, which pytest's tmp_path can exceed.
    path = Path(tempfile.mkdtemp(prefix="eff-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


class Recorder:
    def __init__(self) -> None:
        self.predictions: list[tuple[Any, float]] = []
        self.errors: list[tuple[Any, str]] = []
        self.feedback: list[tuple[Any, int, float]] = []

    def on_predict(self, served, latency_ms, inputs, summary) -> None:
        self.predictions.append((served.key, latency_ms))

    def on_error(self, served, kind) -> None:
        self.errors.append((served.key, kind))

    def on_feedback(self, prediction, label, target) -> None:
        self.feedback.append((prediction, label, target))


class Agent:
    """Both transports on one servicer, as LocalModelService runs them."""

    def __init__(self, sockdir: Path, model: Any, manifest: manifest_pb2.ModelManifest | None, observer: Any,
                 fast: bool, **kw: Any) -> None:
        self.host = ModelHost()
        if model is not None:
            self.host.activate(model, manifest=manifest)
        self.observer = observer
        fast_kw = {k: kw.pop(k) for k in ("max_connections", "io_timeout_s", "max_regions", "max_region_bytes", "spin_s")
                   if k in kw}
        self.server = InferenceServer(sockdir / "inference.sock", self.host, observer=observer, **kw)
        self.server.start()
        self.fast = FastServer(fast_socket_path(self.server.socket_path), self.server.servicer,
                               max_request_bytes=self.server.max_request_bytes, **fast_kw)
        if fast:
            self.fast.start()
        self.channel = grpc.insecure_channel(self.server.address)
        self.stub = inference_pb2_grpc.InferenceStub(self.channel)
        self.clients: list[LocalClient] = []

    def client(self, **kw: Any) -> LocalClient:
        client = LocalClient(self.server.socket_path, **kw)
        self.clients.append(client)
        return client

    def stop(self) -> None:
        for client in self.clients:
            client.close()
        self.channel.close()
        self.fast.stop(0)
        self.server.stop(0)


@pytest.fixture
def serve(sockdir: Path) -> Iterator[Callable[..., Agent]]:
    started: list[Agent] = []

    def start(model: Any = None, manifest: manifest_pb2.ModelManifest | None = None, *, observer: Any = None,
              fast: bool = True, **kw: Any) -> Agent:
        agent = Agent(sockdir, model, manifest, observer if observer is not None else Recorder(), fast, **kw)
        started.append(agent)
        return agent

    yield start
    for agent in started:
        agent.stop()


def manifest_for(variant: str = "v-int8") -> manifest_pb2.ModelManifest:
    return manifest_pb2.ModelManifest(model="digits", version="3", variant_id=variant, task="classification",
                                      sha256="ab" * 32, sequence=7)


# -- raw frames -----------------------------------------------------------------------------------


def connect(agent: Agent) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(10)
    sock.connect(str(agent.fast.socket_path))
    return sock


def read_frame(sock: socket.socket) -> tuple[int, bytes] | None:
    """One reply frame, or None when the server closed the connection instead."""
    data = b""
    while len(data) < FRAME.size:
        try:
            chunk = sock.recv(FRAME.size - len(data))
        except ConnectionResetError:  # closed with unread bytes of ours: a reset once its replies are read
            chunk = b""
        if not chunk:
            assert data == b"", f"the server closed in the middle of a reply header: {data!r}"
            return None
        data += chunk
    length, status = FRAME.unpack(data)
    body = b""
    while len(body) < length:
        chunk = sock.recv(length - len(body))
        assert chunk, "the server closed in the middle of a reply body"
        body += chunk
    return status, body


def closed(sock: socket.socket) -> bool:
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


def call(sock: socket.socket, method: int, body: bytes) -> tuple[int, bytes]:
    sock.sendall(FRAME.pack(len(body), method) + body)
    reply = read_frame(sock)
    assert reply is not None, "no reply"
    return reply


def health_ok(agent: Agent) -> bool:
    """A fresh connection still gets answers: the server survived whatever came before."""
    with connect(agent) as sock:
        status, body = call(sock, Method.HEALTH, b"")
    return status == Status.OK and inference_pb2.HealthResponse.FromString(body).status in ("serving", "no_model")


def test_pipelined_frames_are_answered_in_order(serve, models: Path, reference) -> None:
    w, b = reference
    agent = serve(LoadedModel.load(models / "float32.tflite"), manifest_for())
    x = np.random.default_rng(0).normal(size=(8000, 4)).astype(np.float32)  # 128 kB: larger than a receive
    big = inference_pb2.PredictRequest(inputs=[tensor_from_array("features", x)]).SerializeToString()
    small = inference_pb2.PredictRequest(inputs=[tensor_from_array("features", x[:1])]).SerializeToString()
    with connect(agent) as sock:
        sock.sendall(FRAME.pack(0, Method.HEALTH) + FRAME.pack(len(big), Method.PREDICT) + big
                     + FRAME.pack(len(small), Method.PREDICT) + small + FRAME.pack(0, Method.DESCRIBE_MODEL))
        replies = [read_frame(sock) for _ in range(4)]
    assert [r[0] for r in replies] == [Status.OK] * 4
    assert inference_pb2.HealthResponse.FromString(replies[0][1]).status == "serving"
    for (_, body), rows in zip(replies[1:3], (x, x[:1])):
        (out,) = inference_pb2.PredictResponse.FromString(body).outputs
        np.testing.assert_allclose(np.frombuffer(out.data, "<f4").reshape(out.shape), rows @ w + b, rtol=1e-4, atol=1e-4)
    assert inference_pb2.DescribeModelResponse.FromString(replies[3][1]).model.variant_id == "v-int8"


def test_large_request_and_reply_through_local_client(serve, models: Path, reference) -> None:
    w, b = reference
    agent = serve(LoadedModel.load(models / "float32.tflite"), manifest_for())
    client = agent.client(transport="fast")
    x = np.random.default_rng(1).normal(size=(8000, 4)).astype(np.float32)
    for rows in (x, x[:3], x[::-1]):  # large, small, large again (and a strided view)
        outputs, _, _ = client.predict({"features": rows})
        np.testing.assert_allclose(outputs["logits"], rows @ w + b, rtol=1e-4, atol=1e-4)


def test_unknown_method_is_unimplemented_and_the_connection_goes_on(serve) -> None:
    agent = serve()
    with connect(agent) as sock:
        status, body = call(sock, 77, b"\x08\x01")
        assert status == Status.UNIMPLEMENTED
        assert "unknown method 77" in body.decode() and "1 PREDICT" in body.decode() and "4 DESCRIBE_MODEL" in body.decode()
        status, body = call(sock, Method.HEALTH, b"")
    assert status == Status.OK and inference_pb2.HealthResponse.FromString(body).status == "no_model"


def test_a_body_that_is_not_the_request_message_is_invalid_argument(serve) -> None:
    agent = serve()
    with connect(agent) as sock:
        status, body = call(sock, Method.PREDICT, b"\x12\xff\xff\xff\xff\x0f")  # a field longer than the body
        assert status == Status.INVALID_ARGUMENT and "not a PredictRequest" in body.decode()
        assert call(sock, Method.HEALTH, b"")[0] == Status.OK


def test_oversize_length_is_refused_before_the_body_is_read(serve) -> None:
    agent = serve(max_request_bytes=4096)
    with connect(agent) as sock:
        sock.sendall(FRAME.pack(1 << 31, Method.PREDICT))  # 2 GiB announced, nothing sent
        status, body = read_frame(sock)
        assert status == Status.RESOURCE_EXHAUSTED
        assert body.decode() == f"Received message larger than max ({1 << 31} vs. 4096)"
        assert closed(sock)
    assert health_ok(agent)


@pytest.mark.parametrize("sent, part", [
    (FRAME.pack(10, Method.PREDICT) + b"\x0a\x03", "after 7 of its 15 bytes"),
    (FRAME.pack(100_000, Method.PREDICT) + b"\x0a" * 70_000, "after 70005 of its 100005 bytes"),
    (b"\x05\x00", "after 2 of the 5 bytes of its header"),
], ids=["body", "large-body", "header"])
def test_truncated_frame_gets_an_error_then_close(serve, sent: bytes, part: str) -> None:
    agent = serve()
    with connect(agent) as sock:
        sock.sendall(sent)
        sock.shutdown(socket.SHUT_WR)  # the client is done writing in the middle of a frame
        status, body = read_frame(sock)
        assert status == Status.INVALID_ARGUMENT
        assert "incomplete frame" in body.decode() and part in body.decode()
        assert closed(sock)
    assert health_ok(agent)


def test_a_frame_that_stalls_halfway_times_out(serve) -> None:
    agent = serve(io_timeout_s=0.2)
    with connect(agent) as sock:
        sock.sendall(FRAME.pack(100, Method.PREDICT) + b"\x0a")
        status, body = read_frame(sock)  # the server gives up after io_timeout_s; our own timeout is 10 s
        assert status == Status.INVALID_ARGUMENT
        assert body.decode() == "incomplete frame: 6 of its 105 bytes (header and body) arrived, then nothing for 0.2 s"
        assert closed(sock)
    assert health_ok(agent)


def test_an_idle_connection_outlives_the_io_timeout(serve) -> None:
    agent = serve(io_timeout_s=0.05)
    with connect(agent) as sock:
        assert call(sock, Method.HEALTH, b"")[0] == Status.OK
        sock.settimeout(0.3)
        with pytest.raises(socket.timeout):  # nothing arrives and the server keeps the connection
            sock.recv(1)
        sock.settimeout(10)
        assert call(sock, Method.HEALTH, b"")[0] == Status.OK


@pytest.mark.parametrize("seed", range(6))
def test_garbage_never_ends_the_server(serve, models: Path, seed: int) -> None:
    agent = serve(LoadedModel.load(models / "float32.tflite"), manifest_for(), max_request_bytes=4096)
    garbage = np.random.default_rng(seed).integers(0, 256, size=2000, dtype=np.uint8).tobytes()
    with connect(agent) as sock:
        sock.sendall(garbage)
        sock.shutdown(socket.SHUT_WR)
        while (reply := read_frame(sock)) is not None:  # error frames (or answers), then the close
            assert reply[0] in (Status.OK, Status.INVALID_ARGUMENT, Status.UNIMPLEMENTED, Status.RESOURCE_EXHAUSTED,
                                Status.FAILED_PRECONDITION, Status.NOT_FOUND)
    assert health_ok(agent)
    assert agent.client().predict({"features": np.ones((1, 4), np.float32)})[0]["logits"].shape == (1, 3)


# -- Predict through LocalClient ------------------------------------------------------------------


def test_predict_float_model_on_the_fast_path(serve, models: Path, reference) -> None:
    w, b = reference
    agent = serve(LoadedModel.load(models / "float32.tflite"), manifest_for("v-fp32"))
    client = agent.client()
    assert client.transport == "fast"
    x = np.array([[0.5, -1.0, 2.0, 0.25], [1.0, 0.0, -0.5, 3.0]], np.float32)
    outputs, request_id, latency_ms = client.predict({"features": x})
    assert list(outputs) == ["logits"] and outputs["logits"].dtype == np.float32
    np.testing.assert_allclose(outputs["logits"], x @ w + b, rtol=1e-5, atol=1e-5)
    assert len(request_id) == 32 and latency_ms > 0
    ((key, observed),) = agent.observer.predictions
    assert key.variant_id == "v-fp32" and observed == pytest.approx(latency_ms)
    assert client.health().status == "serving"
    described = client.describe()
    assert described.inputs[0].name == "features" and described.model.variant_id == "v-fp32"
    assert [m.variant_id for m in client.list_models().models] == ["v-fp32"]


def test_predict_int8_model_quantizes_on_the_fast_path(serve, models: Path, reference) -> None:
    w, b = reference
    agent = serve(LoadedModel.load(models / "int8.tflite"), manifest_for())
    x = np.array([0.5, -0.25, 0.75, -0.9], np.float32)  # batch implied
    outputs, _, _ = agent.client(transport="fast").predict({"features": x})
    expected = x[None] @ w + b
    np.testing.assert_allclose(outputs["logits"], expected, atol=3 * np.abs(expected).max() / 64)


def test_a_model_with_two_inputs_and_a_named_model(serve, models: Path) -> None:
    agent = serve(LoadedModel.load(models / "two_inputs.tflite"), manifest_for())
    client = agent.client()
    outputs, _, _ = client.predict({"a": np.ones((1, 3), np.float32), "b": np.ones((1, 2), np.float32)}, model="digits:3")
    np.testing.assert_allclose(outputs["total"], [[7.0]])
    with pytest.raises(InferenceError) as excinfo:
        client.predict({"a": np.ones((1, 3), np.float32), "b": np.ones((1, 2), np.float32)}, model="faces")
    assert excinfo.value.status == Status.NOT_FOUND and "'faces'" in excinfo.value.message


def grpc_error(agent: Agent, method: str, request: Any) -> tuple[int, str]:
    with pytest.raises(grpc.RpcError) as excinfo:
        getattr(agent.stub, method)(request, timeout=10)
    return excinfo.value.code().value[0], excinfo.value.details()


def fast_error(agent: Agent, method: int, request: Any) -> tuple[int, str]:
    with connect(agent) as sock:
        status, body = call(sock, method, request.SerializeToString())
    return status, body.decode()


@pytest.mark.parametrize(
    "tensor",
    [
        tensor_from_array("features", np.zeros((1, 5), np.float32)),
        tensor_from_array("features", np.zeros((1, 4), np.int32)),
        tensor_from_array("pixels", np.zeros((1, 4), np.float32)),
        inference_pb2.Tensor(name="features", shape=[1, 4], dtype="float32", data=b"\0" * 12),
        inference_pb2.Tensor(name="features", shape=[1, 4], dtype="complex64", data=b"\0" * 32),
        inference_pb2.Tensor(name="features", shape=[1, -4], dtype="float32", data=b""),
    ],
    ids=["shape", "dtype", "name", "data-length", "unknown-dtype", "negative-dim"],
)
def test_bad_input_gets_the_same_status_and_message_as_grpc(serve, models: Path, tensor) -> None:
    agent = serve(LoadedModel.load(models / "float32.tflite"), manifest_for())
    request = inference_pb2.PredictRequest(inputs=[tensor])
    fast = fast_error(agent, Method.PREDICT, request)
    assert fast == grpc_error(agent, "Predict", request)
    assert fast[0] == Status.INVALID_ARGUMENT and "'" in fast[1]
    key = agent.host.current.key
    assert agent.observer.errors == [(key, "invalid_input")] * 2  # one per transport, both observed


def test_local_client_raises_the_agents_error(serve, models: Path) -> None:
    agent = serve(LoadedModel.load(models / "float32.tflite"), manifest_for())
    for transport in ("fast", "grpc"):
        with pytest.raises(InferenceError) as excinfo:
            agent.client(transport=transport).predict({"features": np.zeros((1, 4), np.int32)})
        assert excinfo.value.status == Status.INVALID_ARGUMENT
        assert "'features'" in excinfo.value.message and "int32" in excinfo.value.message
        assert str(excinfo.value).startswith("INVALID_ARGUMENT: ")


def test_no_model_and_oversized_request_match_grpc(serve) -> None:
    agent = serve(max_request_bytes=4096)
    small = inference_pb2.PredictRequest(inputs=[tensor_from_array("x", np.zeros((1, 4), np.float32))])
    assert fast_error(agent, Method.PREDICT, small) == grpc_error(agent, "Predict", small)
    big = inference_pb2.PredictRequest(inputs=[tensor_from_array("x", np.zeros((2000, 4), np.float32))])
    code, details = grpc_error(agent, "Predict", big)
    with pytest.raises(InferenceError) as excinfo:
        # the bytes in the frame (through shared memory they would not count against the frame's limit)
        agent.client(transport="fast", shared_memory=False).predict({"x": np.zeros((2000, 4), np.float32)})
    assert excinfo.value.code == code == Status.RESOURCE_EXHAUSTED
    assert excinfo.value.message in details  # gRPC prefixes "SERVER: "


def test_feedback_over_the_fast_path(serve, models: Path, reference) -> None:
    w, b = reference
    agent = serve(LoadedModel.load(models / "float32.tflite"), manifest_for())
    client = agent.client()
    x = np.array([[1.0, 2.0, -1.0, 0.5]], np.float32)
    top1 = int(np.argmax(x @ w + b))
    _, request_id, _ = client.predict({"features": x})
    assert client.feedback(request_id, label=top1) is True
    assert [(p.top1, label) for p, label, _ in agent.observer.feedback] == [(top1, top1)]
    with pytest.raises(InferenceError) as excinfo:
        client.feedback(request_id, label=top1)
    assert excinfo.value.status == Status.ALREADY_EXISTS
    with pytest.raises(ValueError, match="label"):
        client.feedback(request_id)


def test_feedback_for_an_unknown_id_is_not_found_as_over_grpc(serve, models: Path) -> None:
    agent = serve(LoadedModel.load(models / "float32.tflite"), manifest_for())
    request = inference_pb2.FeedbackRequest(request_id="0" * 32, label=1)
    fast = fast_error(agent, Method.FEEDBACK, request)
    assert fast == grpc_error(agent, "Feedback", request)
    assert fast[0] == Status.NOT_FOUND and "unknown request id '" + "0" * 32 + "'" in fast[1]
    with pytest.raises(InferenceError) as excinfo:
        agent.client().feedback("f" * 32, label=0)
    assert excinfo.value.status == Status.NOT_FOUND
    assert agent.observer.feedback == []


# -- the shared waiting line and the connection bound ---------------------------------------------


class SlowModel:
    """Holds every predict until released, one at a time like the interpreter."""

    class backend:  # noqa: N801 - mimics agent.runtime.Backend
        key, reason = "cpu", ""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.running = threading.Semaphore(0)
        self._lock = threading.Lock()
        self.inputs = [manifest_pb2.TensorSpec(name="x", shape=[1, 2], dtype="float32")]
        self.outputs = [manifest_pb2.TensorSpec(name="y", shape=[1, 2], dtype="float32")]

    def predict(self, inputs: Mapping[str, Any]) -> dict[str, np.ndarray]:
        with self._lock:
            self.running.release()
            assert self.release.wait(30)
            return {"y": np.asarray(inputs["x"], np.float32) * 2}

    def evaluate(self, x, y, task) -> float:
        return 1.0

    def close(self) -> None:
        pass


def test_full_waiting_line_is_resource_exhausted_across_transports(serve) -> None:
    model = SlowModel()
    agent = serve(model, max_waiting=1)
    x = {"x": np.ones((1, 2), np.float32)}
    results: list[Any] = []

    def fast_call() -> None:
        results.append(agent.client(transport="fast").predict(x))

    def grpc_call() -> None:
        results.append(agent.client(transport="grpc").predict(x))

    threads = [threading.Thread(target=fast_call), threading.Thread(target=grpc_call)]
    threads[0].start()
    assert model.running.acquire(timeout=10)                 # one runs (fast) ...
    threads[1].start()
    wait_for(lambda: agent.server.admission.inside == 2)     # ... and one waits (gRPC)
    with pytest.raises(InferenceError) as excinfo:
        agent.client(transport="fast").predict(x)
    assert excinfo.value.status == Status.RESOURCE_EXHAUSTED
    assert "1 requests are already waiting" in excinfo.value.message
    assert agent.client(transport="fast").health().status == "serving"  # answers while the model is busy
    model.release.set()
    for t in threads:
        t.join(10)
    assert len(results) == 2 and all(outputs["y"].tolist() == [[2.0, 2.0]] for outputs, _, _ in results)
    assert agent.server.admission.inside == 0


def test_connections_beyond_the_bound_are_refused_and_closed(serve) -> None:
    agent = serve(max_connections=2)
    first, second = agent.client(transport="fast"), agent.client(transport="fast")
    assert first.health().status == second.health().status == "no_model"
    wait_for(lambda: agent.fast.connections == 2)
    with connect(agent) as extra:
        status, body = read_frame(extra)  # told at once, before any request
        assert status == Status.RESOURCE_EXHAUSTED and "2 connections" in body.decode()
        assert closed(extra)
    with pytest.raises(InferenceError) as excinfo:
        agent.client(transport="fast").health()
    assert excinfo.value.status == Status.RESOURCE_EXHAUSTED
    assert agent.fast.refused == 2
    first.close()
    wait_for(lambda: agent.fast.connections == 1)
    assert agent.client(transport="fast").health().status == "no_model"
    assert second.health().status == "no_model"


# -- both transports, one telemetry ---------------------------------------------------------------


def test_both_transports_feed_one_telemetry_collector(serve, models: Path, reference) -> None:
    w, b = reference
    collector = TelemetryCollector(interval_s=3600)
    model = LoadedModel.load(models / "float32.tflite")
    agent = serve(observer=collector)
    agent.host.subscribe(collector.on_activate)
    agent.host.activate(model, manifest=manifest_for())
    fast, slow = agent.client(transport="fast"), agent.client(transport="grpc")
    x = np.array([[1.0, 2.0, -1.0, 0.5]], np.float32)
    top1 = int(np.argmax(x @ w + b))
    latencies = []
    for client in (fast, fast, fast, slow, slow):
        _, request_id, latency_ms = client.predict({"features": x})
        latencies.append(latency_ms)
    fast.feedback(request_id, label=top1)
    with pytest.raises(InferenceError):
        fast.predict({"features": np.zeros((1, 9), np.float32)})
    (m,) = collector.collect().models
    assert (m.requests, m.errors) == (6, 1)
    assert sum(m.latency.counts) == 5 and m.latency.sum_ms == pytest.approx(sum(latencies))
    assert (m.accuracy.online_count, m.accuracy.online_metric) == (1, 1.0)


# -- fallback and reconnecting --------------------------------------------------------------------


def test_falls_back_to_grpc_without_a_fast_socket(serve, models: Path, reference) -> None:
    w, b = reference
    agent = serve(LoadedModel.load(models / "float32.tflite"), manifest_for(), fast=False)
    assert not agent.fast.socket_path.exists()
    client = agent.client()
    assert client.transport == "grpc"
    x = np.array([[0.5, -1.0, 2.0, 0.25]], np.float32)
    outputs, request_id, _ = client.predict({"features": x})
    np.testing.assert_allclose(outputs["logits"], x @ w + b, rtol=1e-5, atol=1e-5)
    assert client.feedback(request_id, label=int(np.argmax(x @ w + b)))
    with pytest.raises(InferenceError) as excinfo:
        client.feedback("0" * 32, label=1)
    assert excinfo.value.status == Status.NOT_FOUND and "unknown request id" in excinfo.value.message
    assert len(agent.observer.predictions) == 1
    with pytest.raises(InferenceError) as excinfo:
        agent.client(transport="fast").health()
    assert excinfo.value.status == Status.UNAVAILABLE and str(agent.fast.socket_path) in excinfo.value.message


def test_reconnects_after_the_agent_restarts(serve, models: Path) -> None:
    agent = serve(LoadedModel.load(models / "float32.tflite"), manifest_for())
    client = agent.client()
    x = {"features": np.ones((1, 4), np.float32)}
    client.predict(x)
    agent.fast.stop(0)  # the agent restarts: its old connections close
    wait_for(lambda: agent.fast.connections == 0)
    agent.fast.start()
    assert client.predict(x)[0]["logits"].shape == (1, 3)  # sent again on a new connection
    assert client.transport == "fast" and len(agent.observer.predictions) == 2


def test_stop_closes_idle_connections_and_removes_the_socket(serve) -> None:
    agent = serve()
    clients = [agent.client(transport="fast") for _ in range(3)]
    for client in clients:
        client.health()
    wait_for(lambda: agent.fast.connections == 3)
    mode = os.stat(agent.fast.socket_path).st_mode
    assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o660
    agent.fast.stop(5)
    assert agent.fast.connections == 0 and not agent.fast.socket_path.exists()
    with pytest.raises(InferenceError) as excinfo:
        clients[0].health()  # the server is gone: nothing to reconnect to
    assert excinfo.value.status == Status.UNAVAILABLE


# -- the encoding, the path, the service ----------------------------------------------------------


@pytest.mark.parametrize("inputs, model", [
    ({"image": np.random.default_rng(0).random((1, 96, 96, 3), dtype=np.float32)}, ""),
    ({"a": np.arange(6, dtype=">i4").reshape(2, 3), "": np.float64(3.5), "empty": np.zeros((0, 4), np.int8)}, "digits:3"),
    ({"mask": np.ones(300, np.bool_), "strided": np.arange(20, dtype=np.float16)[::2]}, "v-int8"),
    ({}, ""),
], ids=["image", "mixed", "views", "nothing"])
def test_encode_predict_is_the_protobuf_encoding(inputs: dict, model: str) -> None:
    tensors = []
    for name, value in inputs.items():
        array = np.asarray(value)
        tensors.append(inference_pb2.Tensor(name=name, shape=array.shape, dtype=array.dtype.name,
                                            data=array.astype(array.dtype.newbyteorder("<")).tobytes()))
    expected = inference_pb2.PredictRequest(model=model, inputs=tensors).SerializeToString()
    assert b"".join(bytes(part) for part in encode_predict(inputs, model)) == expected


def test_a_partial_gather_send_is_completed() -> None:
    class Socket:
        def __init__(self) -> None:
            self.data = b""

        def sendmsg(self, buffers) -> int:  # the kernel takes 7 bytes of the frame this time
            self.data += b"".join(buffers)[:7]
            return 7

        def sendall(self, data) -> None:
            self.data += bytes(data)

    sock = Socket()
    array = np.arange(100, dtype=np.float32)
    _send(sock, [b"head", memoryview(array).cast("B"), b"tail"], 4 + array.nbytes + 4)
    assert sock.data == b"head" + array.tobytes() + b"tail"


def test_fast_socket_path_is_beside_the_grpc_one() -> None:
    assert fast_socket_path("/run/edgefleet/inference.sock") == Path("/run/edgefleet/inference.fast.sock")
    assert fast_socket_path("/tmp/api") == Path("/tmp/api.fast")


def test_frame_header_layout() -> None:
    assert FRAME.pack(0x01020304, Method.PREDICT) == b"\x04\x03\x02\x01\x01"
    assert struct.calcsize(FRAME.format) == 5


def test_service_serves_the_fast_socket_beside_grpc(sockdir: Path, tmp_path: Path, models: Path) -> None:
    hardware = hardware_pb2.HardwareProfile()
    service = LocalModelService(tmp_path, sockdir / "inference.sock", hardware, emit_telemetry=lambda m: None,
                                interval_s=3600, sys_root=tmp_path / "sys")
    assert service.fast is not None and service.fast.socket_path == sockdir / "inference.fast.sock"
    service.start()
    try:
        service.on_active_changed(models / "float32.tflite", manifest_for())
        with LocalClient(sockdir / "inference.sock") as client:
            assert client.transport == "fast"
            assert client.predict({"features": np.ones((1, 4), np.float32)})[0]["logits"].shape == (1, 3)
        assert stat.S_IMODE(os.stat(service.fast.socket_path).st_mode) == 0o660
    finally:
        service.stop()
    assert not service.fast.socket_path.exists() and not service.server.socket_path.exists()
    # A socket path that fits but leaves no room for ".fast": gRPC only, and the service still starts.
    long_dir = sockdir / ("d" * (104 - len(str(sockdir)) - len("/x.sock")))
    long_socket = long_dir / "x.sock"
    assert len(str(long_socket)) <= 107 < len(str(fast_socket_path(long_socket)))
    grpc_only = LocalModelService(tmp_path, long_socket, hardware, emit_telemetry=lambda m: None, interval_s=3600,
                                  sys_root=tmp_path / "sys")
    assert grpc_only.fast is None
    grpc_only.start()
    grpc_only.stop()
