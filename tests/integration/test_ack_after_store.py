"""A coordinator killed (-9) between receiving telemetry and committing it loses nothing.

The coordinator acknowledges a QoS 1 report to the broker only after the telemetry writer has committed it
(coordinator/acks.py). The test holds SQLite's write lock so that the coordinator receives every report but
cannot commit any, kills it, lets the store go, and starts it again on the same data directory and MQTT
session: the broker (a private mosquitto with persistence) sends the unacknowledged reports again, and the
store ends with each of them exactly once. Acknowledging on receipt (paho's default) fails this test: the
broker forgets the reports as soon as the first coordinator has them.
"""
from __future__ import annotations

import os
import signal
import sqlite3
import threading
from datetime import datetime, timedelta, timezone

import paho.mqtt.client as mqtt
import psutil
import pytest

from coordinator import acks
from coordinator.config import MqttConfig
from coordinator.link import CoordinatorLink
from edgefleet import envelope, topics
from tests.fleet import CoordinatorProcess, register, wait_for
from tests.integration.test_telemetry_ingest import enroll, report, scrape
from tests.mosquitto import MosquittoProcess

# max_inflight_messages: the window of an MQTT 3.1.1 session (MQTT 5 asks for its own), as deploy/ ships it.
BROKER_CONF = "allow_anonymous true\npersistence true\npersistence_location {dir}/\nmax_queued_messages 10000\nmax_inflight_messages 10000\n"
REPORTS = 40


@pytest.fixture
def broker(tmp_path):
    (tmp_path / "broker").mkdir()
    b = MosquittoProcess(BROKER_CONF, tmp_path / "broker")
    b.start()
    yield b
    b.stop()


def stored(db_path) -> list[tuple[str, int]]:
    """(message id, rows) for every stored report."""
    with sqlite3.connect(db_path, timeout=30) as conn:
        return conn.execute("SELECT message_id, count(*) FROM telemetry_samples GROUP BY message_id").fetchall()


def test_reports_received_but_not_committed_survive_kill_9(tmp_path, broker):
    data_dir = tmp_path / "coord"
    env = {"EDGEFLEET_TELEMETRY__FLUSH_INTERVAL_S": "0.05"}
    coord = CoordinatorProcess(data_dir, f"mqtt://127.0.0.1:{broker.port}", extra_env=env).start()
    lock = None
    try:
        coord.process.wait_line(lambda line: "connected to broker" in line, 30)
        reg = register(coord, "cam-kill9")
        device_id = reg["device"]["id"]
        identity = enroll(coord, reg["enrollment_token"])
        db_path = data_dir / "edgefleet.db"

        # Hold the store's write lock: the coordinator can receive and queue reports but not commit them.
        lock = sqlite3.connect(db_path, timeout=30, isolation_level=None)
        lock.execute("BEGIN IMMEDIATE")

        client = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2, client_id=identity.mqtt.client_id, protocol=mqtt.MQTTv5)
        client.username_pw_set(identity.mqtt.username, identity.mqtt.password)
        connected = threading.Event()
        client.on_connect = lambda *a: connected.set()
        client.connect("127.0.0.1", broker.port)
        client.loop_start()
        assert connected.wait(10), "the device client could not connect"
        now = datetime.now(timezone.utc)
        ids = []
        try:
            for i in range(REPORTS):
                payload = envelope.encode(device_id, telemetry=report(now - timedelta(seconds=10 * (REPORTS - i)), i))
                ids.append(envelope.decode(payload).message_id)
                client.publish(topics.telemetry(device_id), payload, qos=1).wait_for_publish(10)
        finally:
            client.loop_stop()
            client.disconnect()

        # Every report reached the coordinator and was queued for the writer; none is committed.
        wait_for(lambda: scrape(coord).get('edgefleet_mqtt_messages_total{kind="telemetry"}') == REPORTS, 30, f"the coordinator to ingest {REPORTS} reports")
        assert scrape(coord).get("edgefleet_telemetry_rows_written_total") == 0
        assert lock.execute("SELECT count(*) FROM telemetry_samples").fetchone() == (0,)

        # The whole process group, as a crash or an OOM kill of the service would: the coordinator and its
        # telemetry process (which holds the queued reports) die without a word to the broker.
        children = psutil.Process(coord.process.proc.pid).children(recursive=True)
        os.killpg(coord.process.proc.pid, signal.SIGKILL)
        coord.process.proc.wait(10)
        psutil.wait_procs(children, timeout=10)
        lock.rollback()
        lock.close()
        lock = None
        assert stored(db_path) == []

        # The same data directory and client id: the broker resends what the dead coordinator never acknowledged.
        coord = CoordinatorProcess(data_dir, f"mqtt://127.0.0.1:{broker.port}", extra_env=env).start()
        rows = wait_for(lambda: (r := stored(db_path)) and len(r) >= REPORTS and r, 60, f"{REPORTS} reports stored after the restart")
        assert sorted(mid for mid, _ in rows) == sorted(ids)
        assert all(n == 1 for _, n in rows), "a report stored more than once"
    finally:
        if lock is not None:
            lock.close()
        coord.stop()


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_pubacks_sent_in_one_batch_are_taken_by_the_broker(tmp_path, broker, protocol):
    """Completions that release many PUBACKs at once (the telemetry process reports hundreds of reports
    final together) go out as one write (CoordinatorLink._send_acks). The broker must take each of them: a
    coordinator that comes back on the same session gets again exactly what it did not acknowledge."""
    n = 40
    cfg = MqttConfig(url=f"mqtt://127.0.0.1:{broker.port}", protocol=protocol, client_id=f"coord-batch-{protocol}")
    device_topic = topics.telemetry("dev-batch")

    def start_link():
        got: list[bytes] = []
        held: list = []
        seen = threading.Condition()

        def take(topic, payload):
            with seen:
                got.append(payload)
                held.append(acks.defer())  # acknowledged when the test says so, as the telemetry writer does
                seen.notify_all()
            return True

        link = CoordinatorLink(cfg, lambda topic, payload: None, take=take)
        subscribed = threading.Event()
        link.client.on_subscribe = lambda *a: subscribed.set()
        batches: list[list[int]] = []
        send_many = link.acks._send_many
        link.acks._send_many = lambda mids: (batches.append(list(mids)), send_many(mids))
        link.start()
        assert subscribed.wait(10), "the link did not subscribe"
        return link, got, held, seen, batches

    publisher = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2, client_id=f"dev-batch-{protocol}")
    publisher.connect("127.0.0.1", broker.port)
    publisher.loop_start()
    link = None
    try:
        link, got, held, seen, batches = start_link()
        for i in range(n):
            publisher.publish(device_topic, f"m{i}".encode(), qos=1).wait_for_publish(10)
        with seen:
            assert seen.wait_for(lambda: len(got) == n, 30), f"{len(got)} of {n} messages arrived"
        acks.complete_all(held[: n // 2])  # the first half "stored": their PUBACKs in one write
        assert len(batches) == 1 and len(batches[0]) == n // 2, f"PUBACK batches sent: {[len(b) for b in batches]}"
        link.stop()  # the DISCONNECT is written after the PUBACKs queued before it

        link, got, held, seen, _ = start_link()
        # What the broker resends (unacknowledged) comes right after CONNACK, before this SUBACK and the marker.
        publisher.publish(device_topic, b"marker", qos=1).wait_for_publish(10)
        with seen:
            assert seen.wait_for(lambda: b"marker" in got, 30), "the marker did not arrive"
        assert sorted(got) == sorted([f"m{i}".encode() for i in range(n // 2, n)] + [b"marker"])
        acks.complete_all(held)
    finally:
        publisher.loop_stop()
        publisher.disconnect()
        if link is not None:
            link.stop()
