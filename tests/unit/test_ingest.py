"""Ingest: decode, check and record what agents publish; drop and count everything else."""
from __future__ import annotations

import logging

import pytest

from coordinator.ingest import Ingest, RateLimitedLog
from coordinator.metrics import CoordinatorMetrics
from coordinator.store.devices import DeviceRegistry
from edgefleet import envelope, topics
from edgefleet.v1 import device_pb2, hardware_pb2


class FakeClock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


@pytest.fixture
def setup(tmp_path):
    from coordinator.store.db import Store

    store = Store(f"sqlite:///{tmp_path / 'db.sqlite'}")
    registry = DeviceRegistry(store)
    reg = registry.register("cam", {}, 60)
    registry.enroll(reg.token, None, "0.1")
    metrics = CoordinatorMetrics()
    clock = FakeClock()
    ingest = Ingest(registry, metrics, log_limiter=RateLimitedLog(60, clock))
    yield ingest, registry, metrics, reg.device.id, clock
    store.close()


def dropped(metrics, reason):
    return metrics.registry.get_sample_value("edgefleet_mqtt_dropped_total", {"reason": reason}) or 0


def test_status_and_hello_update_the_registry(setup):
    ingest, registry, metrics, dev, _ = setup
    hello = device_pb2.Hello(hardware=hardware_pb2.HardwareProfile(hardware_class="raspberry-pi-4"), agent_version="0.1")
    assert ingest.handle(topics.hello(dev), envelope.encode(dev, hello=hello)) == "ok"
    online = envelope.encode(dev, status=device_pb2.Status(state=device_pb2.DEVICE_STATE_ONLINE))
    assert ingest.handle(topics.status(dev), online) == "ok"
    assert ingest.handle(topics.status(dev), online) == "ok"  # a QoS 1 duplicate changes nothing
    row = registry.get(dev)
    assert (row.state, row.hardware_class) == ("online", "raspberry-pi-4")
    assert len(registry.status_history(dev)) == 1
    assert metrics.registry.get_sample_value("edgefleet_mqtt_messages_total", {"kind": "status"}) == 2


def test_garbage_is_dropped_counted_and_logged_once_per_minute(setup, caplog):
    ingest, registry, metrics, dev, clock = setup
    caplog.set_level(logging.WARNING, logger="coordinator.ingest")
    for _ in range(5):
        assert ingest.handle(topics.telemetry(dev), b"\x00\xffnot protobuf") == "malformed"
    assert dropped(metrics, "malformed") == 5
    assert len([r for r in caplog.records if "malformed" in r.getMessage()]) == 1
    clock.t += 61
    ingest.handle(topics.telemetry(dev), b"\x00\xff")
    assert len([r for r in caplog.records if "malformed" in r.getMessage()]) == 2
    # and the device is still served afterwards
    ok = envelope.encode(dev, status=device_pb2.Status(state=device_pb2.DEVICE_STATE_STOPPED))
    assert ingest.handle(topics.status(dev), ok) == "ok"
    assert registry.get(dev).state == "stopped"


def test_unknown_device_and_impersonation_are_dropped(setup):
    ingest, registry, metrics, dev, _ = setup
    hello = device_pb2.Hello(hardware=hardware_pb2.HardwareProfile(hardware_class="x"))
    assert ingest.handle(topics.hello("d-stranger"), envelope.encode("d-stranger", hello=hello)) == "unknown_device"
    assert ingest.handle(topics.hello(dev), envelope.encode("d-other", hello=hello)) == "device_mismatch"
    status_on_hello = envelope.encode(dev, status=device_pb2.Status(state=device_pb2.DEVICE_STATE_ONLINE))
    assert ingest.handle(topics.hello(dev), status_on_hello) == "malformed"
    assert dropped(metrics, "unknown_device") == 1
    assert dropped(metrics, "device_mismatch") == 1
    assert registry.get(dev).hardware is None


def test_retained_deletion_is_not_an_error(setup):
    ingest, _, metrics, dev, _ = setup
    assert ingest.handle(topics.status(dev), b"") == "cleared"
    assert dropped(metrics, "malformed") == 0
