"""Bad input at the foundation's edges: clear one-line errors, nothing stored lost, services keep running."""
from __future__ import annotations

import json
import subprocess
import urllib.request

import paho.mqtt.client as mqtt
import pytest

from tests.fleet import AgentProcess, CoordinatorProcess, base_env, register, script, wait_for
from tests.mosquitto import MosquittoProcess, free_port

BROKER_CONF = "listener {port} 127.0.0.1\nallow_anonymous true\n"


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    b = MosquittoProcess(BROKER_CONF, tmp_path_factory.mktemp("broker"))
    b.start()
    yield b
    b.stop()


@pytest.fixture(scope="module")
def coord(tmp_path_factory, broker):
    c = CoordinatorProcess(tmp_path_factory.mktemp("coord"), f"mqtt://127.0.0.1:{broker.port}").start()
    yield c
    c.stop()


def one_line_error(res: subprocess.CompletedProcess, needle: str) -> None:
    assert res.returncode != 0
    assert "Traceback" not in res.stderr + res.stdout
    lines = [l for l in res.stderr.strip().splitlines() if l.strip()]
    assert len(lines) == 1, res.stderr
    assert needle in lines[0], lines[0]


def test_enrollment_token_unknown_and_reused(tmp_path, coord):
    agent = AgentProcess("x", tmp_path / "x")
    one_line_error(agent.enroll(coord, "no-such-token"), "unknown enrollment token")
    reg = register(coord, "reuse-me")
    assert agent.enroll(coord, reg["enrollment_token"]).returncode == 0
    other = AgentProcess("y", tmp_path / "y")
    one_line_error(other.enroll(coord, reg["enrollment_token"]), "already used")
    assert not (other.state_dir / "identity.json").exists()


def test_duplicate_device_name_keeps_the_first(coord):
    first = register(coord, "dup", "site=a")
    res = coord.edgectl("device", "register", "dup", "--label", "site=b", check=False)
    one_line_error(res, "already exists")
    assert coord.device("dup")["id"] == first["device"]["id"]
    assert coord.device("dup")["labels"] == {"site": "a"}


def test_wrong_admin_token_and_unreachable_coordinator(coord):
    one_line_error(coord.edgectl("device", "list", check=False, token="wrong"), "token")
    env = base_env(EDGEFLEET_COORDINATOR=f"127.0.0.1:{free_port()}", EDGEFLEET_TOKEN=coord.token)
    res = subprocess.run([script("edgectl"), "device", "list"], env=env, capture_output=True, text=True, timeout=60)
    one_line_error(res, "cannot reach the coordinator")


def test_unwritable_state_dir(tmp_path, coord):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    agent = AgentProcess("z", blocker / "state")
    reg = register(coord, "unwritable")
    one_line_error(agent.enroll(coord, reg["enrollment_token"]), "not writable")
    # the token was not spent by the failed attempt
    good = AgentProcess("z2", tmp_path / "good")
    assert good.enroll(coord, reg["enrollment_token"]).returncode == 0


def test_garbage_and_strangers_on_coordinator_topics(coord, broker):
    reg = register(coord, "victim")
    device_id = reg["device"]["id"]
    client = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2, client_id="attacker", protocol=mqtt.MQTTv5)
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    try:
        for topic in (f"ef/v1/dev/{device_id}/hello", f"ef/v1/dev/{device_id}/status", f"ef/v1/dev/{device_id}/telemetry", "ef/v1/dev/d-nobody/hello"):
            client.publish(topic, b"\x00\xffnot protobuf", qos=1).wait_for_publish(5)
        from edgefleet import envelope
        from edgefleet.v1 import device_pb2

        stranger = envelope.encode("d-nobody", hello=device_pb2.Hello(agent_version="x"))
        client.publish("ef/v1/dev/d-nobody/hello", stranger, qos=1).wait_for_publish(5)
    finally:
        client.loop_stop()
        client.disconnect()

    def counter(reason):
        body = urllib.request.urlopen(f"http://127.0.0.1:{coord.metrics_port}/metrics", timeout=5).read().decode()
        for line in body.splitlines():
            if line.startswith(f'edgefleet_mqtt_dropped_total{{reason="{reason}"}}'):
                return float(line.split()[-1])
        return 0.0

    wait_for(lambda: counter("malformed") >= 4 and counter("unknown_device") >= 1, 15, "drops counted in /metrics")
    assert coord.device("victim")["state"] == "registered"  # nothing recorded from garbage
    assert coord.process.proc.poll() is None
    coord.edgectl("device", "list")  # still serving


def test_coordinator_config_with_unknown_key(tmp_path):
    cfg = tmp_path / "bad.toml"
    cfg.write_text("[mqtt]\nkeepalive = 5\n")
    res = subprocess.run([script("edge-coordinator"), "run", "--config", str(cfg)], env=base_env(), capture_output=True, text=True, timeout=60)
    one_line_error(res, "unknown key 'mqtt.keepalive'")
    cfg.write_text("[mqtt]\nkeepalive_s = 'often'\n")
    res = subprocess.run([script("edge-coordinator"), "run", "--config", str(cfg)], env=base_env(), capture_output=True, text=True, timeout=60)
    one_line_error(res, "'mqtt.keepalive_s'")


def test_broker_unreachable_at_start(tmp_path):
    """The coordinator serves the admin API and says it is retrying; the agent retries and says so."""
    dead = f"mqtt://127.0.0.1:{free_port()}"
    c = CoordinatorProcess(tmp_path / "c", dead).start()
    agent = None
    try:
        c.process.wait_line(lambda l: "unreachable" in l and "retrying" in l, 30)
        reg = register(c, "lonely")
        agent = AgentProcess("lonely", tmp_path / "lonely")
        assert agent.enroll(c, reg["enrollment_token"]).returncode == 0
        agent.start()
        agent.process.wait_line(lambda l: "unreachable" in l and "still retrying" in l, 30)
        assert agent.process.proc.poll() is None
    finally:
        if agent:
            agent.stop()
        c.stop()
