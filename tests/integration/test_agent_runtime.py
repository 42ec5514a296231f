"""The agent runtime end to end on one machine: a real model served on a unix socket, an app in another
process calling Predict and Feedback over gRPC, and the latency figures arriving at an MQTT subscriber
in a Telemetry message that went through the outbox and a private mosquitto."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import numpy as np
import pytest

from agent.outbox import Outbox
from agent.publisher import OutboxPublisher
from agent.serve import InferenceServer, ModelHost
from agent.telemetry.collector import TelemetryCollector
from agent.telemetry.drift import calibration_stats
from agent.telemetry.histogram import LatencyHistogram
from agent.telemetry.power import PowerSampler, power_meters
from agent.telemetry.system import SystemSampler
from edgefleet import envelope, session, topics
from edgefleet.v1 import hardware_pb2, manifest_pb2
from tests.mosquitto import MosquittoProcess, mosquitto_binary
from tests.unit.serve.models import built_models

DEVICE = "runtime-dev"
REQUESTS = 40

# The app: another process, only grpc and the generated stubs.
APP = r"""
import json, sys
import grpc
import numpy as np
from edgefleet.v1 import inference_pb2, inference_pb2_grpc

channel = grpc.insecure_channel("unix:" + sys.argv[1])
stub = inference_pb2_grpc.InferenceStub(channel)
rng = np.random.default_rng(0)
latencies, labels = [], []
for i in range(int(sys.argv[2])):
    x = rng.normal(size=(1, 4)).astype(np.float32)
    tensor = inference_pb2.Tensor(name="features", shape=[1, 4], dtype="float32", data=x.tobytes())
    response = stub.Predict(inference_pb2.PredictRequest(inputs=[tensor]), timeout=10)
    latencies.append(response.latency_ms)
    logits = np.frombuffer(response.outputs[0].data, dtype="<f4")
    top1 = int(np.argmax(logits))
    label = top1 if i % 4 else (top1 + 1) % 3      # three in four predictions right
    matched = stub.Feedback(inference_pb2.FeedbackRequest(request_id=response.request_id, label=label), timeout=10).matched
    labels.append(bool(matched))
health = stub.Health(inference_pb2.HealthRequest(), timeout=10)
print(json.dumps({"latencies": latencies, "matched": labels, "health": health.status}))
"""


@pytest.fixture(scope="module")
def models(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return built_models(request, tmp_path_factory)


@pytest.mark.skipif(mosquitto_binary() is None, reason="mosquitto is not installed")
def test_latency_from_an_app_reaches_telemetry_over_mqtt(models: Path, tmp_path: Path) -> None:
    sockdir = Path(tempfile.mkdtemp(prefix="efr-", dir="/tmp"))
    broker = MosquittoProcess("allow_anonymous true\n", tmp_path / "broker").start()
    received: list = []
    got_models = threading.Event()

    def on_message(client, userdata, msg) -> None:
        env = envelope.decode(msg.payload, expect="telemetry")
        received.append(env)
        if any(m.requests for m in env.telemetry.models):
            got_models.set()

    watcher = session.make_client("watcher", "5")
    subscribed = threading.Event()
    watcher.on_connect = lambda client, *a: client.subscribe(topics.telemetry(DEVICE), qos=1)
    watcher.on_subscribe = lambda *a: subscribed.set()
    watcher.on_message = on_message
    address = session.BrokerAddress(broker.host, broker.port, False)
    session.connect_async(watcher, address, keepalive=10, session_expiry_s=60)
    watcher.loop_start()

    agent_client = session.make_client(DEVICE, "5")
    connected = threading.Event()
    agent_client.on_connect = lambda *a: connected.set()
    agent_client.on_disconnect = lambda *a: connected.clear()
    outbox = Outbox.open(tmp_path / "outbox.db")
    publisher = OutboxPublisher.for_client(outbox, agent_client, connected, DEVICE)

    manifest = manifest_pb2.ModelManifest(model="linear", version="1", variant_id="fp32", task="classification", sequence=1)
    manifest.calibration.CopyFrom(calibration_stats(np.random.default_rng(1).normal(size=(1000, 4))))
    power = PowerSampler(power_meters(Path("/nonexistent"), hardware_pb2.PowerModel(idle_watts=2.0, active_watts=6.0),
                                      cpu_utilisation=lambda: 0.5))
    collector = TelemetryCollector(system=SystemSampler(tmp_path), power=power, interval_s=3600,
                                   drift_min_gap_s=0, emit=publisher.put_telemetry)
    host = ModelHost()
    host.subscribe(collector.on_activate)
    server = InferenceServer(sockdir / "inference.sock", host, observer=collector)
    try:
        assert subscribed.wait(20)
        session.connect_async(agent_client, address, keepalive=10, session_expiry_s=60)
        agent_client.loop_start()
        publisher.start()
        host.load(models / "float32.tflite", manifest)
        server.start()

        app = subprocess.run([sys.executable, "-c", APP, str(server.socket_path), str(REQUESTS)],
                             capture_output=True, text=True, timeout=120)
        assert app.returncode == 0, app.stderr[-3000:]
        result = json.loads(app.stdout)
        assert result["health"] == "serving"

        publisher.put_telemetry(collector.collect())  # close the window now rather than in an hour
        assert got_models.wait(30), "no telemetry with requests reached the subscriber"
        (env,) = [e for e in received if any(m.requests for m in e.telemetry.models)]
        telemetry = env.telemetry
        assert env.device_id == DEVICE and telemetry.sequence == 1
        (m,) = telemetry.models
        assert (m.model, m.version, m.variant_id) == ("linear", "1", "fp32")
        assert m.requests == REQUESTS and m.errors == 0
        histogram = LatencyHistogram.from_proto(m.latency)
        assert histogram.count == REQUESTS
        assert (m.p50_ms, m.p95_ms, m.p99_ms) == (histogram.percentile(50), histogram.percentile(95), histogram.percentile(99))
        # the latencies the app was told are the ones in the histogram
        assert histogram == _histogram(result["latencies"])
        assert 0 < m.p50_ms <= m.p95_ms <= m.p99_ms
        assert m.inferences_per_s > 0
        assert m.power.source == "estimate" and m.power.avg_watts == pytest.approx(4.0)
        assert m.power.energy_per_inference_mj == pytest.approx(4.0 * histogram.mean_ms())
        assert m.accuracy.online_count == REQUESTS
        assert m.accuracy.online_metric == pytest.approx(np.mean(result["matched"])) == pytest.approx(0.75)
        assert 0 < m.accuracy.mean_confidence <= 1
        assert m.drift.samples == REQUESTS and len(m.drift.per_feature) == 4
        assert telemetry.system.rss_bytes > 0
        assert publisher.flush(20) and len(outbox) == 0
    finally:
        server.stop(0)
        publisher.stop()
        agent_client.disconnect()
        agent_client.loop_stop()
        watcher.disconnect()
        watcher.loop_stop()
        outbox.close()
        broker.stop()
        shutil.rmtree(sockdir, ignore_errors=True)


def _histogram(latencies: list[float]) -> LatencyHistogram:
    histogram = LatencyHistogram()
    for ms in latencies:
        histogram.observe(ms)
    return histogram
