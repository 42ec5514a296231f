"""agent.serve.service.LocalModelService: the pieces as the daemon wires them, with a fake install path."""

from __future__ import annotations

import shutil
import tempfile
import threading
from pathlib import Path

import grpc
import numpy as np
import pytest

from agent.serve.service import LocalModelService
from agent.serve.wire import tensor_from_array
from edgefleet.v1 import hardware_pb2, inference_pb2, inference_pb2_grpc, manifest_pb2, telemetry_pb2


class Deployer:
    def __init__(self, manifest: manifest_pb2.ModelManifest) -> None:
        self.manifest = manifest
        self.on_trial = True
        self.ended = threading.Event()
        self.calls: list[tuple] = []

    def trial_active(self) -> bool:
        return self.on_trial

    def active_manifest(self) -> manifest_pb2.ModelManifest:
        return self.manifest

    def commit(self) -> bool:
        self.calls.append(("commit",))
        self.on_trial = False
        self.ended.set()
        return True

    def rollback(self, reason, figures) -> bool:
        self.calls.append(("rollback", reason, dict(figures)))
        self.on_trial = False
        self.ended.set()
        return True


@pytest.fixture
def sockdir():
    path = Path(tempfile.mkdtemp(prefix="efv-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def hardware() -> hardware_pb2.HardwareProfile:
    return hardware_pb2.HardwareProfile(simulated=True, latency_factor=3.0,
                                        power_model=hardware_pb2.PowerModel(idle_watts=1.0, active_watts=3.0))


def test_serves_what_the_install_path_activates_and_ends_the_trial(models: Path, sockdir: Path, tmp_path: Path) -> None:
    emitted: list[telemetry_pb2.Telemetry] = []
    manifest = manifest_pb2.ModelManifest(model="linear", version="2", variant_id="fp32", task="classification", sequence=4,
                                          trial=manifest_pb2.TrialPolicy(inferences=10, seconds=600))
    service = LocalModelService(tmp_path, sockdir / "api.sock", hardware(), emit_telemetry=emitted.append,
                                interval_s=3600, sys_root=tmp_path / "sys")
    deployer = Deployer(manifest)
    service.supervise(deployer, interval_s=0.05)
    service.start()
    try:
        service.on_active_changed(models / "float32.tflite", manifest)
        served = service.host.current
        assert served.key.version == "2"
        service.on_active_changed(models / "float32.tflite", manifest)  # the same again: not reloaded
        assert service.host.current is served
        with grpc.insecure_channel(service.server.address) as channel:
            stub = inference_pb2_grpc.InferenceStub(channel)
            request = inference_pb2.PredictRequest(inputs=[tensor_from_array("features", np.ones((1, 4), np.float32))])
            latencies = [stub.Predict(request, timeout=10).latency_ms for _ in range(10)]
        assert deployer.ended.wait(20), "the trial did not end"
        assert deployer.calls == [("commit",)]
    finally:
        service.stop()
    (last,) = emitted  # stop() sends the partial window
    (m,) = last.models
    assert m.requests == 10 and m.power.source == "estimate"
    # a simulated board three times slower than this host
    assert m.latency.sum_ms == pytest.approx(3.0 * sum(latencies), rel=1e-6)
    assert not service.server.socket_path.exists()


def test_a_model_that_does_not_load_is_rolled_back(sockdir: Path, tmp_path: Path) -> None:
    manifest = manifest_pb2.ModelManifest(model="linear", version="3", variant_id="bad", task="classification",
                                          trial=manifest_pb2.TrialPolicy(inferences=10, seconds=600))
    broken = tmp_path / "bad.tflite"
    broken.write_bytes(b"garbage")
    service = LocalModelService(tmp_path, sockdir / "api.sock", hardware(), emit_telemetry=lambda m: None,
                                sys_root=tmp_path / "sys")
    deployer = Deployer(manifest)
    service.supervise(deployer, interval_s=0.05)
    service.start()
    try:
        service.on_active_changed(broken, manifest)  # logged, not raised
        assert deployer.ended.wait(20)
    finally:
        service.stop()
    ((kind, reason, _),) = deployer.calls
    assert kind == "rollback" and reason.startswith("load_failed: cannot load bad.tflite")
    assert service.host.current is None
