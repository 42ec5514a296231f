"""Foundation story with real parts: a private mosquitto, the coordinator, three agents with
different bundled profiles, and edgectl, all as processes; over MQTT 5 and over MQTT 3.1.1."""
from __future__ import annotations

import signal
from datetime import datetime, timezone

import pytest

from tests.fleet import AgentProcess, CoordinatorProcess, register, wait_for
from tests.mosquitto import MosquittoProcess

BROKER_CONF = """
listener {port} 127.0.0.1
allow_anonymous true
persistence false
"""

PROFILES = {
    "pi": ("raspberry-pi-4", "role=camera"),
    "coral": ("coral-dev-board", "role=camera"),
    "jetson": ("jetson-nano", "role=gateway"),
}


@pytest.fixture
def broker(tmp_path):
    b = MosquittoProcess(BROKER_CONF, tmp_path / "broker")
    b.start()
    yield b
    b.stop()


@pytest.mark.slow
@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_enroll_report_offline_stopped_and_broker_restart(tmp_path, broker, protocol):
    coord = CoordinatorProcess(tmp_path / "coord", f"mqtt://127.0.0.1:{broker.port}", protocol=protocol, device_keepalive_s=2).start()
    agents: dict[str, AgentProcess] = {}
    try:
        for name, (profile, label) in PROFILES.items():
            reg = register(coord, name, label)
            assert reg["enroll_command"].startswith(f"edge-agent enroll --coordinator {coord.grpc_address} --token ")
            agent = AgentProcess(name, tmp_path / "agents" / name, profile=profile)
            res = agent.enroll(coord, reg["enrollment_token"])
            assert res.returncode == 0, res.stderr
            ident = agent.state_dir / "identity.json"
            assert ident.stat().st_mode & 0o777 == 0o600
            agents[name] = agent.start()

        def all_online():
            devs = {d["name"]: d for d in coord.devices()}
            return devs if all(devs[n]["state"] == "online" and devs[n]["hardware"].get("hardware_class") for n in PROFILES) else None

        devs = wait_for(all_online, 30, "three agents online with hardware")
        assert devs["pi"]["hardware"]["hardware_class"] == "raspberry-pi-4"
        assert devs["pi"]["hardware"]["cpu"]["arch"] == "aarch64"
        assert {"kind": "edgetpu"}.items() <= devs["coral"]["hardware"]["accelerators"][0].items()
        assert devs["jetson"]["hardware"]["accelerators"][0]["kind"] == "gpu"
        assert devs["pi"]["hardware"]["runtime"]["name"] == "ai-edge-litert"
        assert {d["name"] for d in coord.devices("role=camera")} == {"pi", "coral"}

        # kill -9: the broker publishes the retained will within 1.5 x keepalive (2 s here).
        agents["pi"].kill()
        wait_for(lambda: coord.device("pi")["state"] == "offline", 15, "killed agent shown offline")

        # SIGTERM: a clean stop says so.
        agents["coral"].process.signal(signal.SIGTERM)
        assert agents["coral"].process.proc.wait(15) == 0
        wait_for(lambda: coord.device("coral")["state"] == "stopped", 15, "stopped agent shown stopped")

        # Broker restart (kill -9, no persistence): the remaining agent and the coordinator reconnect,
        # and the agent's fresh online status reaches the coordinator.
        before = datetime.now(timezone.utc)
        broker.kill()
        broker.start()

        def seen_after_restart():
            d = coord.device("jetson")
            return d["state"] == "online" and d["last_seen"] and datetime.fromisoformat(d["last_seen"].replace("Z", "+00:00")) > before

        wait_for(seen_after_restart, 60, "agent back online after a broker restart")

        # The killed agent comes back with the same identity.
        agents["pi"].start()
        wait_for(lambda: coord.device("pi")["state"] == "online", 30, "restarted agent back online")
    finally:
        for a in agents.values():
            a.stop()
        coord.stop()
