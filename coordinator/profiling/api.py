"""The body of the ProfileModel rpc (`edgectl model profile MODEL:VER --select ... --per-class N`).

The models area resolves MODEL:VER to its variants and calls:

    def ProfileModel(self, request, context):
        version, variants = <look up request.ref in the model store>    # -> list[ProfileVariant]
        try:
            return profile_model(self.ctx, variants, request, model=version.name, version=version.version, results=self.profile_results)
        except ProfileRefused as exc:
            context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(exc))
"""
from __future__ import annotations

import logging
from typing import Sequence

from coordinator.profiling.requests import DEFAULT_RUNS, DEFAULT_WARMUP, ProfileVariant, build_profile_request
from coordinator.profiling.results import ProfileResults
from coordinator.profiling.targets import choose_profile_devices
from coordinator.selection import Constraints, DeviceFacts, device_exclusion
from coordinator.transfer.commands import send_command
from coordinator.transfer.manifests import ManifestIssuer
from edgefleet.labels import LabelError, parse_selector
from edgefleet.v1 import admin_pb2, hardware_pb2

log = logging.getLogger(__name__)
DEFAULT_PER_CLASS = 2


class ProfileRefused(ValueError):
    """Nothing was sent; the message says why (bad selector, no device, nothing a device can load)."""


def device_facts(row) -> DeviceFacts:
    """DeviceFacts of a registry DeviceRow (its last hello's hardware profile)."""
    hw = None
    if row.hardware:
        hw = hardware_pb2.HardwareProfile()
        hw.ParseFromString(row.hardware)
    return DeviceFacts.from_hardware(row.id, row.name, hw)


def profile_model(
    ctx,
    variants: Sequence[ProfileVariant],
    request: admin_pb2.ProfileModelRequest,
    *,
    model: str,
    version: str,
    results: ProfileResults | None = None,
    issuer: ManifestIssuer | None = None,
    warmup: int = DEFAULT_WARMUP,
    runs: int = DEFAULT_RUNS,
) -> admin_pb2.ProfileModelResponse:
    """Pick per_class devices of each hardware class among those the selector matches, send each a
    ProfileRequest with signed manifests of the variants it can load, and return who got one.
    Raises ProfileRefused when nothing can be sent."""
    try:
        selector = parse_selector(request.selector)
    except LabelError as exc:
        raise ProfileRefused(str(exc)) from None
    usable = [v for v in variants if v.spec.sha256]
    if not usable:
        raise ProfileRefused(f"{model}:{version} has no built variant to profile")
    matched = ctx.registry.list(selector)
    if not matched:
        raise ProfileRefused(f"no device matches the selector {request.selector!r}" if request.selector else "no device is registered")
    reported = [r for r in matched if r.hardware and r.hardware_class]
    if not reported:
        raise ProfileRefused(f"none of the {len(matched)} matching devices has reported its hardware yet (enroll and start their agents)")
    facts = {r.id: device_facts(r) for r in reported}
    blocked = {r.name: device_exclusion(facts[r.id]) for r in reported}
    runnable = [r for r in reported if blocked[r.name] is None]
    if not runnable:
        reasons = "; ".join(f"{name}: {why}" for name, why in blocked.items())
        raise ProfileRefused(f"none of the {len(reported)} matching devices can run a model ({reasons})")
    chosen = choose_profile_devices(runnable, request.per_class or DEFAULT_PER_CLASS)
    results = results or ProfileResults(ctx.store, clock=ctx.clock)
    issuer = issuer or ManifestIssuer(ctx.store, ctx.signer, clock=ctx.clock)
    plan = build_profile_request(
        issuer, results, [facts[r.id] for r in chosen], usable, model=model, version=version, warmup=warmup, runs=runs, constraints=Constraints()
    )
    if not plan.commands:
        reasons = "; ".join(f"{dev}: {why}" for dev, skipped in plan.skipped.items() for _, why in skipped[:1])
        raise ProfileRefused(f"no chosen device can load any variant of {model}:{version} ({reasons})")
    for device_id, command in plan.commands.items():
        send_command(ctx.link.publish, device_id, command)
    log.info("profile request %s for %s:%s sent to %s", plan.request_id, model, version, ", ".join(plan.device_ids))
    return admin_pb2.ProfileModelResponse(device_ids=plan.device_ids, request_id=plan.request_id)
