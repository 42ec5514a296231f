"""Telemetry from an enrolled device through a real broker into a real coordinator: stored once, queryable, on /metrics.

The device is played by a paho client with the identity the coordinator handed out at enrollment (no agent
process: this tests the coordinator's half). It publishes envelope-wrapped Telemetry at QoS 1, an exact
duplicate of one report, garbage bytes and an absurd report; edgectl and /metrics must count every good
report exactly once and the bad ones as dropped.
"""
from __future__ import annotations

import json
import threading
import urllib.request
import uuid
from datetime import datetime, timedelta, timezone

import grpc
import paho.mqtt.client as mqtt
import pytest

from agent.telemetry.histogram import LatencyHistogram
from edgefleet import envelope, topics
from edgefleet.v1 import admin_pb2, admin_pb2_grpc, telemetry_pb2
from tests.fleet import CoordinatorProcess, register, wait_for
from tests.mosquitto import MosquittoProcess

BROKER_CONF = "listener {port} 127.0.0.1\nallow_anonymous true\nmax_queued_messages 10000\n"
REPORTS = 20


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    b = MosquittoProcess(BROKER_CONF, tmp_path_factory.mktemp("broker"))
    b.start()
    yield b
    b.stop()


@pytest.fixture(scope="module")
def coord(tmp_path_factory, broker):
    c = CoordinatorProcess(
        tmp_path_factory.mktemp("coord"),
        f"mqtt://127.0.0.1:{broker.port}",
        extra_env={"EDGEFLEET_TELEMETRY__FLUSH_INTERVAL_S": "0.05"},
    ).start()
    # Publishing before the coordinator's shared subscription exists would lose messages (no session yet).
    c.process.wait_line(lambda line: "connected to broker" in line, 30)
    yield c
    c.stop()


def enroll(coord: CoordinatorProcess, token: str) -> admin_pb2.EnrollResponse:
    with grpc.insecure_channel(coord.grpc_address) as channel:
        return admin_pb2_grpc.EnrollmentStub(channel).Enroll(admin_pb2.EnrollRequest(token=token, agent_version="test"), timeout=10)


def device_client(identity: admin_pb2.EnrollResponse, port: int) -> mqtt.Client:
    client = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2, client_id=identity.mqtt.client_id, protocol=mqtt.MQTTv5)
    client.username_pw_set(identity.mqtt.username, identity.mqtt.password)
    connected = threading.Event()
    client.on_connect = lambda *a: connected.set()
    client.connect("127.0.0.1", port)
    client.loop_start()
    assert connected.wait(10), "the device client could not connect"
    return client


def histogram(values) -> LatencyHistogram:
    h = LatencyHistogram()
    for v in values:
        h.observe(v)
    return h


def report(end: datetime, i: int) -> telemetry_pb2.Telemetry:
    """Report i: 10 + i requests, latencies 1..(10+i) ms, energy 2 mJ, 1 error."""
    h = histogram([1.0 + k for k in range(10 + i)])
    t = telemetry_pb2.Telemetry(sequence=i, system=telemetry_pb2.SystemTelemetry(cpu_percent=20.0 + i, rss_bytes=40_000_000 + i))
    t.window_start.FromDatetime(end - timedelta(seconds=10))
    t.window_end.FromDatetime(end)
    t.models.add(
        model="digits", version="3", variant_id="int8", requests=10 + i, errors=1, latency=h.to_proto(),
        p50_ms=h.percentile(50), p95_ms=h.percentile(95), p99_ms=h.percentile(99), inferences_per_s=(10 + i) / 10,
        power=telemetry_pb2.PowerFigures(source="estimate", avg_watts=1.5, energy_per_inference_mj=2.0),
        accuracy=telemetry_pb2.AccuracyFigures(golden_metric=0.97, golden_count=64, mean_confidence=0.9),
    )
    return t


def scrape(coord: CoordinatorProcess) -> dict[str, float]:
    body = urllib.request.urlopen(f"http://127.0.0.1:{coord.metrics_port}/metrics", timeout=5).read().decode()
    return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in body.splitlines() if line and not line.startswith("#")}


def test_reports_are_stored_once_and_queryable(coord, broker):
    reg = register(coord, "cam-telemetry", "role=camera")
    device_id = reg["device"]["id"]
    identity = enroll(coord, reg["enrollment_token"])
    assert identity.device_id == device_id
    client = device_client(identity, broker.port)
    topic = topics.telemetry(device_id)
    now = datetime.now(timezone.utc)
    payloads = [envelope.encode(device_id, telemetry=report(now - timedelta(seconds=10 * (REPORTS - i)), i)) for i in range(REPORTS)]
    absurd = report(now, 99)
    absurd.models[0].p50_ms = -4.0
    try:
        for payload in payloads:
            client.publish(topic, payload, qos=1).wait_for_publish(10)
        client.publish(topic, payloads[7], qos=1).wait_for_publish(10)  # an exact duplicate (a QoS 1 redelivery)
        client.publish(topic, b"\x00\xffgarbage, not an envelope", qos=1).wait_for_publish(10)
        client.publish(topic, envelope.encode(device_id, telemetry=absurd), qos=1).wait_for_publish(10)
    finally:
        client.loop_stop()
        client.disconnect()

    def drops_counted():
        m = scrape(coord)
        return m.get('edgefleet_mqtt_dropped_total{reason="bad_telemetry"}') == 1 and m.get('edgefleet_mqtt_dropped_total{reason="malformed"}', 0) >= 1
    wait_for(drops_counted, 30, "the garbage and the absurd report counted as dropped")

    def series():
        rows = json.loads(coord.edgectl("telemetry", "--device", "cam-telemetry", "--series", "--since", "1h", "-o", "json").stdout)
        return rows if len(rows) >= REPORTS else None
    rows = wait_for(series, 30, f"{REPORTS} stored windows")
    assert len(rows) == REPORTS  # the duplicate was not stored again
    assert [r["requests"] for r in rows] == [10 + i for i in range(REPORTS)]
    assert all(r["p50_ms"] >= 0 for r in rows)

    (summary,) = json.loads(coord.edgectl("telemetry", "--select", "role=camera", "--since", "1h", "-o", "json").stdout)
    everything = histogram([1.0 + k for i in range(REPORTS) for k in range(10 + i)])
    assert summary["windows"] == REPORTS
    assert summary["requests"] == sum(10 + i for i in range(REPORTS))
    assert summary["errors"] == REPORTS
    assert summary["p95_ms"] == pytest.approx(everything.percentile(95))
    assert (summary["energy_per_inference_mj"], summary["power_source"]) == (2.0, "estimate")
    assert (summary["golden_accuracy"], summary["golden_count"]) == (0.97, 64)

    (latest,) = json.loads(coord.edgectl("telemetry", "--model", "digits:3", "-o", "json").stdout)
    assert latest["requests"] == 10 + REPORTS - 1 and latest["cpu_percent"] == 20.0 + REPORTS - 1
    shown = json.loads(coord.edgectl("device", "show", "cam-telemetry", "-o", "json").stdout)
    assert shown["latest_telemetry"]["requests"] == 10 + REPORTS - 1
    assert shown["last_seen"] is not None

    m = scrape(coord)
    assert m["edgefleet_telemetry_rows_written_total"] == REPORTS
    assert m["edgefleet_telemetry_duplicates_total"] == 1
    assert m['edgefleet_model_requests_total{model="digits",version="3"}'] == summary["requests"]
    assert m['edgefleet_model_devices_reporting{model="digits",version="3"}'] == 1
    last = histogram([1.0 + k for k in range(10 + REPORTS - 1)])
    assert m['edgefleet_model_latency_ms{model="digits",quantile="0.95",version="3"}'] == pytest.approx(last.percentile(95))
    assert m['edgefleet_model_energy_per_inference_mj{model="digits",version="3"}'] == 2.0
    assert m['edgefleet_model_accuracy{kind="golden",model="digits",version="3"}'] == 0.97
    assert m['edgefleet_devices_by_state{state="registered"}'] >= 1


def test_a_stranger_and_an_impersonator_store_nothing(coord, broker):
    victim = register(coord, "cam-victim")["device"]["id"]
    client = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2, client_id=f"x-{uuid.uuid4().hex[:6]}", protocol=mqtt.MQTTv5)
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    before = scrape(coord)
    try:
        now = datetime.now(timezone.utc)
        client.publish(topics.telemetry("d-stranger"), envelope.encode("d-stranger", telemetry=report(now, 1)), qos=1).wait_for_publish(10)
        client.publish(topics.telemetry(victim), envelope.encode("d-other", telemetry=report(now, 1)), qos=1).wait_for_publish(10)
    finally:
        client.loop_stop()
        client.disconnect()

    def dropped(reason: str) -> float:
        return scrape(coord).get(f'edgefleet_mqtt_dropped_total{{reason="{reason}"}}', 0) - before.get(f'edgefleet_mqtt_dropped_total{{reason="{reason}"}}', 0)
    wait_for(lambda: dropped("unknown_device") == 1 and dropped("device_mismatch") == 1, 30, "the stranger and the impersonator dropped")
    assert json.loads(coord.edgectl("telemetry", "--device", "cam-victim", "-o", "json").stdout) == []
