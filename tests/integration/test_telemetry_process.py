"""Telemetry ingest in its child process (coordinator/telemetry/process.py), with a real child and SQLite.

No broker: the test plays the link (it numbers deliveries and records the PUBACKs the parent would send) and
checks what the parent acknowledges, and when: only what the child committed, in arrival order, and after the
child is killed with reports received but not committed, everything again once the next child stores it.
"""
from __future__ import annotations

import os
import signal
import sqlite3
import threading
import uuid
from datetime import datetime, timedelta, timezone

import psutil
import pytest

from coordinator import acks
from coordinator.config import TelemetryConfig
from coordinator.ingest import Ingest
from coordinator.metrics import CoordinatorMetrics
from coordinator.store.db import Store
from coordinator.store.devices import DeviceRegistry
from coordinator.telemetry.service import TelemetryService
from edgefleet import envelope, topics
from tests.fleet import wait_for
from tests.unit.telemetry_store.factories import model, report

REPORTS = 60


class FakeLink:
    """Deliveries numbered as paho would, through Ingest.take as on paho's thread; PUBACKs recorded in order."""

    def __init__(self, ingest: Ingest):
        self.ingest = ingest
        self.acked: list[int] = []
        self.lock = threading.Lock()
        self.order = acks.AckOrder(self._ack, self._ack_many)
        self.batches: list[int] = []  # sizes of the PUBACK batches, as the link would write them
        self.mid = 0

    def _ack(self, mid: int) -> None:
        with self.lock:
            self.acked.append(mid)
            self.batches.append(1)

    def _ack_many(self, mids: list[int]) -> None:
        with self.lock:
            self.acked.extend(mids)
            self.batches.append(len(mids))

    def deliver(self, topic: str, payload: bytes) -> None:
        self.mid += 1
        d = self.order.arrived(self.mid)
        acks.handling(d)
        try:
            assert self.ingest.take(topic, payload)
        finally:
            acks.handling(None)
        if not d.deferred:
            d.complete()


@pytest.fixture
def setup(tmp_path):
    url = f"sqlite:///{tmp_path / 'telemetry.db'}"
    store = Store(url)
    registry = DeviceRegistry(store)
    metrics = CoordinatorMetrics()
    ingest = Ingest(registry, metrics)
    service = TelemetryService(store, registry, metrics, TelemetryConfig(flush_interval_s=0.05), limiter=ingest.limiter, process=True)
    service.attach(ingest)
    device = registry.register("cam-proc", {}, 3600).device.id
    service.start()
    yield store, tmp_path / "telemetry.db", metrics, ingest, service, device
    service.stop()
    store.close()


def payloads(device: str, n: int) -> list[tuple[str, bytes]]:
    now = datetime.now(timezone.utc)
    out = []
    for i in range(n):
        message_id = uuid.uuid4().hex
        t = report(now - timedelta(seconds=10 * (n - i)), model("digits", "1", latencies=[1.0, 2.0 + i]), sequence=i)
        out.append((message_id, envelope.encode(device, telemetry=t, message_id=message_id)))
    return out


def rows_by_message(db_path) -> dict[str, int]:
    with sqlite3.connect(db_path, timeout=30) as conn:
        return dict(conn.execute("SELECT message_id, count(*) FROM telemetry_samples GROUP BY message_id").fetchall())


def test_acknowledged_only_after_the_child_commits_and_in_order(setup):
    store, db_path, metrics, ingest, service, device = setup
    link = FakeLink(ingest)
    topic = topics.telemetry(device)
    lock = sqlite3.connect(db_path, timeout=30, isolation_level=None)
    lock.execute("BEGIN IMMEDIATE")  # the child can receive and queue, not commit
    try:
        for _, payload in payloads(device, REPORTS):
            link.deliver(topic, payload)
        link.deliver(topic, b"\x00\xffnot an envelope")  # dropped in the child: acknowledged without a commit...
        wait_for(lambda: metrics.registry.get_sample_value("edgefleet_mqtt_messages_total", {"kind": "telemetry"}) == REPORTS, 30, "the child to queue every report")
        assert link.acked == []  # ...but only after the reports received before it
    finally:
        lock.rollback()
        lock.close()
    assert service.flush(30)
    wait_for(lambda: len(link.acked) == REPORTS + 1, 30, "every delivery acknowledged")
    assert link.acked == list(range(1, REPORTS + 2))
    # Committed together, acknowledged together: far fewer PUBACK writes than reports.
    assert len(link.batches) < REPORTS // 4, f"PUBACK batches: {link.batches}"
    assert sorted(rows_by_message(db_path).values()) == [1] * REPORTS
    assert metrics.registry.get_sample_value("edgefleet_telemetry_rows_written_total") == REPORTS
    assert metrics.registry.get_sample_value("edgefleet_mqtt_dropped_total", {"reason": "malformed"}) == 1


def test_a_killed_child_is_replaced_and_loses_nothing(setup):
    store, db_path, metrics, ingest, service, device = setup
    link = FakeLink(ingest)
    topic = topics.telemetry(device)
    sent = payloads(device, REPORTS)
    for _, payload in sent[: REPORTS // 2]:
        link.deliver(topic, payload)
    assert service.flush(30)  # the first half is stored and acknowledged
    wait_for(lambda: len(link.acked) == REPORTS // 2, 30, "the first half acknowledged")
    first_child = service.remote.pid

    lock = sqlite3.connect(db_path, timeout=30, isolation_level=None)
    lock.execute("BEGIN IMMEDIATE")
    try:
        for _, payload in sent[REPORTS // 2 :]:
            link.deliver(topic, payload)
        wait_for(lambda: metrics.registry.get_sample_value("edgefleet_mqtt_messages_total", {"kind": "telemetry"}) == REPORTS, 30, "the child to queue the second half")
        child = psutil.Process(first_child)
        os.kill(first_child, signal.SIGKILL)
        child.wait(10)
    finally:
        lock.rollback()
        lock.close()
    wait_for(lambda: len(link.acked) == REPORTS, 60, "the second half stored by the next child and acknowledged")
    assert service.remote.restarts == 1 and service.remote.pid != first_child
    assert link.acked == list(range(1, REPORTS + 1))
    stored = rows_by_message(db_path)
    assert len(stored) == REPORTS and set(stored.values()) == {1}
