"""RolloutService: the rollouts area of a running coordinator in one object.

    service = RolloutService(store=..., registry=..., signer=..., publish=link.publish, cfg=cfg.rollouts,
                             models=model_repository, artifacts=artifact_store, measured=profile_results.measured,
                             observe=TelemetryObserver(...), owner=node_id)
    service.register(ctx.ingest, ctx.metrics.registry)   # install + rejected events, /metrics gauges
    service.start()  ...  service.stop()                  # the engine's thread

    service.plan(spec) -> admin_pb2.RolloutPlan          # dry run
    service.create(spec) -> admin_pb2.Rollout            # RolloutRefused: nothing was created
    service.get(ref) / list() / watch(ref, is_active) / control(ref, action, reason) / history(device_id)

Errors: BadRolloutSpec (bad option), BadRef / LabelError (bad ref, bad selector), ModelNotFound,
RolloutNotFound, RolloutRefused (nothing to send, a device busy in another rollout), RolloutConflict
(an action the rollout's state does not allow). api/rollouts.py maps them onto status codes.
"""
from __future__ import annotations

import logging
import threading
import time
import uuid
from datetime import datetime, timezone
from typing import Callable, Iterable, Iterator

from coordinator.config import RolloutsConfig
from coordinator.ingest import RateLimitedLog
from coordinator.metrics import StateCountCollector
from coordinator.models.artifacts import ArtifactStore
from coordinator.models.repository import ModelRepository
from coordinator.rollouts import convert
from coordinator.rollouts import states as S
from coordinator.rollouts.deploys import DeploySpecs
from coordinator.rollouts.engine import RolloutEngine
from coordinator.rollouts.events import InstallEvents
from coordinator.rollouts.golden import GoldenSetUnavailable, make_golden_set
from coordinator.rollouts.observe import Observe, no_telemetry
from coordinator.rollouts.planner import Planner, PlannedRollout, RolloutRefused
from coordinator.rollouts.repository import DevicesBusy, RolloutRepository
from coordinator.rollouts.spec import BadRolloutSpec
from coordinator.selection import MeasuredLatency
from coordinator.store.db import Store
from coordinator.store.devices import DeviceRegistry
from coordinator.store.rollout_tables import RolloutDeviceRow, RolloutRow
from coordinator.transfer.manifests import ManifestIssuer
from edgefleet.v1 import admin_pb2

log = logging.getLogger(__name__)
ACTIONS = ("pause", "resume", "abort")


class RolloutConflict(RuntimeError):
    """The action does not fit the rollout's state (pausing a finished rollout...)."""


class RolloutService:
    def __init__(
        self,
        *,
        store: Store,
        registry: DeviceRegistry,
        signer,
        publish: Callable[..., object],
        cfg: RolloutsConfig,
        models: ModelRepository,
        artifacts: ArtifactStore,
        measured: Callable[[Iterable[str]], MeasuredLatency],
        observe: Observe = no_telemetry,
        owner: str = "coordinator",
        clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
        limiter: RateLimitedLog | None = None,
        broadcast: Callable[[str, int, list[str]], object] | None = None,
    ):
        self.cfg = cfg
        self.clock = clock
        self.registry = registry
        self.models = models
        self.artifacts = artifacts
        self.repo = RolloutRepository(store, clock=clock)
        self.planner = Planner(models, artifacts, registry, cfg, measured=measured, claims=self.repo.claims)
        self.issuer = ManifestIssuer(store, signer, clock=clock)
        self.specs = DeploySpecs(models, artifacts)
        self._changes = threading.Condition()
        self._generation = 0
        self._finishes = 0  # rollouts this coordinator's engine finished: a throttled watcher sends the end at once
        self._stopped = threading.Event()
        self._metric_names: dict[tuple[str, str], str] = {}
        self.engine = RolloutEngine(
            self.repo, self.specs, self.issuer, publish, floor=self._floor, floors=self.repo.manifest_floors, observe=observe, metric_name=self._metric_name,
            clock=clock, owner=owner, lease_s=cfg.lease_s, tick_interval_s=cfg.tick_interval_s,
            on_change=lambda rollout_id: self._changed(rollout_id, False), on_finish=self._finished, broadcast=broadcast,
        )
        self.events = InstallEvents(self.repo, on_change=self._changed, limiter=limiter, clock=clock)

    # --- wiring ----------------------------------------------------------------------------------------

    def register(self, ingest, metrics_registry=None) -> None:
        """Take install and rejected events from ingest; export rollout gauges on /metrics."""
        ingest.event_handlers["install"] = self.events.handle_install
        previous = ingest.event_handlers.get("rejected")

        def rejected(env) -> bool:
            # Rejections of commands this area did not send go to whoever handled them before.
            outcome = self.events.reject(env.device_id, env.event.rejected.command_id, env.event.rejected.reason)
            if outcome == "not_ours" and previous is not None:
                return previous(env)
            return outcome != "unknown_device"

        ingest.event_handlers["rejected"] = rejected
        if metrics_registry is not None:
            metrics_registry.register(StateCountCollector("edgefleet_rollouts_by_state", "Rollouts by state", self.repo.count_by_state, S.ROLLOUT_STATES))
            metrics_registry.register(
                StateCountCollector("edgefleet_rollout_devices_by_state", "Devices of unfinished rollouts by state", self.repo.unfinished_device_counts, S.DEVICE_STATES)
            )

    def start(self) -> None:
        self.events.start()
        self.engine.start()

    def stop(self) -> None:
        self._stopped.set()
        self.engine.stop()
        self.events.stop()
        with self._changes:
            self._generation += 1
            self._changes.notify_all()

    def _changed(self, rollout_id: str, settled: bool = True) -> None:
        """A rollout changed: watchers look again; the engine wakes when a device finished (or its rollback did),
        not for download progress."""
        with self._changes:
            self._generation += 1
            self._changes.notify_all()
        if settled:
            self.engine.wake()

    def _finished(self, rollout_id: str) -> None:
        with self._changes:
            self._finishes += 1
            self._changes.notify_all()

    def _floor(self, device_id: str) -> int | None:
        row = self.registry.find(device_id)
        return None if row is None else int(row.manifest_sequence or 0)

    def _metric_name(self, r: RolloutRow) -> str:
        key = (r.model, r.version)
        if key not in self._metric_names:
            try:
                self._metric_names[key] = self.models.get_version(r.model, r.version).metric_name or "metric"
            except Exception:  # noqa: BLE001 - only a word in a message
                return "metric"
        return self._metric_names[key]

    # --- plan and create --------------------------------------------------------------------------------

    def plan(self, spec: admin_pb2.RolloutSpec) -> admin_pb2.RolloutPlan:
        return self.planner.plan(spec).to_proto()

    def create(self, spec: admin_pb2.RolloutSpec) -> admin_pb2.Rollout:
        planned = self.planner.plan(spec)
        why = planned.refusal()
        if why is not None:
            raise RolloutRefused(why)
        rollout_id = "r-" + uuid.uuid4().hex[:10]
        now = self.clock()
        golden = self._golden_sets(planned)
        row = RolloutRow(
            id=rollout_id, created_at=now, updated_at=now, model=planned.version.name, version=planned.version.version,
            selector=planned.selector, params=planned.params.to_json(), golden=golden, state=S.PENDING,
            reason=spec.reason.strip(), waves=len(planned.waves), current_wave=0, revision=0, lease_owner="",
        )
        waves = planned.wave_of
        devices = []
        for position, p in enumerate(planned.ordered()):
            included = not p.excluded
            devices.append(
                RolloutDeviceRow(
                    rollout_id=rollout_id, device_id=p.device_id, position=position, device_name=p.device.name,
                    hardware_class=p.device.hardware_class, wave=waves.get(p.device_id, 0), variant_id=p.variant_id or "",
                    sha256=p.choice.variant.sha256 if included else "", choice=p.reason, state=S.PENDING if included else S.SKIPPED,
                    install_state=0, detail="" if included else p.reason, bytes_done=0, bytes_total=0, sequence=0, command_id="",
                    rollback=S.RB_NONE, rollback_sequence=0, rollback_command_id="", updated_at=now, revision=0,
                    finished_at=None if included else now,
                )
            )
        try:
            self.repo.create(row, devices, claim=[p.device_id for p in planned.included])
        except DevicesBusy as exc:
            # Another rollout took them between the plan and now (another replica, at the same moment).
            names = {p.device_id: p.device.name for p in planned.plans}
            busy = ", ".join(sorted(f"{names.get(d, d)} (rollout {r})" for d, r in exc.busy.items()))
            raise RolloutRefused(f"devices are in a rollout that has not finished: {busy}; a device is in one rollout at a time") from None
        log.info(
            "rollout %s of %s created: %d devices in %d waves, %d excluded", rollout_id, planned.ref, len(planned.included), len(planned.waves), len(planned.excluded)
        )
        self._changed(rollout_id)
        return self.get(rollout_id)

    def _golden_sets(self, planned: PlannedRollout) -> dict:
        """{variant id: golden set} for the variants the plan sends; a variant without one gets none (the
        agent then checks only that the model loads and meets the latency budget)."""
        out: dict[str, dict] = {}
        made: dict[tuple, dict | None] = {}
        for variant_id in dict.fromkeys(p.variant_id for p in planned.included):
            cand = planned.candidate(variant_id)
            key = tuple(cand.input_features or ())
            if key not in made:
                try:
                    g = make_golden_set(self.artifacts, planned.version.data_sha256, planned.params.golden_samples, cand.input_features)
                    made[key] = g.to_json()
                except GoldenSetUnavailable as exc:
                    log.warning("rollout of %s: no golden set for %s: %s", planned.ref, variant_id, exc)
                    made[key] = None
            if made[key] is not None:
                out[variant_id] = made[key]
        return out

    # --- read -------------------------------------------------------------------------------------------

    def get(self, ref: str) -> admin_pb2.Rollout:
        return convert.rollout(self.repo.get(self.repo.resolve_id(ref)))

    def list(self) -> admin_pb2.ListRolloutsResponse:
        return admin_pb2.ListRolloutsResponse(rollouts=[convert.summary(r, counts) for r, counts in self.repo.list()])

    def watch(self, ref: str, is_active: Callable[[], bool], poll_s: float = 1.0, min_interval_s: float = 0.2) -> Iterator[admin_pb2.Rollout]:
        """The rollout now, then again after changes, until it finishes or the watcher goes away. Changes
        closer together than min_interval_s come as one message (a fleet's download progress would otherwise
        be a message per event), but the end is sent as soon as this coordinator's engine finishes the
        rollout; changes made on another replica are seen within poll_s."""
        rollout_id = self.repo.resolve_id(ref)
        last = None
        sent_at = 0.0
        while True:
            with self._changes:
                generation, finishes = self._generation, self._finishes
            revision = self.repo.revision(rollout_id)
            if revision != last:
                wait = sent_at + min_interval_s - time.monotonic()
                state = self.repo.rollout(rollout_id).state
                if wait > 0 and state not in S.FINISHED:
                    with self._changes:
                        self._changes.wait_for(lambda: self._finishes != finishes or self._stopped.is_set(), wait)
                    continue
                last = revision
                msg = self.get(rollout_id)
                sent_at = time.monotonic()
                yield msg
                if msg.state in S.FINISHED:
                    return
            if not is_active() or self._stopped.is_set():
                return
            with self._changes:
                self._changes.wait_for(lambda: self._generation != generation, poll_s)

    def history(self, device_id: str) -> list[admin_pb2.ModelHistoryEntry]:
        return [convert.history_entry(h) for h in self.repo.history(device_id)]

    # --- control ----------------------------------------------------------------------------------------

    def control(self, ref: str, action: str, reason: str = "") -> admin_pb2.Rollout:
        action = (action or "").strip().lower()
        if action not in ACTIONS:
            raise BadRolloutSpec(f"unknown action {action!r}: use one of {', '.join(ACTIONS)}")
        rollout_id = self.repo.resolve_id(ref)
        state = self.repo.rollout(rollout_id).state
        if action == "pause":
            ok = state == S.PAUSED or self.repo.set_rollout(rollout_id, (S.PENDING, S.RUNNING), state=S.PAUSED)
            allowed = "pending or running"
        elif action == "resume":
            ok = state == S.RUNNING or self.repo.set_rollout(rollout_id, (S.PAUSED,), state=S.RUNNING)
            allowed = "paused"
        else:
            ok = state == S.ABORTING or self.engine.abort(rollout_id, reason.strip() or "aborted by an operator")
            allowed = "pending, running or paused"
        if not ok:
            now_state = self.repo.rollout(rollout_id).state
            done = {"pause": "paused", "resume": "resumed", "abort": "aborted"}[action]
            raise RolloutConflict(f"rollout {rollout_id} is {now_state}: only a {allowed} rollout can be {done}")
        log.info("rollout %s: %s%s", rollout_id, action, f" ({reason.strip()})" if reason.strip() else "")
        self._changed(rollout_id)
        return self.get(rollout_id)
