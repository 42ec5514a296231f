"""Rollouts against a real coordinator process and a private mosquitto.

The agents are paho clients written here (the real daemon does not run deploys yet): enrolled through
the real Enrollment service, they say hello with a hardware profile, verify each signed manifest with
the key they got at enrollment, fetch the model and golden set through the coordinator's blob server,
check their SHA-256, and report install states as events; a signed rollback order puts the previous
model back. The coordinator's optimizer is the models area's fake worker (no TensorFlow).

One scenario: plan, on-device profiling changing the plan (`edgectl model profile`), bad input
refused, a rollout whose canary is held in its trial while the coordinator is killed with SIGKILL and
started again on the same data directory (the rollout finishes, nothing installed twice), model
history and /metrics, then a second version aborted by an operator mid-rollout (its canaries back on
the first version, the other devices never sent it).
"""
from __future__ import annotations

import hashlib
import json
import queue
import signal
import sys
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from agent.enroll import enroll
from edgefleet import envelope, session, topics
from edgefleet.v1 import commands_pb2, device_pb2, events_pb2, hardware_pb2, manifest_pb2, transfer_pb2
from tests.fleet import CoordinatorProcess, wait_for
from tests.mosquitto import MosquittoProcess, mosquitto_binary

pytestmark = [pytest.mark.skipif(mosquitto_binary() is None, reason="mosquitto is not installed"), pytest.mark.timeout(240)]

FAKE_WORKER = Path(__file__).resolve().parents[1] / "unit" / "models" / "fake_worker.py"
E = events_pb2
WAIT = 30.0


def hardware(runtime: str = "ai-edge-litert") -> hardware_pb2.HardwareProfile:
    hw = hardware_pb2.HardwareProfile(hardware_class="raspberry-pi-4", latency_factor=4.0, simulated=True, profile_name="raspberry-pi-4")
    hw.cpu.arch, hw.cpu.cores_logical = "aarch64", 4
    hw.memory.total_bytes, hw.memory.available_bytes = 4_000_000_000, 3_000_000_000
    hw.storage.total_bytes, hw.storage.free_bytes = 32_000_000_000, 10_000_000_000
    hw.runtime.name, hw.runtime.version = runtime, "2.3.0" if runtime != "none" else ""
    return hw


class PahoAgent:
    """The device half of a deploy, reduced to the wire (see the module docstring)."""

    def __init__(self, ident, hw: hardware_pb2.HardwareProfile):
        self.ident = ident
        self.device_id = ident.device_id
        self.hw = hw
        self.inbox: queue.Queue = queue.Queue()
        self.seen: set[str] = set()
        self.last_sequence = 0
        self.active: manifest_pb2.ModelManifest | None = None
        self.previous: manifest_pb2.ModelManifest | None = None
        self.installs: list[manifest_pb2.ModelManifest] = []
        self.profiled: list[str] = []
        self.hold = threading.Event()  # set: stop in the trial until released
        self.held = threading.Event()
        self.release = threading.Event()
        self.connected = threading.Event()
        self.transfer: dict | None = None
        self.lock = threading.Lock()
        self.client = session.make_client(self.device_id, "5")
        offline = envelope.encode(self.device_id, status=device_pb2.Status(state=device_pb2.DEVICE_STATE_OFFLINE))
        self.client.will_set(topics.status(self.device_id), offline, qos=1, retain=True)
        self.client.on_connect = self._on_connect
        self.client.on_message = lambda c, u, m: self.inbox.put(envelope.decode(bytes(m.payload)))
        self.stopping = threading.Event()
        self.worker = threading.Thread(target=self._work, daemon=True)

    def start(self) -> "PahoAgent":
        self.worker.start()
        session.connect_async(self.client, session.parse_broker_url(self.ident.mqtt.url), keepalive=30, session_expiry_s=3600)
        self.client.loop_start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        self.release.set()
        self.client.disconnect()
        self.client.loop_stop()
        self.worker.join(5)

    def _on_connect(self, client, userdata, flags, rc, props) -> None:
        client.subscribe([(topics.cmd(self.device_id), 1), (topics.blob(self.device_id), 1)])
        online = envelope.encode(self.device_id, status=device_pb2.Status(state=device_pb2.DEVICE_STATE_ONLINE))
        client.publish(topics.status(self.device_id), online, qos=1, retain=True)
        hello = device_pb2.Hello(hardware=self.hw, agent_version="test", protocol_version=1, last_manifest_sequence=self.last_sequence)
        client.publish(topics.hello(self.device_id), envelope.encode(self.device_id, hello=hello), qos=1, retain=True)
        self.connected.set()

    # --- reports ------------------------------------------------------------------------------------

    def emit(self, m: manifest_pb2.ModelManifest | None, state: int, reason: str = "", *, sequence: int = 0, rollout_id: str = "", done: int | None = None) -> None:
        p = E.InstallProgress(state=state, reason=reason, sequence=sequence, rollout_id=rollout_id)
        if m is not None:
            p.rollout_id, p.model, p.version, p.variant_id, p.sequence = m.rollout_id, m.model, m.version, m.variant_id, m.sequence
            p.bytes_total = m.size_bytes + m.golden.size_bytes
            p.bytes_done = p.bytes_total if done is None else done
        if self.active is not None:
            a = self.active
            p.active_model.CopyFrom(device_pb2.ActiveModel(model=a.model, version=a.version, variant_id=a.variant_id, sha256=a.sha256, sequence=a.sequence))
        self.client.publish(topics.event(self.device_id), envelope.encode(self.device_id, event=E.Event(install=p)), qos=1)

    # --- the worker -----------------------------------------------------------------------------------

    def _work(self) -> None:
        while not self.stopping.is_set():
            try:
                env = self.inbox.get(timeout=1.0)
            except queue.Empty:
                self._ask_missing()
                continue
            body = env.WhichOneof("body")
            if body == "command":
                self._command(env.command)
            elif body == "blob_chunk":
                self._chunk(env.blob_chunk)

    def _command(self, cmd: commands_pb2.Command) -> None:
        from coordinator.transfer.manifests import ManifestError, verify_manifest, verify_rollback

        if cmd.command_id in self.seen:
            return
        kind = cmd.WhichOneof("kind")
        if kind == "profile":
            return self._profile(cmd)
        try:
            if kind == "deploy":
                m = verify_manifest(cmd.deploy.manifest, self.ident.public_key, device_id=self.device_id)
                seq = m.sequence
            elif kind == "rollback":
                order = verify_rollback(cmd.rollback, self.ident.public_key, device_id=self.device_id)
                seq = order.sequence
            else:
                return
        except ManifestError as exc:
            raise AssertionError(f"{self.device_id} got a command that does not verify: {exc}") from None
        assert seq > self.last_sequence, f"sequence {seq} not above {self.last_sequence}"
        self.seen.add(cmd.command_id)
        self.last_sequence = seq
        if kind == "deploy":
            self.emit(m, E.INSTALL_STATE_DOWNLOADING, done=0)
            blobs = [(m.sha256, m.size_bytes)] + ([(m.golden.sha256, m.golden.size_bytes)] if m.golden.sha256 else [])
            self.transfer = {"manifest": m, "chunk": m.chunk_size, "blobs": {sha: {"size": size, "have": {}} for sha, size in blobs}, "last": 0.0}
            self._ask_missing(force=True)
        else:
            self._roll_back(order)

    def _profile(self, cmd: commands_pb2.Command) -> None:
        """Benchmark without activating: here, figures that make fp32 the faster variant on this class."""
        from coordinator.transfer.manifests import verify_manifest

        self.seen.add(cmd.command_id)
        self.profiled = []
        for signed in cmd.profile.candidates:
            m = verify_manifest(signed, self.ident.public_key, device_id=self.device_id)
            self.last_sequence = max(self.last_sequence, m.sequence)
            p95 = {"fp32": 30.0, "int8": 50.0}[m.variant_id]
            result = E.ProfileResult(request_id=cmd.profile.request_id, variant_id=m.variant_id, load_ms=3.0, p50_ms=p95 * 0.8, p95_ms=p95, peak_rss_bytes=50_000_000)
            self.client.publish(topics.event(self.device_id), envelope.encode(self.device_id, event=E.Event(profile_result=result)), qos=1)
            self.profiled.append(m.variant_id)

    def _missing(self, sha: str) -> list[int]:
        b = self.transfer["blobs"][sha]
        return [off for off in range(0, b["size"], self.transfer["chunk"]) if off not in b["have"]]

    def _ask_missing(self, force: bool = False) -> None:
        t = self.transfer
        if t is None or (not force and time.monotonic() - t["last"] < 2.0):
            return
        t["last"] = time.monotonic()
        for sha in t["blobs"]:
            offsets = self._missing(sha)
            for i in range(0, len(offsets), 32):
                req = transfer_pb2.BlobRequest(sha256=sha, offsets=offsets[i : i + 32], chunk_size=t["chunk"])
                self.client.publish(topics.blob_req(self.device_id), envelope.encode(self.device_id, blob_request=req), qos=1)

    def _chunk(self, c: transfer_pb2.BlobChunk) -> None:
        t = self.transfer
        assert not c.error, f"{self.device_id}: blob server refused {c.sha256[:12]}: {c.error}"
        if t is None or c.sha256 not in t["blobs"]:
            return
        t["blobs"][c.sha256]["have"][c.offset] = c.data
        t["last"] = time.monotonic()
        if any(self._missing(sha) for sha in t["blobs"]):
            return
        m = t["manifest"]
        self.transfer = None
        self.emit(m, E.INSTALL_STATE_VERIFYING)
        for sha, b in t["blobs"].items():
            data = b"".join(b["have"][off] for off in sorted(b["have"]))
            assert hashlib.sha256(data).hexdigest() == sha and len(data) == b["size"], f"{self.device_id}: {sha[:12]} does not verify"
            if sha == m.golden.sha256:
                import io

                with np.load(io.BytesIO(data)) as z:
                    assert len(z["y"]) == m.golden.count and z["x"].shape[1:] == (8, 8, 1)
        self.emit(m, E.INSTALL_STATE_STAGED)
        self.previous, self.active = self.active, m
        self.installs.append(m)
        self.emit(m, E.INSTALL_STATE_TRIAL)
        if self.hold.is_set():
            self.held.set()
            # Not on the worker: commands (a rollback) must still be handled while the trial is held.
            threading.Thread(target=self._commit_when_released, args=(m,), daemon=True).start()
            return
        self.emit(m, E.INSTALL_STATE_COMMITTED)

    def _commit_when_released(self, m: manifest_pb2.ModelManifest) -> None:
        self.release.wait()
        with self.lock:
            if self.active is m and not self.stopping.is_set():
                self.emit(m, E.INSTALL_STATE_COMMITTED)

    def _roll_back(self, order: commands_pb2.RollbackOrder) -> None:
        with self.lock:
            if self.active is not None and self.active.rollout_id == order.rollout_id:
                undone = self.active
                self.active, self.previous = self.previous, None
                self.emit(undone, E.INSTALL_STATE_ROLLED_BACK, f"rollback ordered by the coordinator: {order.reason}")
            else:
                self.emit(None, E.INSTALL_STATE_ROLLED_BACK, "nothing to roll back", sequence=order.sequence, rollout_id=order.rollout_id)


def fake_model(version: int) -> bytes:
    """What the fake optimizer worker builds: two variants; fp32 (chosen once profiled) ~600 KB: five 128 KiB chunks."""
    return json.dumps({"mode": "ok", "variants": [
        {"id": "fp32", "technique": "fp32", "metric": 0.97, "bytes": f"v{version} fp32 " + "x" * 600_000},
        {"id": "int8", "technique": "int8", "metric": 0.96, "bytes": f"v{version} int8 " + "y" * 200_000},
    ]}).encode()


@pytest.fixture
def world(tmp_path):
    broker = MosquittoProcess("allow_anonymous true\n", tmp_path / "broker").start()
    coordinator = CoordinatorProcess(
        tmp_path / "coordinator",
        f"mqtt://{broker.host}:{broker.port}",
        extra_env={
            "EDGEFLEET_MODELS__WORKER_COMMAND": f"{sys.executable} {FAKE_WORKER}",
            "EDGEFLEET_ROLLOUTS__TICK_INTERVAL_S": "0.2",
            "EDGEFLEET_ROLLOUTS__RESEND_S": "5",
            "EDGEFLEET_ROLLOUTS__LEASE_S": "5",
            "EDGEFLEET_ROLLOUTS__TRIAL_SECONDS": "5",
        },
    ).start()
    agents: list[PahoAgent] = []
    yield broker, coordinator, agents, tmp_path
    for a in agents:
        a.stop()
    coordinator.stop()
    broker.stop()


def push(coordinator: CoordinatorProcess, tmp_path: Path, version: int) -> str:
    model = tmp_path / f"digits-v{version}.keras"
    model.write_bytes(fake_model(version))
    data = tmp_path / "digits.npz"
    if not data.exists():
        rng = np.random.default_rng(0)
        np.savez(data, x_train=rng.random((40, 8, 8, 1), dtype=np.float32), y_train=rng.integers(0, 10, 40),
                 x_val=rng.random((400, 8, 8, 1), dtype=np.float32), y_val=rng.integers(0, 10, 400))
    res = coordinator.edgectl("model", "push", str(model), "--name", "digits", "--data", str(data), "-o", "json", timeout=60)
    out = json.loads(res.stdout)
    assert out["state"] == "ready", out
    return f"{out['name']}:{out['version']}"


def add_agents(coordinator: CoordinatorProcess, tmp_path: Path, agents: list, names: list[str], runtime: str = "ai-edge-litert") -> None:
    for name in names:
        reg = json.loads(coordinator.edgectl("device", "register", name, "--label", "role=camera", "-o", "json").stdout)
        hw = hardware(runtime)
        ident = enroll(coordinator.grpc_address, reg["enrollment_token"], tmp_path / "agents" / name, hw)
        agents.append(PahoAgent(ident, hw).start())
    for a in agents:
        assert a.connected.wait(WAIT)


def error_of(res) -> str:
    assert res.returncode == 1, f"expected a refusal, got {res.returncode}:\n{res.stdout}\n{res.stderr}"
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("edgectl: error: "), res.stderr
    return lines[0]


def status(coordinator: CoordinatorProcess, rollout_id: str) -> dict:
    return json.loads(coordinator.edgectl("rollout", "status", rollout_id, "-o", "json").stdout)


def test_rollout_survives_a_killed_coordinator_and_an_abort_rolls_back(world):
    broker, coordinator, agents, tmp_path = world
    v1 = push(coordinator, tmp_path, 1)
    names = [f"cam-{i:02d}" for i in range(5)]
    add_agents(coordinator, tmp_path, agents, names)
    add_agents(coordinator, tmp_path, [], ["bare"], runtime="none")  # no agent object needed: it never gets anything
    by_name = {a.ident.device_name: a for a in agents}
    wait_for(lambda: all(d["hardware"]["hardware_class"] for d in coordinator.devices("role=camera")), WAIT, "every hello stored")

    # Dry run: a variant and a reason per device, the device without a runtime excluded with its reason.
    plan_args = ("rollout", "plan", v1, "--select", "role=camera", "--canary", "1", "--waves", "2", "-o", "json")
    rows = {d["device_name"]: d for d in json.loads(coordinator.edgectl(*plan_args).stdout)["devices"]}
    assert rows["bare"]["excluded"] and "no inference runtime" in rows["bare"]["reason"]
    # The fake worker measures both variants at the same host p95: the smaller one wins the tie.
    assert all(rows[n]["variant_id"] == "int8" and "lowest p95 of 2 that fit" in rows[n]["reason"] for n in names), rows

    # On-device profiling: one device of the class benchmarks both; from then on selection uses what it measured.
    profile = json.loads(coordinator.edgectl("model", "profile", v1, "--select", "role=camera", "--per-class", "1", "-o", "json").stdout)
    assert len(profile["device_ids"]) == 1 and profile["request_id"]
    profiler = next(a for a in agents if a.device_id == profile["device_ids"][0])
    wait_for(lambda: sorted(profiler.profiled) == ["fp32", "int8"], WAIT, "the profile request reaching the device")

    def measured_plan():
        plan = json.loads(coordinator.edgectl(*plan_args).stdout)
        return plan if all("measured on raspberry-pi-4" in d["reason"] for d in plan["devices"] if not d["excluded"]) else None

    plan = wait_for(measured_plan, WAIT, "the plan to use the measured latency")
    rows = {d["device_name"]: d for d in plan["devices"]}
    assert all(rows[n]["variant_id"] == "fp32" and "p95 30 ms (measured on raspberry-pi-4, 1 result); next int8 50 ms" in rows[n]["reason"] for n in names), rows
    assert plan["waves"] == 3 and sorted(r["wave"] for n, r in rows.items() if n != "bare") == [0, 1, 1, 2, 2]
    table = coordinator.edgectl("rollout", "plan", v1, "--select", "role=camera").stdout
    assert "excluded:" in table and "bare" in table

    # Bad input: refused with one clear line, nothing created.
    assert "no model named 'nope'" in error_of(coordinator.edgectl("rollout", "create", "nope:1", check=False))
    assert "no device matches the selector 'role=doorbell'" in error_of(coordinator.edgectl("rollout", "create", v1, "--select", "role=doorbell", check=False))
    refused = error_of(coordinator.edgectl("rollout", "create", v1, "--select", "role=camera", "--min-accuracy", "0.999", check=False))
    assert "no variant of digits:1 fits any of the 6 matching devices" in refused and "cam-00: no variant fits" in refused
    assert json.loads(coordinator.edgectl("rollout", "list", "-o", "json").stdout) == []

    # The canary holds in its trial; the coordinator is killed meanwhile.
    canary = by_name["cam-00"]
    canary.hold.set()
    created = json.loads(coordinator.edgectl(
        "rollout", "create", v1, "--select", "role=camera", "--canary", "1", "--waves", "2", "--max-p95-ms", "500", "--reason", "first", "-o", "json"
    ).stdout)
    rid = created["id"]
    busy = error_of(coordinator.edgectl("rollout", "create", v1, "--select", "role=camera", check=False))
    assert f"(rollout {rid})" in busy and "has not finished" in busy
    assert canary.held.wait(WAIT), "the canary never reached its trial"
    assert status(coordinator, rid)["counts"] == {"installing": 1, "pending": 4, "skipped": 1}
    coordinator.process.signal(signal.SIGKILL)
    coordinator.process.proc.wait(10)
    canary.release.set()  # its COMMITTED waits at the broker in the coordinator's persistent session
    coordinator.start()

    final = json.loads(coordinator.edgectl("rollout", "status", rid, "--watch", "-o", "json", timeout=90).stdout)
    assert final["state"] == "done" and final["counts"] == {"committed": 5, "skipped": 1}, final
    assert all(len(a.installs) == 1 and a.active.version == "1" for a in agents), "a device installed twice or not at all"
    # The golden set made from the upload went with every manifest, with the rollout's bounds.
    m = canary.installs[0]
    assert m.golden.count == 256 and m.acceptance.max_p95_ms == 500 and m.rollout_id == rid

    show = json.loads(coordinator.edgectl("device", "show", "cam-03", "-o", "json").stdout)
    history = [(h["state"], h["model"]["version"], h["rollout_id"]) for h in show["model_history"]]
    assert history == [("trial", "1", rid), ("committed", "1", rid)]
    metrics = urllib.request.urlopen(f"http://127.0.0.1:{coordinator.metrics_port}/metrics", timeout=10).read().decode()
    assert 'edgefleet_rollouts_by_state{state="done"} 1.0' in metrics

    # A second version whose canaries hold in their trial, aborted by an operator: they go back to version 1,
    # and the devices of later waves are never sent it.
    v2 = push(coordinator, tmp_path, 2)
    for a in agents:
        a.held.clear()
        a.release.clear()
        a.hold.set()
    rid2 = json.loads(coordinator.edgectl("rollout", "create", v2, "--select", "role=camera", "--canary", "2", "--waves", "1", "-o", "json").stdout)["id"]
    wait_for(lambda: sum(a.held.is_set() for a in agents) == 2, WAIT, "the two canaries in their trial of version 2")
    out = coordinator.edgectl("rollout", "abort", rid2[:8], "--reason", "operator says no").stdout
    assert f"rollout {rid2}: aborting" in out
    res = coordinator.edgectl("rollout", "status", rid2, "--watch", "-o", "json", timeout=90, check=False)
    assert res.returncode == 1 and "was aborted: operator says no" in res.stderr
    final2 = json.loads(res.stdout)
    assert final2["state"] == "aborted" and final2["counts"] == {"rolled_back": 2, "skipped": 4}, final2
    assert sum(len(a.installs) for a in agents) == 5 + 2  # the other devices were never sent version 2
    assert all(a.active.version == "1" for a in agents), [a.active.version for a in agents]
    listed = coordinator.edgectl("rollout", "list").stdout
    assert rid in listed and rid2 in listed and "aborted" in listed


# ------------------------------------------------------------------------------------------------------
# The same with the real agent: `edge-agent run` (transfer, A/B slots, LiteRT acceptance test on the
# golden set, trial), the real optimizer worker measuring two tiny .tflite uploads.


@pytest.fixture
def real_world(request, tmp_path, tmp_path_factory):
    from tests.unit.serve.models import built_models

    models = built_models(request, tmp_path_factory)  # float32.tflite / int8.tflite: features [?, 4] -> logits [?, 3]
    broker = MosquittoProcess("allow_anonymous true\n", tmp_path / "broker").start()
    coordinator = CoordinatorProcess(
        tmp_path / "coordinator",
        f"mqtt://{broker.host}:{broker.port}",
        extra_env={"EDGEFLEET_ROLLOUTS__TICK_INTERVAL_S": "0.2", "EDGEFLEET_ROLLOUTS__RESEND_S": "5", "EDGEFLEET_ROLLOUTS__LEASE_S": "5"},
    ).start()
    agents: list = []
    yield models, coordinator, agents, tmp_path
    for a in agents:
        a.stop()
    coordinator.stop()
    broker.stop()


def history_of(coordinator: CoordinatorProcess, name: str) -> list[tuple[str, str, str]]:
    show = json.loads(coordinator.edgectl("device", "show", name, "-o", "json").stdout)
    return [(h["state"], h["model"]["version"], h["rollout_id"]) for h in show["model_history"]]


def test_real_agents_install_survive_a_killed_coordinator_and_roll_back(real_world):
    from tests.fleet import AgentProcess, register

    models, coordinator, agents, tmp_path = real_world
    rng = np.random.default_rng(0)
    data = tmp_path / "linear.npz"
    np.savez(data, x_train=rng.random((60, 4), dtype=np.float32), y_train=rng.integers(0, 3, 60),
             x_val=rng.random((300, 4), dtype=np.float32), y_val=rng.integers(0, 3, 300))
    refs = []
    for name in ("float32.tflite", "int8.tflite"):
        out = json.loads(coordinator.edgectl("model", "push", str(models / name), "--name", "linear", "--data", str(data),
                                             "--task", "classification", "-o", "json", timeout=180).stdout)
        assert out["state"] == "ready", out
        refs.append(f"linear:{out['version']}")
    v1, v2 = refs
    names = ["edge-a", "edge-b", "edge-c"]
    for name in names:
        reg = register(coordinator, name, "role=edge")
        agent = AgentProcess(name, tmp_path / "agents" / name, profile="x86-gateway")
        res = agent.enroll(coordinator, reg["enrollment_token"])
        assert res.returncode == 0, res.stderr
        agents.append(agent.start())
    wait_for(lambda: all(d["state"] == "online" and d["hardware"]["hardware_class"] for d in coordinator.devices("role=edge")) and len(coordinator.devices("role=edge")) == 3,
             WAIT, "three agents online with their hardware")

    # v1 with a 4 s trial: the coordinator is killed while the canary is in it.
    rid = json.loads(coordinator.edgectl("rollout", "create", v1, "--select", "role=edge", "--canary", "1", "--waves", "1",
                                         "--trial-seconds", "4", "-o", "json").stdout)["id"]

    def canary_on_trial():
        progress = status(coordinator, rid)["progress"]
        return any(p["install_state"] == "trial" for p in progress)

    wait_for(canary_on_trial, WAIT, "the canary activating v1 (its trial)", interval=0.1)
    coordinator.process.signal(signal.SIGKILL)
    coordinator.process.proc.wait(10)
    coordinator.start()
    final = json.loads(coordinator.edgectl("rollout", "status", rid, "--watch", "-o", "json", timeout=120).stdout)
    assert final["state"] == "done" and final["counts"] == {"committed": 3}, final
    for name in names:  # installed once each: one activation and one commit, from this rollout
        assert history_of(coordinator, name) == [("trial", "1", rid), ("committed", "1", rid)], name

    # v2 with a long trial on every device, then aborted: each agent puts v1 back.
    rid2 = json.loads(coordinator.edgectl("rollout", "create", v2, "--select", "role=edge", "--canary", "3",
                                          "--trial-seconds", "600", "-o", "json").stdout)["id"]
    wait_for(lambda: sum(p["install_state"] == "trial" for p in status(coordinator, rid2)["progress"]) == 3, 60, "every device on trial with v2")
    coordinator.edgectl("rollout", "abort", rid2, "--reason", "bench says no")
    res = coordinator.edgectl("rollout", "status", rid2, "--watch", "-o", "json", timeout=120, check=False)
    final2 = json.loads(res.stdout)
    assert final2["state"] == "aborted" and final2["counts"] == {"rolled_back": 3}, final2
    for name in names:
        last = json.loads(coordinator.edgectl("device", "show", name, "-o", "json").stdout)["model_history"][-1]
        assert (last["state"], last["model"]["version"], last["rollout_id"]) == ("rolled_back", "1", rid2), last
        assert "bench says no" in last["reason"]
