"""From a RolloutSpec to a plan: the model version, the devices the selector matches, the variant each
gets (coordinator/selection.py) and the wave it is in. `edgectl rollout plan` shows it as it is;
CreateRollout refuses a plan that sends nothing or touches a device already in a rollout.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterable

from coordinator.config import RolloutsConfig
from coordinator.models.artifacts import ArtifactStore
from coordinator.models.records import VersionRecord, parse_ref
from coordinator.models.repository import ModelRepository
from coordinator.profiling.api import device_facts
from coordinator.rollouts.candidates import RolloutCandidate, version_candidates
from coordinator.rollouts.spec import RolloutParams, params_from_spec
from coordinator.rollouts.waves import WaveMember, assign_waves
from coordinator.selection import Choice, DevicePlan, MeasuredLatency, plan
from coordinator.store.devices import DeviceRegistry
from edgefleet.labels import parse_selector
from edgefleet.v1 import admin_pb2

MAX_REASONS = 20  # devices named in one refusal; the rest are counted


class RolloutRefused(RuntimeError):
    """Nothing was created; the message says why, per device where it is about devices."""


@dataclass
class PlannedRollout:
    version: VersionRecord
    params: RolloutParams
    selector: str
    candidates: list[RolloutCandidate]
    plans: list[DevicePlan]  # every matching device, in name order; busy ones excluded
    waves: list[list[WaveMember]]
    busy: dict[str, str] = field(default_factory=dict)  # device id -> the unfinished rollout it is in

    @property
    def ref(self) -> str:
        return self.version.ref

    @property
    def wave_of(self) -> dict[str, int]:
        return {m.device_id: i for i, wave in enumerate(self.waves) for m in wave}

    @property
    def included(self) -> list[DevicePlan]:
        return [p for p in self.plans if not p.excluded]

    @property
    def excluded(self) -> list[DevicePlan]:
        return [p for p in self.plans if p.excluded]

    def candidate(self, variant_id: str) -> RolloutCandidate:
        return next(c for c in self.candidates if c.variant_id == variant_id)

    def ordered(self) -> list[DevicePlan]:
        """Included devices in send order (wave, then position in the wave), then the excluded ones."""
        by_id = {p.device_id: p for p in self.plans}
        out = [by_id[m.device_id] for wave in self.waves for m in wave]
        return out + self.excluded

    def to_proto(self) -> admin_pb2.RolloutPlan:
        waves = self.wave_of
        return admin_pb2.RolloutPlan(devices=[p.to_proto(waves.get(p.device_id, 0)) for p in self.ordered()], ref=self.ref, waves=len(self.waves))

    def refusal(self) -> str | None:
        """Why CreateRollout must refuse this plan, or None."""
        names = {p.device_id: p.device.name or p.device_id for p in self.plans}
        if self.busy:
            listed = [f"{names.get(d, d)} (rollout {r})" for d, r in sorted(self.busy.items(), key=lambda kv: names.get(kv[0], kv[0]))]
            return (
                f"{len(self.busy)} of the matching devices {'is' if len(self.busy) == 1 else 'are'} in a rollout that has not finished: "
                f"{_capped(listed)}. A device is in one rollout at a time: wait for that rollout, abort it, or narrow --select"
            )
        if not self.included:
            reasons = [f"{names[p.device_id]}: {p.reason}" for p in self.plans]
            return f"no variant of {self.ref} fits any of the {len(self.plans)} matching devices ({_capped(reasons, '; ')})"
        return None


def _capped(items: list[str], sep: str = ", ") -> str:
    text = sep.join(items[:MAX_REASONS])
    if len(items) > MAX_REASONS:
        text += f"{sep}and {len(items) - MAX_REASONS} more"
    return text


class Planner:
    def __init__(
        self,
        models: ModelRepository,
        artifacts: ArtifactStore,
        registry: DeviceRegistry,
        cfg: RolloutsConfig,
        *,
        measured: Callable[[Iterable[str]], MeasuredLatency],
        claims: Callable[[list[str]], dict[str, str]],
    ):
        self.models = models
        self.artifacts = artifacts
        self.registry = registry
        self.cfg = cfg
        self.measured = measured
        self.claims = claims

    def version(self, ref: str) -> VersionRecord:
        """NAME:VERSION (or NAME: its latest ready version); must be ready. ModelNotFound / BadRef / RolloutRefused."""
        name, version = parse_ref(ref)
        record = self.models.get_version(name, version, ready_only=version is None)
        if record.state != "ready":
            why = f": {record.error}" if record.error else ""
            raise RolloutRefused(f"{record.ref} is {record.state}{why}; only a ready version can be rolled out (edgectl model show {record.ref})")
        return record

    def plan(self, spec: admin_pb2.RolloutSpec) -> PlannedRollout:
        params = params_from_spec(spec, self.cfg)
        selector = parse_selector(spec.selector)
        version = self.version(spec.ref)
        candidates = version_candidates(version, self.artifacts, chunk_size=params.chunk_size)
        if not candidates:
            raise RolloutRefused(f"{version.ref} has no built variant to roll out (every variant failed or was skipped: edgectl model show {version.ref})")
        rows = self.registry.list(selector)
        if not rows:
            raise RolloutRefused(f"no device matches the selector {spec.selector!r}" if spec.selector else "no device is registered")
        facts = [device_facts(r) for r in rows]
        measured = self.measured({f.hardware_class for f in facts if f.hardware_class})
        plans = plan(facts, [c.candidate for c in candidates], params.constraints(), measured)
        busy = self.claims([p.device_id for p in plans if not p.excluded])
        if busy:
            plans = [
                DevicePlan(p.device, Choice(None, f"in rollout {busy[p.device_id]}, which has not finished (a device is in one rollout at a time)"))
                if p.device_id in busy else p
                for p in plans
            ]
        online = {r.id for r in rows if r.state == "online"}
        members = [WaveMember(p.device_id, p.device.name, p.device.hardware_class, p.variant_id or "", p.device_id in online) for p in plans if not p.excluded]
        waves = assign_waves(members, canary_percent=params.canary_percent, canary_count=params.canary_count, waves=params.waves)
        return PlannedRollout(version, params, spec.selector.strip(), candidates, plans, waves, busy)
