"""agent.serve over a real unix socket with a real gRPC client: Predict on float and int8 models, each bad
input, the bounded waiting line, Feedback, Health, DescribeModel, ListModels, socket handling."""

from __future__ import annotations

import os
import shutil
import socket
import stat
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import grpc
import numpy as np
import pytest

from agent.runtime import LoadedModel
from agent.serve import InferenceServer, ModelHost, SocketInUse
from agent.serve.wire import array_from_tensor, tensor_from_array
from edgefleet.v1 import device_pb2, inference_pb2, inference_pb2_grpc, manifest_pb2


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
    path = Path(tempfile.mkdtemp(prefix="efs-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


class Recorder:
    """An InferenceObserver that keeps what it is told."""

    def __init__(self) -> None:
        self.predictions: list[tuple[Any, float, dict, Any]] = []
        self.errors: list[tuple[Any, str]] = []
        self.feedback: list[tuple[Any, int, float]] = []

    def on_predict(self, served, latency_ms, inputs, summary) -> None:
        self.predictions.append((served.key, latency_ms, dict(inputs), summary))

    def on_error(self, served, kind) -> None:
        self.errors.append((served.key, kind))

    def on_feedback(self, prediction, label, target) -> None:
        self.feedback.append((prediction, label, target))


class Running:
    def __init__(self, server: InferenceServer, recorder: Recorder) -> None:
        self.server = server
        self.host = server.host
        self.recorder = recorder
        self.channel = grpc.insecure_channel(server.address)
        self.stub = inference_pb2_grpc.InferenceStub(self.channel)

    def predict(self, model: str = "", **arrays: np.ndarray) -> inference_pb2.PredictResponse:
        request = inference_pb2.PredictRequest(model=model, inputs=[tensor_from_array(k, v) for k, v in arrays.items()])
        return self.stub.Predict(request, timeout=10)


@pytest.fixture
def serve(sockdir: Path) -> Iterator[Callable[..., Running]]:
    started: list[Running] = []

    def start(model: Any = None, manifest: manifest_pb2.ModelManifest | None = None, **kw: Any) -> Running:
        host = ModelHost()
        if model is not None:
            host.activate(model, manifest=manifest)
        recorder = Recorder()
        server = InferenceServer(sockdir / f"s{len(started)}.sock", host, observer=recorder, **kw)
        server.start()
        running = Running(server, recorder)
        started.append(running)
        return running

    yield start
    for running in started:
        running.channel.close()
        running.server.stop(0)


def manifest_for(name: str = "digits", version: str = "3", variant: str = "v-int8", task: str = "classification") -> manifest_pb2.ModelManifest:
    return manifest_pb2.ModelManifest(model=name, version=version, variant_id=variant, task=task, sha256="ab" * 32, sequence=7)


def code_and_details(excinfo: pytest.ExceptionInfo) -> tuple[grpc.StatusCode, str]:
    return excinfo.value.code(), excinfo.value.details()


# -- Predict --------------------------------------------------------------------------------------


def test_predict_float_model(serve, models: Path, reference) -> None:
    w, b = reference
    api = serve(LoadedModel.load(models / "float32.tflite"), manifest_for(variant="v-fp32"))
    x = np.array([[0.5, -1.0, 2.0, 0.25], [1.0, 0.0, -0.5, 3.0]], np.float32)
    response = api.predict(features=x)
    (out,) = response.outputs
    assert out.name == "logits" and list(out.shape) == [2, 3] and out.dtype == "float32"
    np.testing.assert_allclose(array_from_tensor(out), x @ w + b, rtol=1e-5, atol=1e-5)
    assert len(response.request_id) == 32
    assert response.model.model == "digits" and response.model.variant_id == "v-fp32" and response.model.sequence == 7
    assert response.latency_ms > 0
    (key, latency, inputs, summary) = api.recorder.predictions[0]
    assert latency == pytest.approx(response.latency_ms)
    np.testing.assert_array_equal(inputs["features"], x)
    assert list(summary.top1) == list(np.argmax(x @ w + b, axis=1))


def test_predict_int8_model_quantizes_and_dequantizes(serve, models: Path, reference) -> None:
    w, b = reference
    api = serve(LoadedModel.load(models / "int8.tflite"), manifest_for())
    x = np.array([0.5, -0.25, 0.75, -0.9], np.float32)  # batch implied
    (out,) = api.predict(features=x).outputs
    assert out.dtype == "float32" and list(out.shape) == [1, 3]
    expected = x[None] @ w + b
    # int8 activations: within a few quantization steps of the float result
    scale = np.abs(expected).max() / 64
    np.testing.assert_allclose(array_from_tensor(out), expected, atol=3 * scale)


@pytest.mark.parametrize(
    "tensor, words",
    [
        (tensor_from_array("features", np.zeros((1, 5), np.float32)), ["'features'", "[?, 4]", "[1, 5]"]),
        (tensor_from_array("features", np.zeros((1, 4), np.int32)), ["'features'", "float", "int32"]),
        (tensor_from_array("pixels", np.zeros((1, 4), np.float32)), ["unknown input 'pixels'", "'features'"]),
        (inference_pb2.Tensor(name="features", shape=[1, 4], dtype="float32", data=b"\0" * 12), ["'features'", "16 bytes", "got 12"]),
        (inference_pb2.Tensor(name="features", shape=[1, 4], dtype="complex64", data=b"\0" * 32), ["'features'", "unknown dtype 'complex64'"]),
        (inference_pb2.Tensor(name="features", shape=[1, -4], dtype="float32", data=b""), ["'features'", "negative"]),
    ],
    ids=["shape", "dtype", "name", "data-length", "unknown-dtype", "negative-dim"],
)
def test_bad_input_is_invalid_argument_naming_the_tensor(serve, models: Path, tensor, words) -> None:
    api = serve(LoadedModel.load(models / "float32.tflite"), manifest_for())
    with pytest.raises(grpc.RpcError) as excinfo:
        api.stub.Predict(inference_pb2.PredictRequest(inputs=[tensor]), timeout=10)
    code, details = code_and_details(excinfo)
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    for word in words:
        assert word in details
    assert api.recorder.errors == [(api.host.current.key, "invalid_input")]


def test_missing_and_duplicate_inputs(serve, models: Path) -> None:
    api = serve(LoadedModel.load(models / "two_inputs.tflite"))
    with pytest.raises(grpc.RpcError) as excinfo:
        api.predict(a=np.zeros((1, 3), np.float32))
    assert excinfo.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "missing input 'b'" in excinfo.value.details()
    twice = [tensor_from_array("a", np.zeros((1, 3), np.float32))] * 2
    with pytest.raises(grpc.RpcError) as excinfo:
        api.stub.Predict(inference_pb2.PredictRequest(inputs=twice), timeout=10)
    assert "'a' sent twice" in excinfo.value.details()
    response = api.predict(a=np.ones((1, 3), np.float32), b=np.ones((1, 2), np.float32))
    outputs = {t.name: array_from_tensor(t) for t in response.outputs}
    np.testing.assert_allclose(outputs["total"], [[7.0]])


def test_oversized_request_is_refused_with_the_limit(serve, models: Path) -> None:
    api = serve(LoadedModel.load(models / "float32.tflite"), max_request_bytes=4096)
    with pytest.raises(grpc.RpcError) as excinfo:
        api.predict(features=np.zeros((2000, 4), np.float32))  # 32 kB against 4 kB
    code, details = code_and_details(excinfo)
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "4096" in details and "larger than max" in details
    assert api.predict(features=np.zeros((10, 4), np.float32)).outputs  # within the limit: served


def test_no_model_is_failed_precondition(serve) -> None:
    api = serve()
    with pytest.raises(grpc.RpcError) as excinfo:
        api.predict(features=np.zeros((1, 4), np.float32))
    assert excinfo.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "no model is active" in excinfo.value.details()
    health = api.stub.Health(inference_pb2.HealthRequest(), timeout=10)
    assert health.status == "no_model"


def test_unknown_model_name_is_not_found(serve, models: Path) -> None:
    api = serve(LoadedModel.load(models / "float32.tflite"), manifest_for())
    with pytest.raises(grpc.RpcError) as excinfo:
        api.predict(model="faces", features=np.zeros((1, 4), np.float32))
    assert excinfo.value.code() == grpc.StatusCode.NOT_FOUND
    assert "'faces'" in excinfo.value.details() and "'digits'" in excinfo.value.details()
    for name in ("digits", "digits:3", "v-int8"):
        assert api.predict(model=name, features=np.zeros((1, 4), np.float32)).outputs


# -- the waiting line -----------------------------------------------------------------------------


class SlowModel:
    """Holds every predict until released; counts how many are inside."""

    class backend:  # noqa: N801 - mimics agent.runtime.Backend
        key, reason = "cpu", ""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.running = threading.Semaphore(0)
        self._lock = threading.Lock()  # one at a time, like the interpreter
        self.inputs = [manifest_pb2.TensorSpec(name="x", shape=[1, 2], dtype="float32")]
        self.outputs = [manifest_pb2.TensorSpec(name="y", shape=[1, 2], dtype="float32")]
        self.closed = False

    def predict(self, inputs: Mapping[str, Any]) -> dict[str, np.ndarray]:
        with self._lock:
            self.running.release()
            assert self.release.wait(30)
            return {"y": np.asarray(inputs["x"], np.float32) * 2}

    def evaluate(self, x, y, task) -> float:
        return 1.0

    def close(self) -> None:
        self.closed = True


def test_full_waiting_line_is_resource_exhausted(serve) -> None:
    model = SlowModel()
    api = serve(model, max_waiting=1)
    results: list[Any] = []

    def call() -> None:
        try:
            results.append(api.predict(x=np.ones((1, 2), np.float32)))
        except grpc.RpcError as exc:  # pragma: no cover - reported by the assertion below
            results.append(exc)

    threads = [threading.Thread(target=call) for _ in range(2)]
    for t in threads:
        t.start()
    assert model.running.acquire(timeout=10)             # one runs ...
    wait_for(lambda: api.server.admission.inside == 2)   # ... and one waits
    with pytest.raises(grpc.RpcError) as excinfo:
        api.predict(x=np.ones((1, 2), np.float32))
    assert excinfo.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "1 requests are already waiting" in excinfo.value.details()
    # Health still answers while the model is busy.
    assert api.stub.Health(inference_pb2.HealthRequest(), timeout=5).status == "serving"
    model.release.set()
    for t in threads:
        t.join(10)
    assert len(results) == 2 and all(isinstance(r, inference_pb2.PredictResponse) for r in results)
    assert api.server.admission.inside == 0
    assert api.predict(x=np.ones((1, 2), np.float32)).outputs  # the line is free again


# -- Feedback -------------------------------------------------------------------------------------


def test_feedback_scores_the_remembered_prediction(serve, models: Path, reference) -> None:
    w, b = reference
    api = serve(LoadedModel.load(models / "float32.tflite"), manifest_for())
    x = np.array([[1.0, 2.0, -1.0, 0.5]], np.float32)
    top1 = int(np.argmax(x @ w + b))
    first = api.predict(features=x)
    second = api.predict(features=x)
    assert api.stub.Feedback(inference_pb2.FeedbackRequest(request_id=first.request_id, label=top1), timeout=5).matched
    assert not api.stub.Feedback(inference_pb2.FeedbackRequest(request_id=second.request_id, label=(top1 + 1) % 3), timeout=5).matched
    assert [(p.top1, label) for p, label, _ in api.recorder.feedback] == [(top1, top1), (top1, (top1 + 1) % 3)]
    with pytest.raises(grpc.RpcError) as excinfo:
        api.stub.Feedback(inference_pb2.FeedbackRequest(request_id=first.request_id, label=top1), timeout=5)
    assert excinfo.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert len(api.recorder.feedback) == 2


def test_feedback_for_an_unknown_request_id_is_not_found(serve, models: Path) -> None:
    api = serve(LoadedModel.load(models / "float32.tflite"), manifest_for())
    with pytest.raises(grpc.RpcError) as excinfo:
        api.stub.Feedback(inference_pb2.FeedbackRequest(request_id="0" * 32, label=1), timeout=5)
    code, details = code_and_details(excinfo)
    assert code == grpc.StatusCode.NOT_FOUND
    assert "unknown request id '" + "0" * 32 + "'" in details and "last 10000 predictions" in details
    with pytest.raises(grpc.RpcError) as excinfo:
        api.stub.Feedback(inference_pb2.FeedbackRequest(), timeout=5)
    assert excinfo.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert api.recorder.feedback == []


def test_feedback_forgets_beyond_the_last_n(serve, models: Path) -> None:
    api = serve(LoadedModel.load(models / "float32.tflite"), manifest_for(), recent_size=2)
    ids = [api.predict(features=np.zeros((1, 4), np.float32)).request_id for _ in range(3)]
    with pytest.raises(grpc.RpcError) as excinfo:
        api.stub.Feedback(inference_pb2.FeedbackRequest(request_id=ids[0], label=0), timeout=5)
    assert excinfo.value.code() == grpc.StatusCode.NOT_FOUND
    api.stub.Feedback(inference_pb2.FeedbackRequest(request_id=ids[2], label=0), timeout=5)


def test_feedback_on_a_batch_is_invalid(serve, models: Path) -> None:
    api = serve(LoadedModel.load(models / "float32.tflite"), manifest_for())
    rid = api.predict(features=np.zeros((3, 4), np.float32)).request_id
    with pytest.raises(grpc.RpcError) as excinfo:
        api.stub.Feedback(inference_pb2.FeedbackRequest(request_id=rid, label=0), timeout=5)
    assert excinfo.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "batch of 3 rows" in excinfo.value.details()


# -- description and health -----------------------------------------------------------------------


def test_describe_and_list(serve, models: Path) -> None:
    api = serve(LoadedModel.load(models / "int8.tflite"), manifest_for())
    described = api.stub.DescribeModel(inference_pb2.DescribeModelRequest(), timeout=5)
    assert described.model.variant_id == "v-int8"
    (spec,) = described.inputs
    assert spec.name == "features" and list(spec.shape) == [1, 4] and spec.dtype == "int8" and spec.scale > 0
    assert described.outputs[0].name == "logits"
    assert described.runtime.startswith("ai-edge-litert ") and described.delegate == "xnnpack"
    with pytest.raises(grpc.RpcError) as excinfo:
        api.stub.DescribeModel(inference_pb2.DescribeModelRequest(model="other"), timeout=5)
    assert excinfo.value.code() == grpc.StatusCode.NOT_FOUND
    listed = api.stub.ListModels(inference_pb2.ListLocalModelsRequest(), timeout=5)
    assert [m.variant_id for m in listed.models] == ["v-int8"] and listed.active_variant_id == "v-int8"


def test_list_models_uses_the_installed_slots(serve, models: Path) -> None:
    slots = [device_pb2.ActiveModel(model="digits", version="2", variant_id="old"),
             device_pb2.ActiveModel(model="digits", version="3", variant_id="v-int8")]
    api = serve(LoadedModel.load(models / "int8.tflite"), manifest_for(), installed=lambda: slots)
    listed = api.stub.ListModels(inference_pb2.ListLocalModelsRequest(), timeout=5)
    assert [m.variant_id for m in listed.models] == ["old", "v-int8"]


def test_health_serving_and_degraded(serve, models: Path) -> None:
    reason = {"text": ""}
    api = serve(LoadedModel.load(models / "float32.tflite"), manifest_for(), degraded=lambda: reason["text"])
    health = api.stub.Health(inference_pb2.HealthRequest(), timeout=5)
    assert health.status == "serving" and "digits:3" in health.detail and "cpu" in health.detail
    reason["text"] = "rolling back"
    health = api.stub.Health(inference_pb2.HealthRequest(), timeout=5)
    assert health.status == "degraded" and "rolling back" in health.detail


def test_health_degraded_when_the_required_delegate_is_missing(serve, models: Path) -> None:
    manifest = manifest_for()
    manifest.requires_delegate = "edgetpu"
    api = serve(LoadedModel.load(models / "float32.tflite"), manifest)
    health = api.stub.Health(inference_pb2.HealthRequest(), timeout=5)
    assert health.status == "degraded" and "compiled for edgetpu" in health.detail


class FailingModel(SlowModel):
    def predict(self, inputs):
        raise RuntimeError("tensor arena exhausted")


def test_runtime_failure_is_internal_and_degrades_after_three(serve) -> None:
    api = serve(FailingModel())
    for _ in range(3):
        with pytest.raises(grpc.RpcError) as excinfo:
            api.predict(x=np.ones((1, 2), np.float32))
        assert excinfo.value.code() == grpc.StatusCode.INTERNAL and "tensor arena exhausted" in excinfo.value.details()
    assert [kind for _, kind in api.recorder.errors] == ["internal"] * 3
    assert api.stub.Health(inference_pb2.HealthRequest(), timeout=5).status == "degraded"


# -- the socket -----------------------------------------------------------------------------------


def test_socket_mode_is_0660_and_removed_at_stop(serve) -> None:
    api = serve()
    mode = os.stat(api.server.socket_path).st_mode
    assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o660
    api.server.stop(0)
    assert not api.server.socket_path.exists()


def test_stale_socket_is_replaced(sockdir: Path) -> None:
    path = sockdir / "stale.sock"
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(str(path))
    dead.close()  # the file stays, nobody listens: what a killed agent leaves
    assert stat.S_ISSOCK(path.lstat().st_mode)
    server = InferenceServer(path, ModelHost())
    server.start()
    try:
        with grpc.insecure_channel(server.address) as channel:
            health = inference_pb2_grpc.InferenceStub(channel).Health(inference_pb2.HealthRequest(), timeout=5)
        assert health.status == "no_model"
        second = InferenceServer(path, ModelHost())
        with pytest.raises(SocketInUse, match="another process is serving"):
            second.start()
        second.stop(0)  # must not remove the socket of the server that owns it
        assert path.exists()
    finally:
        server.stop(0)


def test_a_regular_file_at_the_socket_path_is_not_removed(sockdir: Path) -> None:
    path = sockdir / "notes.txt"
    path.write_text("keep me")
    with pytest.raises(SocketInUse, match="not a socket"):
        InferenceServer(path, ModelHost()).start()
    assert path.read_text() == "keep me"


def test_socket_path_too_long_is_a_clear_error(sockdir: Path) -> None:
    with pytest.raises(ValueError, match="longer than 107 bytes"):
        InferenceServer(sockdir / ("x" * 120), ModelHost()).start()
