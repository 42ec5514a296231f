"""The fast local transport end to end: LocalModelService as the daemon wires it, an app in another
process calling Predict, Feedback and Health through agent.client.LocalClient (fast socket, then gRPC),
and the agent's telemetry window counting every request of both transports."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

from agent.serve.service import LocalModelService
from agent.telemetry.drift import calibration_stats
from agent.telemetry.histogram import LatencyHistogram
from edgefleet.v1 import hardware_pb2, manifest_pb2, telemetry_pb2
from tests.unit.serve.models import built_models

FAST_REQUESTS = 30
GRPC_REQUESTS = 5

# The app: another process with only the client library (and, for its last calls, gRPC).
APP = r"""
import json, sys
import numpy as np
from agent.client import InferenceError, LocalClient

socket_path, fast_n, grpc_n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rng = np.random.default_rng(0)
result = {"latencies": [], "matched": [], "errors": []}
with LocalClient(socket_path) as agent:
    result["transport"] = agent.transport
    for i in range(fast_n):
        outputs, request_id, latency_ms = agent.predict({"features": rng.normal(size=(1, 4)).astype(np.float32)})
        result["latencies"].append(latency_ms)
        top1 = int(np.argmax(outputs["logits"]))
        label = top1 if i % 3 else (top1 + 1) % 3          # two in three predictions right
        result["matched"].append(agent.feedback(request_id, label=label))
    try:
        agent.predict({"features": np.zeros((1, 4), np.int32)})
    except InferenceError as exc:
        result["errors"].append([exc.code, exc.message])
    result["health"] = agent.health().status
    result["grpc_loaded_on_fast_path"] = "grpc" in sys.modules
with LocalClient(socket_path, transport="grpc") as agent:
    for _ in range(grpc_n):
        result["latencies"].append(agent.predict({"features": rng.normal(size=(1, 4)).astype(np.float32)})[2])
print(json.dumps(result))
"""


@pytest.fixture(scope="module")
def models(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return built_models(request, tmp_path_factory)


def test_an_app_process_on_the_fast_socket_is_counted_in_telemetry(models: Path, tmp_path: Path) -> None:
    sockdir = Path(tempfile.mkdtemp(prefix="eft-", dir="/tmp"))
    emitted: list[telemetry_pb2.Telemetry] = []
    hardware = hardware_pb2.HardwareProfile(power_model=hardware_pb2.PowerModel(idle_watts=2.0, active_watts=6.0))
    service = LocalModelService(tmp_path, sockdir / "inference.sock", hardware, emit_telemetry=emitted.append,
                                interval_s=3600, sys_root=tmp_path / "sys")
    manifest = manifest_pb2.ModelManifest(model="linear", version="1", variant_id="fp32", task="classification", sequence=1)
    manifest.calibration.CopyFrom(calibration_stats(np.random.default_rng(1).normal(size=(1000, 4))))
    service.collector.drift_min_gap_s = 0  # bin every request, so the count below is exact
    try:
        service.start()
        service.on_active_changed(models / "float32.tflite", manifest)
        assert service.fast is not None and service.fast.socket_path.exists()
        app = subprocess.run([sys.executable, "-c", APP, str(service.server.socket_path), str(FAST_REQUESTS), str(GRPC_REQUESTS)],
                             capture_output=True, text=True, timeout=120)
        assert app.returncode == 0, app.stderr[-3000:]
        result = json.loads(app.stdout)
    finally:
        service.stop()  # the partial window goes out
        shutil.rmtree(sockdir, ignore_errors=True)
    assert result["transport"] == "fast" and result["health"] == "serving"
    assert result["grpc_loaded_on_fast_path"] is False  # an app on the fast socket never loads gRPC
    ((code, message),) = result["errors"]
    assert code == 3 and "'features'" in message and "int32" in message  # INVALID_ARGUMENT, naming the tensor

    models_seen = [m for t in emitted for m in t.models]
    (m,) = models_seen
    assert (m.model, m.version, m.variant_id) == ("linear", "1", "fp32")
    assert m.requests == FAST_REQUESTS + GRPC_REQUESTS + 1 and m.errors == 1
    histogram = LatencyHistogram.from_proto(m.latency)
    expected = LatencyHistogram()
    for ms in result["latencies"]:
        expected.observe(ms)
    assert histogram == expected  # exactly the latencies the app was told, from both transports
    assert m.accuracy.online_count == FAST_REQUESTS
    assert m.accuracy.online_metric == pytest.approx(np.mean(result["matched"]))
    assert m.drift.samples == FAST_REQUESTS + GRPC_REQUESTS
    assert m.power.source == "estimate"
