"""A Predict repeated on a fast connection runs through a plan (agent.serve.prepared): the same answers as
the general path on the region's current bytes, the same telemetry, Feedback and refusals, and no plan
outlives the model or the region it was made for."""

from __future__ import annotations

import contextlib
import mmap
import os
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest

from agent.client import Method, Status
from agent.runtime import LoadedModel
from agent.serve.admission import Admission
from agent.serve.host import ModelHost
from agent.serve.prepared import Plan
from agent.serve.regions import Regions
from agent.serve.servicer import ApiError, InferenceServicer
from edgefleet.v1 import inference_pb2
from tests.unit.serve.test_fast import Recorder, call, connect, manifest_for, serve, sockdir  # noqa: F401
from tests.unit.serve.test_shared_memory import memfd, predict, region_id, shared_request


class Region:
    """A memfd mapped here, as a client holds it."""

    def __init__(self, size: int = 4096) -> None:
        self.fd = memfd(size)
        self.memory = mmap.mmap(self.fd, size)

    def put(self, offset: int, array: np.ndarray) -> None:
        self.memory[offset:offset + array.nbytes] = array.tobytes()

    def close(self) -> None:
        self.memory.close()
        os.close(self.fd)


@pytest.fixture
def region():
    made = Region()
    yield made
    made.close()


def response(body: bytes) -> inference_pb2.PredictResponse:
    return inference_pb2.PredictResponse.FromString(body)


@contextlib.contextmanager
def in_process(models: Path, **kw) -> Iterator[tuple[InferenceServicer, Regions, Region, int]]:
    """A servicer on the float32 model, no socket: (servicer, the connection's regions, a region, its id)."""
    host = ModelHost()
    host.activate(LoadedModel.load(models / "float32.tflite"), manifest=manifest_for())
    regions, made = Regions(), Region()
    try:
        rid, _ = regions.register(os.dup(made.fd))
        yield InferenceServicer(host, observer=Recorder(), **kw), regions, made, rid
    finally:
        regions.close()
        made.close()


def test_repeats_answer_on_the_regions_current_bytes(serve, models: Path, reference, region: Region) -> None:
    w, b = reference
    agent = serve(LoadedModel.load(models / "float32.tflite"), manifest_for())
    rng = np.random.default_rng(1)
    with connect(agent) as sock:
        rid = region_id(sock, os.dup(region.fd))
        request = shared_request(rid, 64, 2 * 16, shape=(2, 4))
        answers = []
        for _ in range(6):  # the first takes the general path; a repeat gets a plan
            x = rng.normal(size=(2, 4)).astype(np.float32)
            region.put(64, x)
            status, body = predict(sock, request)
            assert status == Status.OK, body
            answers.append(response(body))
            (tensor,) = answers[-1].outputs
            got = np.frombuffer(tensor.data, np.float32).reshape(tensor.shape)
            np.testing.assert_allclose(got, x @ w + b, rtol=1e-5, atol=1e-6)
    first, last = answers[0], answers[-1]
    assert last.model == first.model and last.model.variant_id == "v-int8"
    assert [t.name for t in last.outputs] == [t.name for t in first.outputs] == ["logits"]
    assert list(last.outputs[0].shape) == list(first.outputs[0].shape) == [2, 3]
    assert last.outputs[0].dtype == "float32" and last.latency_ms > 0
    assert len({a.request_id for a in answers}) == 6 and all(len(a.request_id) == 32 for a in answers)
    assert len(agent.observer.predictions) == 6  # telemetry sees every request, planned or not
    assert agent.fast.planned == 5


def test_a_plans_response_is_the_protobuf_encoding(models: Path) -> None:
    with in_process(models) as (servicer, regions, made, rid):
        made.put(0, np.arange(12, dtype=np.float32).reshape(3, 4))
        request = shared_request(rid, 0, 48, shape=(3, 4))
        plan = servicer.prepare(request, regions, request.SerializeToString())
        assert plan is not None and not plan.convert
        body = servicer.predict_prepared(plan, regions)
        parsed = response(body)
        expected = servicer.predict(request, regions)
        expected.request_id, expected.latency_ms = parsed.request_id, parsed.latency_ms
        assert body == expected.SerializeToString()  # byte for byte, field order included
        del plan


def test_an_int8_models_inputs_are_quantized_again_each_call(serve, models: Path, reference, region: Region) -> None:
    w, b = reference
    agent = serve(LoadedModel.load(models / "int8.tflite"), manifest_for())
    with connect(agent) as sock:
        rid = region_id(sock, os.dup(region.fd))
        request = shared_request(rid, 0, 16)
        for scale in (0.1, 0.5, -0.7, 0.9):
            x = np.array([[0.5, -0.25, 0.75, -0.9]], np.float32) * scale
            region.put(0, x)
            status, body = predict(sock, request)
            assert status == Status.OK, body
            (tensor,) = response(body).outputs
            expected = x @ w + b
            got = np.frombuffer(tensor.data, np.float32).reshape(tensor.shape)
            np.testing.assert_allclose(got, expected, atol=3 * np.abs(expected).max() / 64 + 1e-3)


def test_nan_for_a_quantized_input_is_refused_on_a_repeat(serve, models: Path, region: Region) -> None:
    agent = serve(LoadedModel.load(models / "int8.tflite"), manifest_for())
    with connect(agent) as sock:
        rid = region_id(sock, os.dup(region.fd))
        request = shared_request(rid, 0, 16)
        region.put(0, np.ones((1, 4), np.float32))
        for _ in range(3):
            assert predict(sock, request)[0] == Status.OK
        region.put(0, np.array([[np.nan, 0, 0, 0]], np.float32))
        status, body = predict(sock, request)
        assert status == Status.INVALID_ARGUMENT and b"NaN or infinite values cannot be quantized" in body
        region.put(0, np.ones((1, 4), np.float32))
        assert predict(sock, request)[0] == Status.OK  # the connection and its plan go on
    assert [kind for _, kind in agent.observer.errors] == ["invalid_input"]


def test_a_new_model_is_used_at_once(serve, models: Path, region: Region) -> None:
    agent = serve(LoadedModel.load(models / "float32.tflite"), manifest_for("v-fp32"))
    with connect(agent) as sock:
        rid = region_id(sock, os.dup(region.fd))
        request = shared_request(rid, 0, 16)
        region.put(0, np.ones((1, 4), np.float32))
        for _ in range(3):
            status, body = predict(sock, request)
            assert status == Status.OK and response(body).model.variant_id == "v-fp32"
        agent.host.activate(LoadedModel.load(models / "int8.tflite"), manifest=manifest_for("v-int8"))
        for _ in range(3):
            status, body = predict(sock, request)
            assert status == Status.OK and response(body).model.variant_id == "v-int8"
        assert agent.fast.planned == 4  # the plan for each model: from the second request on
        agent.host.clear()
        status, body = predict(sock, request)
        assert status == Status.FAILED_PRECONDITION and b"no model is active" in body


def test_an_unregistered_region_ends_the_plan(serve, models: Path, region: Region) -> None:
    agent = serve(LoadedModel.load(models / "float32.tflite"), manifest_for())
    with connect(agent) as sock:
        rid = region_id(sock, os.dup(region.fd))
        request = shared_request(rid, 0, 16)
        for _ in range(3):
            assert predict(sock, request)[0] == Status.OK
        status, _ = call(sock, Method.UNREGISTER_REGION, inference_pb2.UnregisterRegionRequest(region_id=rid).SerializeToString())
        assert status == Status.OK  # the plan's views did not keep the region mapped
        status, body = predict(sock, request)
        assert status == Status.INVALID_ARGUMENT and f"unknown shared-memory region {rid}".encode() in body
        again = region_id(sock, os.dup(region.fd))
        region.put(0, np.full((1, 4), 2.0, np.float32))
        for _ in range(3):
            assert predict(sock, shared_request(again, 0, 16))[0] == Status.OK


def test_feedback_for_a_planned_prediction(serve, models: Path, region: Region) -> None:
    agent = serve(LoadedModel.load(models / "float32.tflite"), manifest_for())
    with connect(agent) as sock:
        rid = region_id(sock, os.dup(region.fd))
        request = shared_request(rid, 0, 16)
        region.put(0, np.array([[1, 0, 0, 0]], np.float32))
        for _ in range(3):
            status, body = predict(sock, request)
        answer = response(body)
        top1 = int(np.argmax(np.frombuffer(answer.outputs[0].data, np.float32)))
        status, body = call(sock, Method.FEEDBACK,
                            inference_pb2.FeedbackRequest(request_id=answer.request_id, label=top1).SerializeToString())
        assert status == Status.OK and inference_pb2.FeedbackResponse.FromString(body).matched
    assert [label for _, label, _ in agent.observer.feedback] == [top1]


def test_a_full_waiting_line_refuses_a_repeat(models: Path) -> None:
    with in_process(models, admission=Admission(max_waiting=0)) as (servicer, regions, _, rid):
        request = shared_request(rid, 0, 16)
        plan = servicer.prepare(request, regions, request.SerializeToString())
        assert plan is not None
        assert servicer.admission.try_enter()  # another request holds the model
        with pytest.raises(ApiError) as refused:
            servicer.predict_prepared(plan, regions)
        assert refused.value.code.name == "RESOURCE_EXHAUSTED" and "busy" in refused.value.message
        servicer.admission.leave()
        assert servicer.predict_prepared(plan, regions) is not None
        del plan


@pytest.mark.parametrize("case", ["bytes", "unknown-model", "bad-shape"])
def test_requests_that_get_no_plan(models: Path, case: str) -> None:
    with in_process(models) as (servicer, regions, _, rid):
        request = {
            "bytes": inference_pb2.PredictRequest(inputs=[inference_pb2.Tensor(
                name="features", shape=[1, 4], dtype="float32", data=bytes(16))]),
            "unknown-model": shared_request(rid, 0, 16, model="other"),
            "bad-shape": shared_request(rid, 0, 12, shape=(1, 3)),
        }[case]
        assert servicer.prepare(request, regions, request.SerializeToString()) is None


def test_the_clients_hot_loop_reuses_its_request(serve, models: Path, reference) -> None:
    w, b = reference
    agent = serve(LoadedModel.load(models / "float32.tflite"), manifest_for())
    client = agent.client(transport="fast")  # shared memory for every input: the default
    rng = np.random.default_rng(2)
    x = rng.normal(size=(8, 4)).astype(np.float32)
    for rows in (x, x * 2, x[::-1], x[:3], x[:3] + 1, x.astype(np.float64), x):  # new values, a strided view,
        outputs, _, _ = client.predict({"features": rows})  # another shape, another dtype, back again
        np.testing.assert_allclose(outputs["logits"], rows.astype(np.float32) @ w + b, rtol=1e-4, atol=1e-4)
    assert client._placed is not None and client._region is not None
    # planned: x*2 and x[::-1] (repeats of x's body), x[:3]+1 (a repeat of x[:3]'s); float64 and the last x differ
    assert agent.fast.planned == 3
    with pytest.raises(Exception, match="features"):
        client.predict({"other": x})  # another name: the general path, and its error
    np.testing.assert_allclose(client.predict({"features": x})[0]["logits"], x @ w + b, rtol=1e-4, atol=1e-4)


def test_repeats_write_their_outputs_to_the_region(serve, models: Path, reference, region: Region) -> None:
    w, b = reference
    agent = serve(LoadedModel.load(models / "float32.tflite"), manifest_for())
    with connect(agent) as sock:
        rid = region_id(sock, os.dup(region.fd))
        out = inference_pb2.SharedSlice(region_id=rid, offset=1024, length=64)
        request = shared_request(rid, 0, 16, outputs_to=out)
        for value in (1.0, 2.0, -3.0, 0.5):
            x = np.full((1, 4), value, np.float32)
            region.put(0, x)
            status, body = predict(sock, request)
            assert status == Status.OK, body
            (tensor,) = response(body).outputs
            assert tensor.data == b"" and tensor.shared.offset == 1024 and tensor.shared.length == 12
            written = np.frombuffer(region.memory, np.float32, 3, 1024).reshape(tensor.shape).copy()
            np.testing.assert_allclose(written, x @ w + b, rtol=1e-5)
    assert agent.fast.planned == 3
