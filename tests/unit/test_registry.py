"""The device registry on SQLite and PostgreSQL (the same tests run on both)."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from coordinator.store.devices import DeviceExists, DeviceNotFound, DeviceRegistry, TokenRejected, changed_paths
from edgefleet.labels import LabelError
from edgefleet.v1 import hardware_pb2


class Clock:
    def __init__(self):
        self.now = datetime(2026, 11, 21, 12, 0, tzinfo=timezone.utc)

    def __call__(self):
        return self.now


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def registry(store, clock):
    return DeviceRegistry(store, clock=clock)


def hw(arch="aarch64", cores=4, available=1000) -> hardware_pb2.HardwareProfile:
    p = hardware_pb2.HardwareProfile(hardware_class=f"{arch}-{cores}c")
    p.cpu.arch = arch
    p.cpu.cores_logical = cores
    p.memory.total_bytes = 4 << 30
    p.memory.available_bytes = available
    p.accelerators.add(kind="edgetpu", bus="pcie", id="/dev/apex_0")
    return p


def test_register_and_enroll_spends_the_token(registry):
    reg = registry.register("cam-1", {"role": "camera"}, token_ttl_s=600)
    assert reg.device.state == "registered"
    dev = registry.enroll(reg.token, hw(), "0.1.0")
    assert dev.id == reg.device.id and dev.enrolled_at is not None
    stored = registry.get("cam-1")
    assert hardware_pb2.HardwareProfile.FromString(stored.hardware).accelerators[0].kind == "edgetpu"
    with pytest.raises(TokenRejected, match="already used"):
        registry.enroll(reg.token, hw(), "0.1.0")


def test_unknown_and_expired_tokens_are_rejected(registry, clock):
    with pytest.raises(TokenRejected, match="unknown"):
        registry.enroll("not-a-token", hw(), "0.1.0")
    reg = registry.register("cam-2", {}, token_ttl_s=60)
    clock.now += timedelta(seconds=61)
    with pytest.raises(TokenRejected, match="expired"):
        registry.enroll(reg.token, hw(), "0.1.0")
    assert registry.get("cam-2").enrolled_at is None


def test_failed_provisioning_leaves_the_token_unspent(registry):
    reg = registry.register("cam-3", {}, token_ttl_s=60)

    def broker_down(row):
        raise RuntimeError("broker down")

    with pytest.raises(RuntimeError):
        registry.enroll(reg.token, hw(), "0.1.0", before_commit=broker_down)
    assert registry.enroll(reg.token, hw(), "0.1.0").id == reg.device.id


def test_duplicate_name_is_refused_and_the_first_device_kept(registry):
    first = registry.register("gw", {"site": "a"}, 60)
    with pytest.raises(DeviceExists, match="'gw' already exists"):
        registry.register("gw", {"site": "b"}, 60)
    assert registry.get("gw").id == first.device.id
    assert registry.get("gw").labels == {"site": "a"}


def test_bad_name_is_refused(registry):
    with pytest.raises(LabelError, match="invalid device name"):
        registry.register("no spaces", {}, 60)


def test_selector_label_and_remove(registry):
    registry.register("a", {"role": "camera", "site": "x"}, 60)
    registry.register("b", {"role": "camera", "site": "y"}, 60)
    registry.register("c", {"role": "gateway"}, 60)
    assert [d.name for d in registry.list({"role": "camera"})] == ["a", "b"]
    assert [d.name for d in registry.list({"role": "camera", "site": "y"})] == ["b"]
    assert [d.name for d in registry.list()] == ["a", "b", "c"]
    registry.label("c", {"role": "camera"}, [])
    registry.label("a", {}, ["site"])
    assert registry.get("a").labels == {"role": "camera"}
    assert [d.name for d in registry.list({"role": "camera"})] == ["a", "b", "c"]
    registry.remove("b")
    with pytest.raises(DeviceNotFound):
        registry.get("b")
    with pytest.raises(DeviceNotFound):
        registry.remove("b")
    assert registry.count_by_state() == {"registered": 2}


def test_status_and_hello_record_state_and_hardware_history(registry, clock):
    reg = registry.register("pi", {}, 60)
    dev = registry.enroll(reg.token, hw(), "0.1.0")
    assert registry.apply_status(dev.id, "online")
    assert registry.get(dev.id).state == "online"
    assert registry.get(dev.id).last_seen is not None
    # available memory moves on every hello: no history row for it
    registry.apply_hello(dev.id, hw(available=5), "0.1.0")
    assert len(registry.hardware_history(dev.id)) == 1
    clock.now += timedelta(minutes=1)
    registry.apply_hello(dev.id, hw(cores=8), "0.1.1")
    history = registry.hardware_history(dev.id)
    assert [h.changed for h in history] == [["*"], ["cpu.cores_logical", "hardware_class"]]
    assert registry.apply_status(dev.id, "offline")
    assert [s.state for s in registry.status_history(dev.id)] == ["online", "offline"]
    registry.apply_hello(dev.id, hw(cores=8), "0.1.1", manifest_sequence=7)
    registry.apply_hello(dev.id, hw(cores=8), "0.1.1", manifest_sequence=3)  # an older hello never lowers it
    assert registry.get(dev.id).manifest_sequence == 7
    assert not registry.apply_status("d-unknown", "online")
    assert not registry.apply_hello("d-unknown", hw(), "0.1")


def test_changed_paths_sees_nested_and_repeated_fields():
    a, b = hw(), hw()
    b.accelerators[0].id = "/dev/apex_1"
    b.cpu.arch = "x86_64"
    assert changed_paths(a, b) == ["cpu.arch", "accelerators"]
