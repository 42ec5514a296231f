"""Profile requests: per device, signed manifests of the candidates it can load, in one ProfileRequest command."""
from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Sequence

from coordinator.profiling.results import ProfileResults, RequestedVariant
from coordinator.selection import Candidate, Constraints, DeviceFacts, device_exclusion, hard_exclusion
from coordinator.transfer.commands import profile_command
from coordinator.transfer.manifests import ManifestIssuer, ManifestSpec
from edgefleet.v1 import commands_pb2

DEFAULT_WARMUP = 5
DEFAULT_RUNS = 50


@dataclass(frozen=True)
class ProfileVariant:
    """One variant to benchmark: what selection knows about it, and what its manifest says."""

    candidate: Candidate
    spec: ManifestSpec

    def __post_init__(self) -> None:
        c, m = self.candidate, self.spec
        if (c.variant_id, c.sha256) != (m.variant_id, m.sha256):
            raise ValueError(f"candidate {c.variant_id} ({c.sha256[:12]}) and manifest spec {m.variant_id} ({m.sha256[:12]}) differ")


@dataclass
class ProfilePlan:
    request_id: str
    commands: dict[str, commands_pb2.Command] = field(default_factory=dict)  # device id -> Command(profile=...)
    skipped: dict[str, list[tuple[str, str]]] = field(default_factory=dict)  # device id -> [(variant id, why not sent)]

    @property
    def device_ids(self) -> list[str]:
        return list(self.commands)


def build_profile_request(
    issuer: ManifestIssuer,
    results: ProfileResults,
    devices: Sequence[DeviceFacts],
    variants: Sequence[ProfileVariant],
    *,
    model: str,
    version: str,
    warmup: int = DEFAULT_WARMUP,
    runs: int = DEFAULT_RUNS,
    constraints: Constraints = Constraints(),
    request_id: str | None = None,
) -> ProfilePlan:
    """Sign each device's candidates and record the request; the caller publishes plan.commands.

    A device is sent only the variants it could load at all (selection's hard constraints with
    nothing measured: delegate, runtime, memory, storage): benchmarking a model that cannot fit
    tells nothing and may push a small board out of memory. What was left out is in plan.skipped.
    """
    if runs < 1:
        raise ValueError(f"runs must be >= 1, got {runs}")
    request_id = request_id or "p-" + uuid.uuid4().hex[:16]
    plan = ProfilePlan(request_id)
    for device in devices:
        blocked = device_exclusion(device)
        if blocked is not None:
            plan.skipped[device.device_id] = [(v.candidate.variant_id, blocked) for v in variants]
            continue
        chosen, skipped = [], []
        for v in variants:
            why = hard_exclusion(device, v.candidate, constraints)
            (skipped.append((v.candidate.variant_id, why)) if why else chosen.append(v))
        if skipped:
            plan.skipped[device.device_id] = skipped
        if chosen:
            signed = issuer.issue_many(device.device_id, [v.spec for v in chosen])
            plan.commands[device.device_id] = profile_command(request_id, signed, warmup=warmup, runs=runs)
    if plan.commands:
        requested = [RequestedVariant(v.spec.variant_id, v.spec.sha256, v.candidate.host_p50_ms, v.candidate.host_p95_ms) for v in variants]
        results.record_request(request_id, model, version, plan.device_ids, requested)
    return plan
