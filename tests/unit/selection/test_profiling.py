"""On-device profiling: device choice, signed requests, results folded into measured latency, the rpc body."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from coordinator.profiling.api import ProfileRefused, profile_model
from coordinator.profiling.requests import ProfileVariant, build_profile_request
from coordinator.profiling.results import ProfileResults, RequestedVariant, setup_profiling
from coordinator.profiling.targets import choose_profile_devices
from coordinator.selection import Candidate, Constraints, DeviceFacts, select
from coordinator.signing import Signer
from coordinator.store.devices import DeviceRegistry
from coordinator.transfer.grants import BlobGrants
from coordinator.transfer.manifests import ManifestIssuer, ManifestSpec, verify_manifest
from edgefleet import envelope, topics
from edgefleet.v1 import admin_pb2, events_pb2, hardware_pb2

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=timezone.utc)
MB = 1_000_000
FP32_SHA, INT8_SHA = "a1" * 32, "b2" * 32


@dataclass
class Dev:
    id: str
    hardware_class: str
    state: str
    last_seen: datetime | None


def test_a_few_devices_per_class_online_first_then_most_recently_seen():
    t = NOW
    devices = [
        Dev("p1", "raspberry-pi-4", "offline", t),
        Dev("p2", "raspberry-pi-4", "online", t - timedelta(hours=2)),
        Dev("p3", "raspberry-pi-4", "online", t - timedelta(minutes=1)),
        Dev("p4", "raspberry-pi-4", "stopped", None),
        Dev("c1", "coral-dev-board", "offline", t - timedelta(days=1)),
        Dev("n1", "", "registered", None),  # never said hello: its class is unknown
    ]
    assert [d.id for d in choose_profile_devices(devices, per_class=2)] == ["c1", "p3", "p2"]
    assert [d.id for d in choose_profile_devices(devices, per_class=3)] == ["c1", "p3", "p2", "p1"]
    with pytest.raises(ValueError, match="per_class"):
        choose_profile_devices(devices, per_class=0)


def hardware(cls: str, available=3_000 * MB, runtime="ai-edge-litert") -> hardware_pb2.HardwareProfile:
    hw = hardware_pb2.HardwareProfile(hardware_class=cls, latency_factor=4.0)
    hw.memory.available_bytes = available
    hw.storage.free_bytes = 10_000 * MB
    hw.runtime.name, hw.runtime.version = runtime, "2.3.0"
    return hw


@pytest.fixture
def fleet(store):
    registry = DeviceRegistry(store, clock=lambda: NOW)
    ids = {}
    for name, hw in (("pi-a", hardware("raspberry-pi-4")), ("pi-b", hardware("raspberry-pi-4")), ("zero", hardware("raspberry-pi-zero-2-w", available=300 * MB)),
                     ("bare", hardware("raspberry-pi-4", runtime="none"))):
        dev = registry.register(name, {"role": "camera"}, 600).device
        registry.apply_hello(dev.id, hw, "0.1")
        registry.apply_status(dev.id, "online")
        ids[name] = dev.id
    registry.register("unenrolled", {"role": "camera"}, 600)
    return registry, ids


def variants() -> list[ProfileVariant]:
    out = []
    for vid, sha, size, arena, p95 in (("fp32", FP32_SHA, 140 * MB, 40 * MB, 31.0), ("int8", INT8_SHA, 36 * MB, 10 * MB, 36.0)):
        cand = Candidate(vid, vid, sha, size, arena_bytes=arena, metric=0.9, host_p50_ms=p95 - 1, host_p95_ms=p95)
        out.append(ProfileVariant(cand, ManifestSpec("cam", "3", vid, vid, sha, size)))
    return out


def result(request_id, variant_id, p95, *, simulated=False, error=""):
    return events_pb2.ProfileResult(request_id=request_id, variant_id=variant_id, load_ms=12.0, p50_ms=p95 * 0.9, p95_ms=p95, peak_rss_bytes=80 * MB, error=error, simulated=simulated)


def event(device_id, r, message_id):
    return envelope.wrap(device_id, message_id=message_id, event=events_pb2.Event(profile_result=r))


def test_requests_carry_signed_manifests_of_what_each_device_can_load(store, fleet):
    registry, ids = fleet
    signer = Signer(Ed25519PrivateKey.generate())
    results = ProfileResults(store, clock=lambda: NOW)
    facts = [DeviceFacts.from_hardware(ids[n], n, hardware_pb2.HardwareProfile.FromString(registry.get(ids[n]).hardware)) for n in ("pi-a", "zero", "bare")]
    plan = build_profile_request(ManifestIssuer(store, signer), results, facts, variants(), model="cam", version="3", warmup=2, runs=10, request_id="p-1")
    assert plan.device_ids == [ids["pi-a"], ids["zero"]]
    got = {d: [verify_manifest(m, signer.public_raw, device_id=d).variant_id for m in c.profile.candidates] for d, c in plan.commands.items()}
    assert got == {ids["pi-a"]: ["fp32", "int8"], ids["zero"]: ["int8"]}  # fp32 does not fit the 300 MB board
    assert plan.commands[ids["pi-a"]].profile.runs == 10
    assert "fp32: 140 MB + 40 MB arena > 50% of 300 MB available" in dict(plan.skipped[ids["zero"]])["fp32"]
    assert "no inference runtime" in plan.skipped[ids["bare"]][0][1]
    assert BlobGrants(store).allowed(ids["zero"], INT8_SHA) and not BlobGrants(store).allowed(ids["zero"], FP32_SHA)
    req = results.request("p-1")
    assert req.device_ids == plan.device_ids and [c["variant_id"] for c in req.candidates] == ["fp32", "int8"]


def test_results_become_measured_latency_idempotently(store, fleet):
    _, ids = fleet
    results = ProfileResults(store, clock=lambda: NOW)
    results.record_request("p-1", "cam", "3", [ids["pi-a"], ids["pi-b"]], [RequestedVariant("fp32", FP32_SHA, 30.0, 31.0), RequestedVariant("int8", INT8_SHA, 35.0, 36.0)])
    assert results.record(ids["pi-a"], "m1", result("p-1", "int8", 90.0)) == "recorded"
    assert results.record(ids["pi-a"], "m1", result("p-1", "int8", 90.0)) == "duplicate"  # QoS 1 redelivery
    assert results.record(ids["pi-b"], "m2", result("p-1", "int8", 80.0)) == "recorded"
    m = results.latency("raspberry-pi-4", INT8_SHA)
    assert (m.count, m.p95_ms, m.p50_ms, m.load_ms, m.peak_rss_bytes, m.host_p95_ms, m.simulated) == (2, 80.0, 72.0, 12.0, 80 * MB, 36.0, False)
    # a simulated result does not replace figures from real hardware
    assert results.record(ids["pi-b"], "m3", result("p-1", "int8", 400.0, simulated=True)) == "recorded"
    m = results.latency("raspberry-pi-4", INT8_SHA)
    assert (m.count, m.p95_ms, m.simulated) == (3, 80.0, False)
    # a failure is counted apart from the figures
    assert results.record(ids["pi-a"], "m4", result("p-1", "fp32", 0.0, error="Didn't find op for builtin opcode 'FULLY_CONNECTED' version '12'")) == "recorded"
    f = results.latency("raspberry-pi-4", FP32_SHA)
    assert (f.count, f.error_count, f.p95_ms, f.failed_only) == (0, 1, None, True)
    assert "FULLY_CONNECTED" in f.last_error
    # the rest is refused: unknown request, a device the request did not ask, an unknown device
    assert results.record(ids["pi-a"], "m5", result("p-9", "int8", 1.0)) == "unknown_request"
    assert results.record(ids["zero"], "m6", result("p-1", "int8", 1.0)) == "not_asked"
    assert results.handle_event(event("d-nobody", result("p-1", "int8", 1.0), "m7")) is False
    assert len(results.results("p-1")) == 4
    assert results.latency("raspberry-pi-4", INT8_SHA).count == 3

    # selection reads the snapshot: int8 measured at 80 ms; fp32 failed on the class and is left out
    table = results.measured()
    cands = [v.candidate for v in variants()]
    pi = DeviceFacts(ids["pi-a"], "pi-a", "raspberry-pi-4", memory_available_bytes=3_000 * MB, storage_free_bytes=10_000 * MB, runtime_name="ai-edge-litert", runtime_version="2.3.0", latency_factor=4.0)
    choice = select(pi, cands, Constraints(), table)
    assert choice.variant_id == "int8" and "p95 80 ms (measured on raspberry-pi-4, 3 results)" in choice.reason
    assert "fp32: failed on raspberry-pi-4 devices (1x)" in dict(choice.excluded)["fp32"]
    assert len(results.measured(["coral-dev-board"])) == 0


class Link:
    def __init__(self):
        self.sent = []

    def publish(self, topic, payload, qos=1, retain=False):
        self.sent.append((topic, envelope.decode(payload, expect="command")))


def test_profile_model_rpc_body(store, fleet):
    registry, ids = fleet
    ingest = SimpleNamespace(event_handlers={})
    ctx = SimpleNamespace(store=store, registry=registry, signer=Signer(Ed25519PrivateKey.generate()), link=Link(), clock=lambda: NOW, ingest=ingest)
    results = setup_profiling(ctx)
    assert ingest.event_handlers["profile_result"] == results.handle_event
    resp = profile_model(ctx, variants(), admin_pb2.ProfileModelRequest(ref="cam:3", selector="role=camera", per_class=1), model="cam", version="3", results=results)
    # one device per class that can load something: a Pi 4 (online, most recently seen) and the Zero;
    # "bare" has no runtime, "unenrolled" never reported hardware
    assert len(resp.device_ids) == 2 and ids["zero"] in resp.device_ids
    assert {t for t, _ in ctx.link.sent} == {topics.cmd(d) for d in resp.device_ids}
    assert all(env.command.profile.request_id == resp.request_id for _, env in ctx.link.sent)
    # nothing the device cannot load is sent: the 300 MB board gets int8 only
    sent = {t: [m.manifest for m in env.command.profile.candidates] for t, env in ctx.link.sent}
    assert len(sent[topics.cmd(ids["zero"])]) == 1
    # a result for it lands in the store through the registered handler
    pi = next(d for d in resp.device_ids if d != ids["zero"])
    assert ingest.event_handlers["profile_result"](event(pi, result(resp.request_id, "int8", 70.0), "m-1")) is True
    assert results.latency("raspberry-pi-4", INT8_SHA).p95_ms == 70.0

    with pytest.raises(ProfileRefused, match="no device matches the selector 'role=doorbell'"):
        profile_model(ctx, variants(), admin_pb2.ProfileModelRequest(ref="cam:3", selector="role=doorbell"), model="cam", version="3")
    with pytest.raises(ProfileRefused, match="selector"):
        profile_model(ctx, variants(), admin_pb2.ProfileModelRequest(ref="cam:3", selector="role"), model="cam", version="3")
    registry.label(ids["bare"], {"only": "me"}, [])
    with pytest.raises(ProfileRefused, match="none of the 1 matching devices can run a model .bare: the device has no inference runtime"):
        profile_model(ctx, variants(), admin_pb2.ProfileModelRequest(ref="cam:3", selector="only=me"), model="cam", version="3")
