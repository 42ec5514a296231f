"""`edge-agent simulate` against a real coordinator process and a private mosquitto, over MQTT 5 and 3.1.1.

Six devices of three bundled profiles, registered with edgectl: four enrolled in this process with
enroll_fleet(), two by the simulator itself (--enroll-from a tickets file). One simulate process runs
all six: each comes online with its own identity and its profile's hardware, telemetry arrives, every
device reconnects by itself after the broker restarts (its retained `online` is back on a broker that
kept nothing), and SIGTERM makes every one of them publish `stopped` before the process exits 0.
"""
from __future__ import annotations

import json
import signal
import threading
from datetime import datetime, timezone
from pathlib import Path

import paho.mqtt.client as mqtt

import psutil
import pytest

from agent.identity import load_identity
from agent.profile import bundled_profiles, load_profile
from agent.simulate import enroll_fleet
from agent.simulate.fleet_dir import read_profile
from edgefleet import envelope, topics
from edgefleet.v1 import device_pb2
from tests.fleet import CoordinatorProcess, Process, base_env, register, script, wait_for
from tests.mosquitto import MosquittoProcess, mosquitto_binary

pytestmark = [pytest.mark.skipif(mosquitto_binary() is None, reason="mosquitto is not installed"), pytest.mark.timeout(120)]

PROFILES = ("raspberry-pi-4", "coral-dev-board", "x86-gateway")
WAIT = 30.0


@pytest.fixture(params=["5", "3.1.1"])
def stack(request, tmp_path):
    broker = MosquittoProcess("allow_anonymous true\npersistence false\n", tmp_path / "broker").start()
    coordinator = CoordinatorProcess(tmp_path / "coord", f"mqtt://127.0.0.1:{broker.port}", protocol=request.param).start()
    yield broker, coordinator
    coordinator.stop()
    broker.stop()


def retained_online(broker: MosquittoProcess, device_ids: set[str], timeout: float) -> set[str]:
    """The devices whose retained status on the broker says online, once all of `device_ids` do (or the timeout)."""
    online: set[str] = set()
    done = threading.Event()

    def on_message(client, userdata, msg) -> None:
        env = envelope.decode(bytes(msg.payload))
        if env.status.state == device_pb2.DEVICE_STATE_ONLINE:
            online.add(env.device_id)
        if online >= device_ids:
            done.set()

    client = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2, client_id="test-watcher", protocol=mqtt.MQTTv5)
    client.on_connect = lambda c, u, f, rc, p: c.subscribe(topics.all_devices(topics.STATUS), qos=1)
    client.on_message = on_message
    client.connect(broker.host, broker.port)
    client.loop_start()
    try:
        done.wait(timeout)
    finally:
        client.disconnect()
        client.loop_stop()
    return online


def test_six_devices_of_three_profiles_online_reconnect_then_stopped(stack, tmp_path: Path) -> None:
    broker, coordinator = stack
    assert set(PROFILES) <= set(bundled_profiles())
    fleet = tmp_path / "fleet"
    wanted = {f"{profile}-{i}": profile for i in (1, 2) for profile in PROFILES}
    tokens = {(name, profile): register(coordinator, name, f"kind={profile}")["enrollment_token"] for name, profile in wanted.items()}
    in_process = dict(list(tokens.items())[:4])
    by_simulator = dict(list(tokens.items())[4:])

    enrolled = enroll_fleet(coordinator.grpc_address, in_process, fleet)
    assert sorted(i.device_name for i in enrolled) == sorted(name for name, _ in in_process)
    for name, profile in in_process:
        assert read_profile(fleet / name) == profile
    tickets = tmp_path / "tickets.txt"
    tickets.write_text("# name profile token\n" + "".join(f"{n} {p} {t}\n" for (n, p), t in by_simulator.items()))

    sim = Process(
        [script("edge-agent"), "simulate", "--fleet-dir", str(fleet), "--enroll-from", str(tickets), "--coordinator", coordinator.grpc_address,
         "--telemetry-interval", "1", "--rate", "5", "--seed", "1"],
        base_env(), tmp_path / "simulate.log")
    try:
        sim.wait_line(lambda line: line.startswith("edge-agent simulate enrolled devices=2"), WAIT)
        sim.wait_line(lambda line: line.startswith("edge-agent simulate connected devices=6 of=6"), WAIT)

        def all_online():
            devices = coordinator.devices()
            return len(devices) == 6 and all(d["state"] == "online" and d.get("hardware") for d in devices) and devices

        devices = {d["name"]: d for d in wait_for(all_online, WAIT, "six simulated devices online with their hardware")}
        assert set(devices) == set(wanted)
        identities = {name: load_identity(fleet / name) for name in wanted}
        assert len({i.device_id for i in identities.values()}) == 6
        assert len({i.mqtt.client_id for i in identities.values()}) == 6
        for name, profile in wanted.items():
            hw, spec = devices[name]["hardware"], load_profile(profile)
            assert devices[name]["id"] == identities[name].device_id
            assert (hw["hardware_class"], hw["profile_name"], hw["simulated"]) == (profile, profile, True)
            assert hw["latency_factor"] == spec["latency_factor"]
            assert hw["cpu"]["arch"] == spec["cpu"]["arch"] and hw["cpu"]["cores_logical"] == spec["cpu"]["cores_logical"]
            assert [a["kind"] for a in hw.get("accelerators", [])] == [a["kind"] for a in spec.get("accelerators", [])]

        def telemetry_from_all():
            rows = json.loads(coordinator.edgectl("telemetry", "-o", "json").stdout)
            names = {row.get("device_name") or row.get("device") for row in rows}
            return names >= set(wanted) and rows

        wait_for(telemetry_from_all, WAIT, "telemetry from every simulated device")

        # A broker restart that keeps nothing: every device reconnects and says online again by itself.
        broker.restart()
        ids = {i.device_id for i in identities.values()}
        assert retained_online(broker, ids, WAIT) == ids

        # The devices share the process's threads: far fewer than one per device per component.
        threads = psutil.Process(sim.proc.pid).num_threads()
        assert threads < 6 * 3, threads

        sim.signal(signal.SIGTERM)
        assert sim.proc.wait(WAIT) == 0, sim.output()[-3000:]
        sim.wait_line(lambda line: line.startswith("edge-agent simulate stopped devices=6 said_stopped=6"), 5)

        def all_stopped():
            return all(d["state"] == "stopped" for d in coordinator.devices())

        wait_for(all_stopped, WAIT, "every simulated device stopped")
    finally:
        sim.stop()


@pytest.fixture(scope="module")
def runtime_models(request, tmp_path_factory) -> Path:
    from tests.unit.serve.models import built_models

    return built_models(request, tmp_path_factory)


def test_a_model_rolled_out_to_simulated_devices_is_installed_served_and_measured(runtime_models: Path, tmp_path: Path) -> None:
    """The real install path and real LiteRT inference: a rollout commits on every simulated device, their
    synthetic requests (golden-set rows, with feedback) show in telemetry, and a restarted simulator
    serves the committed model again from the slots."""
    import numpy as np

    broker = MosquittoProcess("allow_anonymous true\n", tmp_path / "broker").start()
    coordinator = CoordinatorProcess(tmp_path / "coord", f"mqtt://127.0.0.1:{broker.port}").start()
    sim = None
    try:
        reference = np.load(runtime_models / "reference.npz")
        x = np.random.default_rng(0).normal(size=(400, 4)).astype(np.float32)
        y = np.argmax(x @ reference["w"] + reference["b"], axis=1)  # labels the linear model gets right
        np.savez(tmp_path / "data.npz", x_train=x[:300], y_train=y[:300], x_val=x[300:], y_val=y[300:])
        tokens = {(p, p): register(coordinator, p, f"kind={p}")["enrollment_token"] for p in PROFILES}
        enroll_fleet(coordinator.grpc_address, tokens, tmp_path / "fleet")
        args = [script("edge-agent"), "simulate", "--fleet-dir", str(tmp_path / "fleet"), "--telemetry-interval", "1", "--rate", "10",
                "--feedback", "1", "--seed", "3"]
        sim = Process(args, base_env(), tmp_path / "simulate-1.log")
        sim.wait_line(lambda line: line.startswith("edge-agent simulate connected devices=3 of=3"), WAIT)

        pushed = json.loads(coordinator.edgectl("model", "push", str(runtime_models / "float32.tflite"), "--name", "lin",
                                                "--data", str(tmp_path / "data.npz"), "-o", "json", timeout=300).stdout)
        assert pushed["state"] == "ready"
        res = coordinator.edgectl("rollout", "create", "lin:1", "--canary", "1", "--trial-seconds", "2", "--watch", "-o", "json", timeout=180)
        rollout = json.loads(res.stdout)
        assert rollout["state"] == "done", rollout
        assert rollout["counts"] == {"committed": 3}

        def measured():
            rows = json.loads(coordinator.edgectl("telemetry", "-o", "json").stdout)
            ok = len(rows) == 3 and all(r["model"] == "lin" and r["requests"] > 0 and r["online_count"] > 0 for r in rows)
            return ok and rows

        before = wait_for(measured, WAIT, "telemetry of the served model from every device")
        for row in before:
            assert row["errors"] == 0 and row["p95_ms"] > 0
            assert row["golden_accuracy"] == 1.0 and row["online_accuracy"] == 1.0  # golden rows, fed back with their labels
            assert row["power_source"] == "estimate" and row["energy_per_inference_mj"] > 0

        sim.signal(signal.SIGTERM)
        assert sim.proc.wait(WAIT) == 0
        sim.stop()
        restarted = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"  # as edgectl prints times
        sim = Process(args, base_env(), tmp_path / "simulate-2.log")
        sim.wait_line(lambda line: line.startswith("edge-agent simulate connected devices=3 of=3"), WAIT)

        def serving_again():  # windows that began after the restart, with requests to the model
            rows = measured()
            return rows and all(row["window_start"] > restarted for row in rows) and rows

        wait_for(serving_again, WAIT, "the restarted simulator serving the committed model from the slots")
        assert all((d.get("active_model") or {}).get("model") == "lin" for d in coordinator.devices())
    finally:
        if sim is not None:
            sim.stop()
        coordinator.stop()
        broker.stop()
