"""What the protocol needs from the demo's embedded broker (amqtt, MQTT 3.1.1), checked with real paho
clients against `python -m coordinator.embedded_broker`: persistent sessions with QoS 1 queued for an
offline client, retained status, a retained last will, wildcards, transfer-sized payloads, and retained
messages only for a client's own subscriptions."""
from __future__ import annotations

import queue
import signal
import socket
import sys
import time

import paho.mqtt.client as mqtt
import pytest

from coordinator.embedded_broker import READY, STOPPED
from coordinator.transfer.manifests import MAX_CHUNK_SIZE
from edgefleet import session, topics
from tests.fleet import Process, base_env

TIMEOUT = 10.0


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("amqtt")
    proc = Process([sys.executable, "-m", "coordinator.embedded_broker"], base_env(), tmp / "broker.log")
    try:
        line = proc.wait_line(lambda l: l.startswith(READY), 30)
        yield session.parse_broker_url(line.split("url=", 1)[1])
    finally:
        proc.stop()


class Client:
    """A paho MQTT 3.1.1 client as both sides make it (edgefleet.session), collecting what it receives."""

    def __init__(self, address, client_id: str, *, will: tuple[str, bytes] | None = None, loop: bool = True, manual_ack: bool = False):
        self.messages: queue.Queue = queue.Queue()
        self.connected: queue.Queue = queue.Queue()
        self.client = session.make_client(client_id, "3.1.1")
        self.client.manual_ack_set(manual_ack)  # as the coordinator: PUBACK only once the message is stored
        self.mids: list[tuple[int, bool]] = []
        self.client.on_message = lambda c, u, m: (self.mids.append((m.mid, m.dup)), self.messages.put((m.topic, bytes(m.payload), m.retain)))
        self.client.on_connect = lambda c, u, flags, rc, p: self.connected.put((rc, flags.session_present))
        if will:
            self.client.will_set(will[0], will[1], qos=1, retain=True)
        self.client.connect(address.host, address.port, keepalive=30)
        if loop:
            self.client.loop_start()
            rc, self.session_present = self.connected.get(timeout=TIMEOUT)
            assert not session.reason_failed(rc), rc

    def subscribe(self, topic_filter: str, qos: int = 1) -> None:
        granted: queue.Queue = queue.Queue()
        self.client.on_subscribe = lambda c, u, mid, codes, p: granted.put(codes)
        self.client.subscribe(topic_filter, qos)
        codes = granted.get(timeout=TIMEOUT)
        assert not any(session.reason_failed(c) for c in codes), (topic_filter, codes)

    def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> None:
        self.client.publish(topic, payload, qos=1, retain=retain).wait_for_publish(TIMEOUT)

    def next(self, timeout: float = TIMEOUT) -> tuple[str, bytes, bool]:
        return self.messages.get(timeout=timeout)

    def nothing_within(self, seconds: float) -> list:
        # Absence can only be shown by waiting: a bounded wait for a message that must not come.
        try:
            return [self.messages.get(timeout=seconds)]
        except queue.Empty:
            return []

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def test_a_persistent_session_gets_the_qos1_messages_sent_while_it_was_offline(broker):
    coordinator = Client(broker, "coord-persist")
    coordinator.subscribe(topics.all_devices(topics.EVENT))
    coordinator.close()
    device = Client(broker, "dev-persist")
    sent = [f"event {i}".encode() for i in range(5)]
    for payload in sent:
        device.publish(topics.event("dev-persist"), payload)
    device.close()
    back = Client(broker, "coord-persist")
    assert back.session_present
    got = [back.next() for _ in sent]
    assert [(t, p) for t, p, _ in got] == [(topics.event("dev-persist"), p) for p in sent]
    back.close()


def test_an_unacknowledged_qos1_message_is_kept_past_5_s_and_sent_again_after_a_reconnect(broker):
    coordinator = Client(broker, "coord-ack", manual_ack=True)
    coordinator.subscribe(topics.all_devices(topics.EVENT))
    device = Client(broker, "dev-ack")
    device.publish(topics.event("dev-ack"), b"stored slowly")
    assert coordinator.next()[:2] == (topics.event("dev-ack"), b"stored slowly")
    # amqtt alone drops a message whose PUBACK is 5 s late: hold it past that (the wait is the point here).
    assert coordinator.nothing_within(6.0) == []
    coordinator.close()  # still unacknowledged
    back = Client(broker, "coord-ack", manual_ack=True)
    assert back.next()[:2] == (topics.event("dev-ack"), b"stored slowly")
    assert back.mids[-1][1], "a resent message carries DUP"
    back.client.ack(back.mids[-1][0], 1)
    device.publish(topics.event("dev-ack"), b"next")
    assert back.next()[:2] == (topics.event("dev-ack"), b"next")
    back.client.ack(back.mids[-1][0], 1)
    back.close()
    again = Client(broker, "coord-ack", manual_ack=True)
    assert again.nothing_within(1.0) == []  # both acknowledged: nothing comes back
    again.close()
    device.close()


def test_retained_status_reaches_a_later_subscriber_and_an_empty_payload_clears_it(broker):
    device = Client(broker, "dev-retain")
    device.publish(topics.status("dev-retain"), b"online", retain=True)
    later = Client(broker, "coord-retain")
    later.subscribe(topics.status("dev-retain"))
    assert later.next() == (topics.status("dev-retain"), b"online", True)
    device.publish(topics.status("dev-retain"), b"", retain=True)
    assert later.next()[:2] == (topics.status("dev-retain"), b"")
    later.close()
    fresh = Client(broker, "coord-retain-2")
    fresh.subscribe(topics.status("dev-retain"))
    assert fresh.nothing_within(1.0) == []
    fresh.close()
    device.close()


def test_the_retained_last_will_is_published_when_a_device_vanishes(broker):
    watcher = Client(broker, "coord-will")
    watcher.subscribe(topics.all_devices(topics.STATUS))
    device = Client(broker, "dev-will", will=(topics.status("dev-will"), b"offline"), loop=False)
    while device.connected.empty():
        device.client.loop(timeout=0.2)
    # Gone without a DISCONNECT, as a device losing power.
    device.client.socket().shutdown(socket.SHUT_RDWR)
    device.client.socket().close()
    assert watcher.next() == (topics.status("dev-will"), b"offline", False)
    later = Client(broker, "coord-will-later")
    later.subscribe(topics.status("dev-will"))
    assert later.next() == (topics.status("dev-will"), b"offline", True)
    later.close()
    watcher.close()


def test_wildcards_match_as_the_protocol_uses_them(broker):
    sub = Client(broker, "coord-wild")
    sub.subscribe(topics.all_devices(topics.TELEMETRY))
    sub.subscribe("ef/v1/dev/dev-w2/#")
    pub = Client(broker, "dev-wild")
    pub.publish(topics.telemetry("dev-w1"), b"a")
    pub.publish(topics.hello("dev-w1"), b"not subscribed")
    pub.publish(topics.blob_req("dev-w2"), b"b")
    got = {sub.next()[:2] for _ in range(2)}
    assert got == {(topics.telemetry("dev-w1"), b"a"), (topics.blob_req("dev-w2"), b"b")}
    assert sub.nothing_within(0.5) == []
    sub.close()
    pub.close()


def test_a_chunk_of_the_largest_transfer_size_arrives_intact(broker):
    sub = Client(broker, "dev-big")
    sub.subscribe(topics.blob("dev-big"))
    payload = bytes(range(256)) * ((MAX_CHUNK_SIZE + 4096) // 256)  # the largest chunk plus envelope room
    pub = Client(broker, "coord-big")
    pub.publish(topics.blob("dev-big"), payload)
    topic, got, _ = sub.next(30)
    assert topic == topics.blob("dev-big") and got == payload
    sub.close()
    pub.close()


def test_a_connecting_client_gets_retained_messages_only_for_its_own_subscriptions(broker):
    coordinator = Client(broker, "coord-own")
    coordinator.subscribe(topics.all_devices(topics.HELLO))
    other = Client(broker, "dev-own-1")
    other.publish(topics.hello("dev-own-1"), b"hello 1", retain=True)
    assert coordinator.next()[:2] == (topics.hello("dev-own-1"), b"hello 1")
    # amqtt 0.12.1 alone would send this device every retained message matching the coordinator's filter.
    device = Client(broker, "dev-own-2")
    device.subscribe(topics.cmd("dev-own-2"))
    assert device.nothing_within(1.0) == []
    other.publish(topics.hello("dev-own-1"), b"", retain=True)
    for c in (device, other, coordinator):
        c.close()


def test_mqtt5_is_refused_so_the_demo_must_run_3_1_1(broker):
    results: queue.Queue = queue.Queue()
    client = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2, client_id="v5", protocol=mqtt.MQTTv5)
    client.on_connect = lambda c, u, f, rc, p: results.put(("connack", rc))
    client.on_disconnect = lambda c, u, f, rc, p: results.put(("disconnected", rc))
    client.connect(broker.host, broker.port, keepalive=10)
    client.loop_start()
    try:
        kind, rc = results.get(timeout=TIMEOUT)
    finally:
        client.disconnect()
        client.loop_stop()
    assert kind == "disconnected" or session.reason_failed(rc), f"MQTT 5 CONNECT accepted: {rc}"


def test_sigterm_stops_it_cleanly(tmp_path):
    proc = Process([sys.executable, "-m", "coordinator.embedded_broker"], base_env(), tmp_path / "broker.log")
    try:
        line = proc.wait_line(lambda l: l.startswith(READY), 30)
        address = session.parse_broker_url(line.split("url=", 1)[1])
        with socket.create_connection((address.host, address.port), timeout=5):
            pass
        proc.signal(signal.SIGTERM)
        assert proc.proc.wait(15) == 0
        proc.wait_line(lambda l: l == STOPPED, 5)
    finally:
        proc.stop()


def test_a_device_that_goes_silent_without_closing_its_socket_gets_its_will_after_its_keepalive(broker):
    watcher = Client(broker, "coord-silent")
    watcher.subscribe(topics.status("dev-silent"))
    device = session.make_client("dev-silent", "3.1.1")
    device.will_set(topics.status("dev-silent"), b"offline", qos=1, retain=True)
    connected = queue.Queue()
    device.on_connect = lambda *a: connected.put(True)
    device.connect(broker.host, broker.port, keepalive=2)
    while connected.empty():
        device.loop(timeout=0.2)
    # From here on the device sends nothing, not even PINGREQ, and its socket stays open (a cut cable).
    started = time.monotonic()
    assert watcher.next(timeout=8) == (topics.status("dev-silent"), b"offline", False)
    assert time.monotonic() - started < 1.5 * 2 + 1.5, "the broker must give up on it at 1.5x its keepalive"
    device.socket().close()
    watcher.close()
