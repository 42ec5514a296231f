"""An in-process fleet for the rollout engine's tests: a model version in a real store, devices in a real
registry, and fake agents that get commands through a fake publish and answer with install events
through the real ingest (envelopes on the event topic), the way the agent's install path does:

- a deploy is verified (signature, device, sequence above the last accepted) and run once per command id;
- modes: ok (downloading .. committed), fail (acceptance fails: FAILED, the old model stays),
  trial_rollback (activated, then rolled back by the agent), silent (offline: commands wait at the
  broker), absent (never connected: commands are lost), stall (starts downloading, then nothing),
  hold_trial (activates, then stays in its trial);
- a signed rollback order restores the previous model when the active one came from that rollout,
  and otherwise says there was nothing to roll back (ROLLED_BACK with the order's sequence).
"""
from __future__ import annotations

import io
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace
from typing import Callable

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from coordinator.config import RolloutsConfig
from coordinator.ingest import Ingest
from coordinator.metrics import CoordinatorMetrics
from coordinator.models.artifacts import ArtifactStore
from coordinator.models.jobs import JobStore
from coordinator.models.repository import Inputs, ModelRepository
from coordinator.rollouts.observe import Figures
from coordinator.rollouts.service import RolloutService
from coordinator.selection import MeasuredTable
from coordinator.signing import Signer
from coordinator.store.devices import DeviceRegistry
from coordinator.transfer.manifests import ManifestError, verify_manifest, verify_rollback
from edgefleet import envelope, topics
from edgefleet.v1 import device_pb2, events_pb2, hardware_pb2

T0 = datetime(2026, 11, 21, 12, 0, tzinfo=timezone.utc)
MB = 1_000_000
FP32_SHA, INT8_SHA = "f3" * 32, "18" * 32
E = events_pb2


class Clock:
    def __init__(self, start: datetime = T0):
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def hardware(kind: str) -> hardware_pb2.HardwareProfile | None:
    hw = hardware_pb2.HardwareProfile(hardware_class="raspberry-pi-4", latency_factor=4.0, simulated=True)
    hw.memory.available_bytes = 3_000 * MB
    hw.storage.free_bytes = 10_000 * MB
    hw.runtime.name, hw.runtime.version = "ai-edge-litert", "2.3.0"
    if kind == "small":
        hw.hardware_class = "raspberry-pi-zero-2-w"
        hw.memory.available_bytes = 300 * MB
    elif kind == "bare":
        hw.runtime.name, hw.runtime.version = "none", ""
    elif kind == "unreported":
        return None
    return hw


def npz(**arrays) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def variant(vid: str, sha: str, size: int, metric: float, p95: float, **extra) -> dict:
    return {
        "id": vid, "technique": vid, "sha256": sha, "size_bytes": size, "gzip_bytes": size // 2, "metric": metric,
        "latency_p50_ms": p95 * 0.8, "latency_p95_ms": p95, "peak_memory_bytes": size + 10 * MB, "ops": ["CONV_2D", "FULLY_CONNECTED"],
        "input_dtype": "float32", "output_dtype": "float32", "input_shape": [1, 8, 8, 1], "output_shape": [1, 10],
        "edgetpu": {"status": "not_applicable", "detail": "", "mapped_fraction": 0.0, "compiled_sha256": None},
        "error": None, "skipped": None, **extra,
    }


def ready_version(store, artifacts: ArtifactStore, name: str = "digits", variants: list[dict] | None = None, *, data: bytes | None = None) -> str:
    """Push a version and finish its job with the given variants, as the optimizer worker would."""
    rng = np.random.default_rng(0)
    data = data if data is not None else npz(
        x_train=rng.random((40, 8, 8, 1), dtype=np.float32), y_train=rng.integers(0, 10, 40),
        x_val=rng.random((300, 8, 8, 1), dtype=np.float32), y_val=np.sort(rng.integers(0, 10, 300)),
    )
    model = f"model of {name}".encode()
    inputs = Inputs(
        model_filename=f"{name}.keras", model_sha256=artifacts.put_bytes(model), model_bytes=len(model),
        data_filename=f"{name}.npz", data_sha256=artifacts.put_bytes(data), data_bytes=len(data),
    )
    repo = ModelRepository(store, artifacts)
    pushed = repo.push(name, None, inputs, node="n1")
    jobs = JobStore(store)
    jobs.claim(pushed.job_id)
    if variants is None:
        variants = [variant("fp32", FP32_SHA, 150 * MB, 0.97, 9.0), variant("int8", INT8_SHA, 40 * MB, 0.96, 12.0)]
    jobs.finish(pushed.job_id, {
        "task": "classification", "metric_name": "accuracy", "source_format": "keras", "model_flavor": "tf_keras",
        "baseline_id": "fp32", "input_shape": [None, 8, 8, 1], "n_outputs": 10, "variants": variants,
    })
    return pushed.version.ref


@dataclass
class FakeAgent:
    device_id: str
    public_raw: bytes
    send: Callable[[str, events_pb2.Event], None]
    mode: str = "ok"
    inbox: list = field(default_factory=list)
    seen: set = field(default_factory=set)
    last_sequence: int = 0
    active: object = None  # ModelManifest
    previous: object = None
    installs: list = field(default_factory=list)  # manifests activated, in order
    rejected: list = field(default_factory=list)
    rollbacks: int = 0

    def deliver(self) -> int:
        if self.mode == "silent":
            return 0
        if self.mode == "absent":  # never connected: no session at the broker, what was published is gone
            self.inbox.clear()
            return 0
        n = 0
        while self.inbox:
            self.handle(self.inbox.pop(0))
            n += 1
        return n

    def emit(self, manifest, state: int, reason: str = "", *, sequence: int | None = None, rollout_id: str | None = None, bytes_done: int | None = None) -> None:
        p = E.InstallProgress(state=state, reason=reason)
        if manifest is not None:
            p.rollout_id, p.model, p.version, p.variant_id, p.sequence = manifest.rollout_id, manifest.model, manifest.version, manifest.variant_id, manifest.sequence
            p.bytes_total = manifest.size_bytes
            p.bytes_done = manifest.size_bytes if bytes_done is None else bytes_done
        if rollout_id is not None:
            p.rollout_id = rollout_id
        if sequence is not None:
            p.sequence = sequence
        if self.active is not None:
            a = self.active
            p.active_model.CopyFrom(device_pb2.ActiveModel(model=a.model, version=a.version, variant_id=a.variant_id, sha256=a.sha256, sequence=a.sequence))
        self.send(self.device_id, E.Event(install=p))

    def reject(self, command_id: str, reason: str) -> None:
        self.rejected.append(reason)
        self.send(self.device_id, E.Event(rejected=E.CommandRejected(command_id=command_id, reason=reason)))

    def handle(self, cmd) -> None:
        if cmd.command_id in self.seen:
            return  # QoS 1 redelivery or a resend: run once
        kind = cmd.WhichOneof("kind")
        if kind == "deploy":
            try:
                m = verify_manifest(cmd.deploy.manifest, self.public_raw, device_id=self.device_id)
            except ManifestError as exc:
                return self.reject(cmd.command_id, str(exc))
            if m.sequence <= self.last_sequence:
                return self.reject(cmd.command_id, f"sequence {m.sequence} is not above {self.last_sequence}")
            self.seen.add(cmd.command_id)
            self.last_sequence = m.sequence
            self.install(m)
        elif kind == "rollback":
            try:
                order = verify_rollback(cmd.rollback, self.public_raw, device_id=self.device_id)
            except ManifestError as exc:
                return self.reject(cmd.command_id, str(exc))
            if order.sequence <= self.last_sequence:
                return self.reject(cmd.command_id, f"sequence {order.sequence} is not above {self.last_sequence}")
            self.seen.add(cmd.command_id)
            self.last_sequence = order.sequence
            self.roll_back(order)

    def install(self, m) -> None:
        self.emit(m, E.INSTALL_STATE_DOWNLOADING, bytes_done=0)
        if self.mode == "stall":
            return
        self.emit(m, E.INSTALL_STATE_DOWNLOADING, bytes_done=m.size_bytes // 2)
        self.emit(m, E.INSTALL_STATE_VERIFYING)
        if self.mode == "fail":
            return self.emit(m, E.INSTALL_STATE_FAILED, "acceptance test failed: metric 0.5000 below the floor 0.9500 on 256 golden samples")
        self.emit(m, E.INSTALL_STATE_STAGED)
        self.previous, self.active = self.active, m
        self.installs.append(m)
        self.emit(m, E.INSTALL_STATE_TRIAL)
        if self.mode == "hold_trial":
            return
        if self.mode == "trial_rollback":
            self.active, self.previous = self.previous, None
            return self.emit(m, E.INSTALL_STATE_ROLLED_BACK, "trial: p95 latency 41 ms above the budget 20 ms")
        self.emit(m, E.INSTALL_STATE_COMMITTED)

    def roll_back(self, order) -> None:
        self.rollbacks += 1
        if self.active is not None and self.active.rollout_id == order.rollout_id:
            undone = self.active
            self.active, self.previous = self.previous, None
            return self.emit(undone, E.INSTALL_STATE_ROLLED_BACK, f"rollback ordered by the coordinator: {order.reason}")
        what = "no model is active" if self.active is None else f"the active model is from rollout {self.active.rollout_id or '(none)'}"
        self.emit(None, E.INSTALL_STATE_ROLLED_BACK, f"nothing to roll back: {what}", sequence=order.sequence, rollout_id=order.rollout_id)


class World:
    """Store + registry + a ready model version + fake agents + a RolloutService on a fake clock."""

    def __init__(self, store, tmp_path, devices: list[tuple[str, str]], *, cfg: RolloutsConfig | None = None, variants: list[dict] | None = None,
                 labels: dict[str, str] | None = None):
        self.store = store
        self.tmp_path = tmp_path
        self.clock = Clock()
        self.cfg = cfg or RolloutsConfig(device_timeout_s=300, rollback_timeout_s=120, resend_s=60, canary_percent=10, trial_seconds=30)
        self.artifacts = ArtifactStore(tmp_path / "artifacts")
        self.ref = ready_version(store, self.artifacts, variants=variants)
        self.registry = DeviceRegistry(store, clock=self.clock)
        self.signer = Signer(Ed25519PrivateKey.generate())
        self.metrics = CoordinatorMetrics()
        self.ingest = Ingest(self.registry, self.metrics)
        self.ids: dict[str, str] = {}
        self.agents: dict[str, FakeAgent] = {}
        self.published: list[tuple[str, object]] = []  # (device id, Command) in publish order
        self.events: list[tuple[str, bytes]] = []  # every event payload sent, for redelivery tests
        self.figures: Figures | None = None
        for name, kind in devices:
            dev = self.registry.register(name, dict(labels or {"role": "camera"}), 600).device
            hw = hardware(kind)
            if hw is not None:
                self.registry.apply_hello(dev.id, hw, "0.1")
                self.registry.apply_status(dev.id, "online")
            self.ids[name] = dev.id
            self.agents[dev.id] = FakeAgent(dev.id, self.signer.public_raw, self._send_event)
        self.service = self.new_service()

    def new_service(self, owner: str = "node-a") -> RolloutService:
        """A fresh service (engine, repository, events) over the same store: what a restart builds."""
        self.ingest.event_handlers.clear()
        svc = RolloutService(
            store=self.store, registry=self.registry, signer=self.signer, publish=self.publish, cfg=self.cfg,
            models=ModelRepository(self.store, self.artifacts), artifacts=self.artifacts,
            measured=lambda classes: MeasuredTable(), observe=lambda ids, model, version, since: self.figures,
            owner=owner, clock=self.clock,
        )
        svc.register(self.ingest, self.metrics.registry)
        return svc

    # --- the wire ------------------------------------------------------------------------------------

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False):
        env = envelope.decode(payload, expect="command")
        assert topic == topics.cmd(env.device_id)
        self.published.append((env.device_id, env.command))
        self.agents[env.device_id].inbox.append(env.command)
        return SimpleNamespace(rc=0)

    def _send_event(self, device_id: str, event: events_pb2.Event) -> None:
        payload = envelope.encode(device_id, event=event)
        self.events.append((device_id, payload))
        assert self.ingest.handle(topics.event(device_id), payload) == "ok"

    def redeliver(self, index: int) -> str:
        device_id, payload = self.events[index]
        return self.ingest.handle(topics.event(device_id), payload)

    def pump(self) -> int:
        return sum(a.deliver() for a in self.agents.values())

    # --- driving -------------------------------------------------------------------------------------

    def agent(self, name: str) -> FakeAgent:
        return self.agents[self.ids[name]]

    def deploys(self, name: str | None = None) -> list:
        return [c for d, c in self.published if c.WhichOneof("kind") == "deploy" and (name is None or d == self.ids[name])]

    def rollbacks(self, name: str | None = None) -> list:
        return [c for d, c in self.published if c.WhichOneof("kind") == "rollback" and (name is None or d == self.ids[name])]

    def run(self, until: Callable[[], bool], *, step_s: float = 1.0, max_steps: int = 2000, service: RolloutService | None = None) -> int:
        """tick, deliver, advance the clock: until `until()` holds; returns the steps taken."""
        svc = service or self.service
        for step in range(max_steps):
            svc.engine.tick()
            self.pump()
            if until():
                return step
            self.clock.advance(step_s)
        raise AssertionError(f"condition not reached in {max_steps} steps of {step_s} s")

    def rollout(self, rollout_id: str):
        return self.service.get(rollout_id)

    def state(self, rollout_id: str) -> str:
        return self.service.repo.rollout(rollout_id).state

    def device_state(self, rollout_id: str, name: str) -> str:
        return self.service.repo.get(rollout_id).by_id()[self.ids[name]].state
