"""agent.serve.host (atomic swap, close after the last lease), admission, recent predictions, wire codec."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from agent.runtime import InvalidInput, ModelLoadError
from agent.serve import Admission, ModelHost, Prediction, RecentPredictions
from agent.serve.host import ModelKey, infer_task
from agent.serve.recent import UnknownRequest
from agent.serve.wire import array_from_tensor, decode_inputs, tensor_from_array
from edgefleet.v1 import inference_pb2, manifest_pb2


class Model:
    class backend:  # noqa: N801
        key, reason = "cpu", ""

    def __init__(self, tag: float, units: int = 3) -> None:
        self.tag = tag
        self.closed = threading.Event()
        self.inputs = [manifest_pb2.TensorSpec(name="x", shape=[1, 2], dtype="float32")]
        self.outputs = [manifest_pb2.TensorSpec(name="y", shape=[1, units], dtype="float32")]

    def predict(self, inputs):
        return {"y": np.full((1, 3), self.tag, np.float32)}

    def evaluate(self, x, y, task):
        return self.tag

    def close(self) -> None:
        self.closed.set()


def manifest(version: str) -> manifest_pb2.ModelManifest:
    return manifest_pb2.ModelManifest(model="m", version=version, variant_id=f"v{version}", task="classification", sequence=int(version))


def test_swap_is_atomic_and_the_old_model_closes_after_its_last_lease() -> None:
    host = ModelHost()
    seen: list = []
    host.subscribe(seen.append)
    old, new = Model(1.0), Model(2.0)
    host.activate(old, manifest=manifest("1"))
    with host.lease() as served:
        assert served.model is old
        host.activate(new, manifest=manifest("2"))
        assert host.current.model is new
        assert not old.closed.is_set()  # still in use by this request
        assert served.model.predict({})["y"][0, 0] == 1.0
    assert old.closed.is_set()
    assert [s.key for s in seen] == [ModelKey("m", "1", "v1"), ModelKey("m", "2", "v2")]
    host.activate(Model(3.0), manifest=manifest("3"))  # nobody leases `new`: closed at once
    assert new.closed.is_set()
    host.clear()
    assert host.current is None and seen[-1] is None


def test_concurrent_requests_see_one_model_or_the_other() -> None:
    host = ModelHost()
    host.activate(Model(1.0), manifest=manifest("1"))
    stop = threading.Event()
    bad: list = []

    def requests() -> None:
        while not stop.is_set():
            with host.lease() as served:
                value = served.model.predict({})["y"]
                if served.model.closed.is_set() or len(set(value.ravel())) != 1:
                    bad.append(served.key)

    threads = [threading.Thread(target=requests) for _ in range(4)]
    for t in threads:
        t.start()
    for i in range(2, 200):
        host.activate(Model(float(i)), manifest=manifest(str(i)))
    stop.set()
    for t in threads:
        t.join(10)
    assert bad == []


def test_served_model_names_and_task() -> None:
    host = ModelHost()
    served = host.activate(Model(1.0), manifest=manifest("4"))
    assert served.task == "classification" and served.active.sequence == 4
    for name in ("", "m", "m:4", "v4"):
        assert served.matches(name)
    assert not served.matches("m:5") and not served.matches("other")
    bare = host.activate(Model(1.0, units=1))
    assert bare.task == "regression" and bare.key.model  # without a manifest: from the output shape
    assert infer_task([manifest_pb2.TensorSpec(shape=[1, 10])]) == "classification"


def test_load_failure_keeps_the_current_model(tmp_path: Path) -> None:
    host = ModelHost()
    host.activate(Model(1.0), manifest=manifest("1"))
    broken = tmp_path / "broken.tflite"
    broken.write_bytes(b"not a flatbuffer")
    with pytest.raises(ModelLoadError, match="broken.tflite"):
        host.load(broken, manifest("2"))
    assert host.current.key.version == "1"


def test_admission_bounds_running_plus_waiting() -> None:
    gate = Admission(max_waiting=2)
    assert [gate.try_enter() for _ in range(4)] == [True, True, True, False]
    assert gate.refused == 1 and gate.inside == 3
    gate.leave()
    assert gate.try_enter()
    for _ in range(3):
        gate.leave()
    with pytest.raises(RuntimeError):
        gate.leave()
    with pytest.raises(ValueError):
        Admission(max_waiting=-1)


def test_recent_predictions_keep_the_last_n_and_claim_once() -> None:
    recent = RecentPredictions(size=2)
    key = ModelKey("m", "1", "v1")
    for i in range(3):
        recent.add(f"r{i}", Prediction(key, "classification", 1, i, 0.9, None))
    assert recent.get("r0") is None and len(recent) == 2
    with pytest.raises(UnknownRequest):
        recent.claim("r0")
    assert recent.claim("r1").top1 == 1
    assert recent.claim("r1") is None  # labelled already


def test_a_kept_prediction_carries_no_per_instance_dict() -> None:
    """The agent keeps up to 10,000 of them for its life: a __dict__ each would be about 0.7 MB more."""
    prediction = Prediction(ModelKey("m", "1", "v1"), "classification", 1, 3, 0.9, None)
    assert not hasattr(prediction, "__dict__")
    with pytest.raises(AttributeError):
        prediction.note = "x"  # type: ignore[attr-defined]


def test_wire_round_trip_and_checks() -> None:
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    tensor = tensor_from_array("features", x)
    assert list(tensor.shape) == [3, 4] and tensor.dtype == "float32" and len(tensor.data) == 48
    np.testing.assert_array_equal(array_from_tensor(tensor), x)
    # big-endian arrays go out little-endian
    big = x.astype(">f4")
    assert tensor_from_array("features", big).data == tensor.data
    # a Fortran-ordered array goes out in C order
    assert tensor_from_array("f", np.asfortranarray(x)).data == tensor.data
    # empty name for a one-input model; empty dtype means float32
    decoded = decode_inputs([inference_pb2.Tensor(shape=[1, 2], data=np.ones(2, np.float32).tobytes())], ["x"])
    np.testing.assert_array_equal(decoded["x"], [[1.0, 1.0]])
    with pytest.raises(InvalidInput, match="without a name"):
        decode_inputs([inference_pb2.Tensor(shape=[1], data=b"\0" * 4)], ["a", "b"])
    scalar = decode_inputs([tensor_from_array("s", np.float32(3.5))], ["s"])["s"]
    assert scalar.shape == () and float(scalar) == 3.5
