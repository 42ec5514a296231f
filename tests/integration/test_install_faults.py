"""Install faults with real processes: a private mosquitto, a test-side coordinator (a paho client that
sends signed Deploy commands and answers BlobRequests), and tests/integration/install_driver.py as the
agent. kill -9 the agent in each install state (deterministically, through EDGEFLEET_AGENT_CRASH_AT),
restart it: it ends on a valid model and its last InstallProgress says which. Restart the broker in
the middle of a transfer: the transfer completes."""
from __future__ import annotations

import struct
import sys
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from agent.identity import save_identity
from agent.install.crash import EXIT_CODE
from agent.install.machine import Installer
from agent.slots import SlotStore
from edgefleet import envelope, topics
from edgefleet.v1 import device_pb2, events_pb2
from tests.fleet import Process, base_env
from tests.mosquitto import MosquittoProcess
from tests.unit.install import harness

REPO = Path(__file__).resolve().parents[2]
BROKER_CONF = "listener {port} 127.0.0.1\nallow_anonymous true\npersistence true\npersistence_location {dir}/\n"
CHUNK = 128
TERMINAL = (events_pb2.INSTALL_STATE_COMMITTED, events_pb2.INSTALL_STATE_ROLLED_BACK, events_pb2.INSTALL_STATE_FAILED)


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    b = MosquittoProcess(BROKER_CONF, tmp_path_factory.mktemp("broker"))
    b.start()
    yield b
    b.stop()


@pytest.fixture(scope="module")
def models(request, tmp_path_factory) -> Path:
    cache = getattr(request.config, "cache", None)
    root = Path(cache.mkdir("edgefleet-runtime-models")) if cache is not None else tmp_path_factory.mktemp("models")
    return harness.build_models(root)


@pytest.fixture(scope="module")
def signer() -> harness.Signer:
    return harness.Signer()


@dataclass
class StandInCoordinator:
    """Publishes commands and answers chunk requests like the real coordinator; records events."""

    broker: MosquittoProcess
    server: harness.BlobServer = field(default_factory=harness.BlobServer)
    events: dict[str, list[events_pb2.Event]] = field(default_factory=dict)
    served: list[tuple[str, str, int]] = field(default_factory=list)
    serve_limit: int | None = None           # stop answering after this many chunks ...
    paused: threading.Event = field(default_factory=threading.Event)  # ... and say so here
    cond: threading.Condition = field(default_factory=threading.Condition)
    onlines: dict[str, int] = field(default_factory=dict)

    def start(self) -> "StandInCoordinator":
        self.client = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
                                  client_id=f"test-coord-{uuid.uuid4().hex[:8]}", protocol=mqtt.MQTTv5)
        self.client.reconnect_delay_set(min_delay=1, max_delay=2)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.connect(self.broker.host, self.broker.port)
        self.client.loop_start()
        return self

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        client.subscribe([(topics.all_devices(topics.BLOB_REQ), 1), (topics.all_devices(topics.EVENT), 1),
                          (topics.all_devices(topics.STATUS), 1)])

    def _on_message(self, client, userdata, msg) -> None:
        try:
            env = envelope.decode(bytes(msg.payload))
            if env.WhichOneof("body") == "blob_request":
                self._answer(env.device_id, env.blob_request)
            elif env.WhichOneof("body") == "status" and not msg.retain and env.status.state == device_pb2.DEVICE_STATE_ONLINE:
                # The agent subscribes before it says online, and the broker keeps one client's
                # packets in order: from here on, a command reaches it.
                with self.cond:
                    self.onlines[env.device_id] = self.onlines.get(env.device_id, 0) + 1
                    self.cond.notify_all()
            elif env.WhichOneof("body") == "event":
                with self.cond:
                    self.events.setdefault(env.device_id, []).append(env.event)
                    self.cond.notify_all()
        except Exception as exc:  # noqa: BLE001 - never raise in a paho callback
            print(f"test coordinator: {exc!r}", file=sys.stderr)

    def _answer(self, device_id: str, request) -> None:
        for chunk in self.server.answer(request):
            with self.cond:
                if self.serve_limit is not None and len(self.served) >= self.serve_limit:
                    self.paused.set()
                    return  # dropped, as if lost in a broker restart
                self.served.append((device_id, chunk.sha256, chunk.offset))
            self.client.publish(topics.blob(device_id), envelope.encode(device_id, blob_chunk=chunk), qos=1)

    def wait_online(self, device_id: str, count: int, timeout: float = 30) -> None:
        with self.cond:
            assert self.cond.wait_for(lambda: self.onlines.get(device_id, 0) >= count, timeout), f"{device_id} did not come online"

    def resume_serving(self) -> None:
        with self.cond:
            self.serve_limit = None

    def deploy(self, device_id: str, signed, command_id: str) -> None:
        payload = envelope.encode(device_id, command=harness.deploy_command(signed, command_id))
        self.client.publish(topics.cmd(device_id), payload, qos=1).wait_for_publish(10)

    def installs(self, device_id: str) -> list[events_pb2.InstallProgress]:
        with self.cond:
            return [e.install for e in self.events.get(device_id, []) if e.WhichOneof("kind") == "install"]

    def wait_install(self, device_id: str, predicate, timeout: float = 60) -> events_pb2.InstallProgress:
        def last_matching():
            found = [p for p in self.installs_unlocked(device_id) if predicate(p)]
            return found[-1] if found else None

        with self.cond:
            result = self.cond.wait_for(last_matching, timeout)
        assert result, f"no matching InstallProgress from {device_id} within {timeout}s; got {self.describe(device_id)}"
        return result

    def installs_unlocked(self, device_id: str) -> list[events_pb2.InstallProgress]:
        return [e.install for e in self.events.get(device_id, []) if e.WhichOneof("kind") == "install"]

    def describe(self, device_id: str) -> list[str]:
        return [f"{events_pb2.InstallState.Name(p.state)}:{p.version}:{p.reason[:60]}" for p in self.installs_unlocked(device_id)]


@pytest.fixture
def coordinator(broker):
    c = StandInCoordinator(broker).start()
    yield c
    c.stop()


class Device:
    def __init__(self, root: Path, broker: MosquittoProcess, signer: harness.Signer) -> None:
        self.device_id = f"dev-{uuid.uuid4().hex[:10]}"
        self.state_dir = root / self.device_id
        self.state_dir.mkdir(parents=True)
        self.ident = harness.identity(signer, self.device_id, url=f"mqtt://{broker.host}:{broker.port}")
        save_identity(self.state_dir, self.ident)
        self.process: Process | None = None
        self.starts = 0

    def preinstall(self, signed, server: harness.BlobServer) -> None:
        """Install a first model in-process (no broker), so the faults hit an upgrade with a rollback target."""
        requests: list = []
        events: list = []
        installer = Installer(self.state_dir, self.ident, lambda t, p, q: requests.append(envelope.decode(p).blob_request),
                              events.append, acceptance_runs=3)
        installer.resume()
        installer.handle_command(harness.deploy_command(signed, "pre-" + uuid.uuid4().hex[:6]))
        while requests:
            for chunk in server.answer(requests.pop(0)):
                installer.handle_chunk(chunk)
        installer.close()
        assert events[-1].install.state == events_pb2.INSTALL_STATE_COMMITTED, events[-1]

    def start(self, coordinator: StandInCoordinator, crash_at: str = "", chunk_timeout: float = 2.0) -> Process:
        self.starts += 1
        env = base_env(PYTHONPATH=str(REPO))
        if crash_at:
            env["EDGEFLEET_AGENT_CRASH_AT"] = crash_at
        args = [sys.executable, "-m", "tests.integration.install_driver", str(self.state_dir), "--chunk-timeout", str(chunk_timeout)]
        self.process = Process(args, env, self.state_dir.parent / f"{self.device_id}-{self.starts}.log")
        self.process.wait_line(lambda line: line == "driver ready", 30)
        coordinator.wait_online(self.device_id, self.starts)
        return self.process

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()

    def active_version(self) -> str | None:
        content = SlotStore(self.state_dir / "models").active()
        return content.manifest.version if content else None

    def journal_offsets(self, sha: str) -> set[int]:
        path = self.state_dir / "install" / "blobs" / f"{sha}.have"
        raw = path.read_bytes() if path.is_file() else b""
        return {o for (o,) in struct.iter_unpack("<Q", raw[: len(raw) - len(raw) % 8])}


@pytest.fixture
def blobs(models: Path) -> dict[str, bytes]:
    return {"v1": (models / "float32.tflite").read_bytes(), "v2": (models / "int8.tflite").read_bytes(),
            "golden": harness.golden_npz(models, count=24)}


def signed_for(signer, blobs, device: Device, version: str, sequence: int, rollout_id: str, **kw):
    return signer.manifest(harness.manifest(blobs[version], version=version, sequence=sequence, golden=blobs["golden"],
                                            device_id=device.device_id, chunk_size=CHUNK, rollout_id=rollout_id,
                                            min_metric=0.8, **kw))


@pytest.mark.parametrize(
    ("crash_at", "max_restarts", "final"),
    [
        ("downloading", 2, "v2"),
        ("chunks:5", 2, "v2"),
        ("verifying", 2, "v2"),
        ("staged", 2, "v2"),
        ("trial", 2, "v2"),       # TRIAL persisted, the pointer not swapped yet
        ("activated", 2, "v2"),   # the pointer swapped: the trial goes on after the restart
        ("activated", 1, "v1"),   # ... unless one restart already is a crash loop: rolled back
    ],
    ids=["downloading", "mid-download", "verifying", "staged", "trial", "activated", "activated-crash-loop"],
)
def test_kill_9_in_each_install_state(tmp_path, broker, coordinator, signer, blobs, crash_at, max_restarts, final):
    device = Device(tmp_path, broker, signer)
    for data in blobs.values():
        coordinator.server.add(data)
    device.preinstall(signed_for(signer, blobs, device, "v1", 1, "r0"), coordinator.server)

    proc = device.start(coordinator, crash_at=crash_at)
    coordinator.deploy(device.device_id, signed_for(signer, blobs, device, "v2", 2, "r1", trial_seconds=1,
                                                    max_restarts=max_restarts), "deploy-v2")
    assert proc.proc.wait(60) == EXIT_CODE, proc.output()[-2000:]
    assert device.active_version() in ("v1", "v2")  # killed: whatever the pointer says is a whole model
    stored = device.journal_offsets(harness.sha256(blobs["v2"]))
    served_before = len(coordinator.served)

    device.start(coordinator)
    try:
        last = coordinator.wait_install(device.device_id, lambda p: p.version == "v2" and p.state in TERMINAL)
        expected = events_pb2.INSTALL_STATE_COMMITTED if final == "v2" else events_pb2.INSTALL_STATE_ROLLED_BACK
        assert last.state == expected, coordinator.describe(device.device_id)
        assert last.active_model.version == final
        assert coordinator.installs(device.device_id)[-1] == last  # nothing reported after the outcome
    finally:
        device.stop()
    assert device.active_version() == final
    if crash_at.startswith("chunks:"):
        assert len(stored) >= 5
        again = {o for dev, sha, o in coordinator.served[served_before:] if sha == harness.sha256(blobs["v2"])}
        assert not again & stored, "chunks stored before the kill were fetched again"


def test_broker_restart_in_the_middle_of_a_transfer(tmp_path, broker, coordinator, signer, blobs):
    device = Device(tmp_path, broker, signer)
    for data in blobs.values():
        coordinator.server.add(data)
    coordinator.serve_limit = 6
    device.start(coordinator, chunk_timeout=1.0)
    try:
        coordinator.deploy(device.device_id, signed_for(signer, blobs, device, "v2", 1, "r1"), "deploy-1")
        assert coordinator.paused.wait(30), "the transfer did not start"
        coordinator.wait_install(device.device_id, lambda p: p.state == events_pb2.INSTALL_STATE_DOWNLOADING)
        broker.restart()
        coordinator.resume_serving()
        last = coordinator.wait_install(device.device_id, lambda p: p.state in TERMINAL)
        assert last.state == events_pb2.INSTALL_STATE_COMMITTED, coordinator.describe(device.device_id)
        assert last.active_model.version == "v2"
    finally:
        device.stop()
    assert device.active_version() == "v2"
    chunks = (len(blobs["v2"]) + CHUNK - 1) // CHUNK + (len(blobs["golden"]) + CHUNK - 1) // CHUNK
    assert len({(sha, o) for _, sha, o in coordinator.served}) == chunks
