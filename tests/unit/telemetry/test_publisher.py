"""agent.publisher: records leave the outbox only once acknowledged, in order, paused while offline; the
dropped count and a corrupted outbox are reported. The broker test runs a real private mosquitto and
stops it in the middle of the stream."""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path
from typing import Callable

import pytest

from agent.outbox import Outbox
from agent.publisher import OutboxPublisher
from edgefleet import envelope, session, topics
from edgefleet.v1 import telemetry_pb2
from tests.mosquitto import MosquittoProcess, mosquitto_binary

DEVICE = "dev-1"


def wait_for(condition: Callable[[], bool], timeout: float = 20.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    pause = threading.Event()  # never set: its wait is the bounded pause between looks
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        pause.wait(0.01)


class Info:
    def __init__(self, mid: int, rc: int = 0) -> None:
        self.mid, self.rc = mid, rc


class FakeClient:
    """Takes publishes; the test decides when the broker acknowledges them."""

    def __init__(self, publisher_ref: list) -> None:
        self.sent: list[tuple[int, str, bytes]] = []
        self._mid = 0
        self._ref = publisher_ref
        self.ack_inside_publish = False
        self.lock = threading.Lock()

    def publish(self, topic: str, payload: bytes, qos: int) -> Info:
        with self.lock:
            self._mid += 1
            mid = self._mid
            self.sent.append((mid, topic, payload))
        if self.ack_inside_publish:  # PUBACK beats publish() returning: paho's network thread can do this
            self._ref[0].on_publish(None, None, mid, None, None)
        return Info(mid)

    def ack(self, mid: int) -> None:
        self._ref[0].on_publish(None, None, mid, None, None)


@pytest.fixture
def outbox(tmp_path: Path):
    box = Outbox.open(tmp_path / "outbox.db")
    yield box
    box.close()


@pytest.fixture
def fake(outbox: Outbox):
    ref: list = []
    client = FakeClient(ref)
    connected = threading.Event()
    connected.set()
    publisher = OutboxPublisher(outbox, client.publish, connected, DEVICE, window=10, poll_s=0.05)
    ref.append(publisher)
    publisher.start()
    yield publisher, client, connected
    publisher.stop()


def test_only_acknowledged_records_are_deleted(fake, outbox: Outbox) -> None:
    publisher, client, _ = fake
    ids = [publisher.put(f"t/{i}", b"x%d" % i) for i in range(5)]
    wait_for(lambda: len(client.sent) == 5, what="5 publishes")
    assert [topic for _, topic, _ in client.sent] == [f"t/{i}" for i in range(5)]
    client.ack(client.sent[1][0])
    client.ack(client.sent[3][0])
    wait_for(lambda: publisher.published == 2, what="2 acknowledgements")
    assert [r.id for r in outbox.peek(10)] == [ids[0], ids[2], ids[4]]
    for mid, _, _ in client.sent:
        client.ack(mid)
    assert publisher.flush(10)
    assert len(outbox) == 0 and publisher.published == 5
    assert len(client.sent) == 5  # nothing published twice


def test_window_limits_unacknowledged_records(fake, outbox: Outbox) -> None:
    publisher, client, _ = fake
    for i in range(25):
        publisher.put("t", b"%d" % i)
    wait_for(lambda: len(client.sent) == 10, what="a full window")
    assert publisher.inflight == 10
    for mid, _, _ in list(client.sent):
        client.ack(mid)
    wait_for(lambda: len(client.sent) == 20, what="the next window")
    assert [p for _, _, p in client.sent] == [b"%d" % i for i in range(20)]


class WatchedEvent(threading.Event):
    """The `connected` Event, noting each time the worker looks at it."""

    def __init__(self) -> None:
        super().__init__()
        self.looks = 0
        self.looked_thrice = threading.Event()

    def is_set(self) -> bool:
        self.looks += 1
        if self.looks >= 3:
            self.looked_thrice.set()
        return super().is_set()


def test_paused_while_disconnected(outbox: Outbox) -> None:
    ref: list = []
    client = FakeClient(ref)
    connected = WatchedEvent()
    publisher = OutboxPublisher(outbox, client.publish, connected, DEVICE, window=10, poll_s=0.01)
    ref.append(publisher)
    publisher.put("t", b"offline-1")
    publisher.put("t", b"offline-2")
    publisher.start()
    try:
        assert connected.looked_thrice.wait(10)  # the worker went round while offline ...
        assert client.sent == [] and len(outbox) == 2  # ... and published nothing
        connected.set()
        wait_for(lambda: len(client.sent) == 2, what="publishing after reconnect")
        assert [p for _, _, p in client.sent] == [b"offline-1", b"offline-2"]
    finally:
        publisher.stop()


def test_acknowledgement_before_publish_returns(fake, outbox: Outbox) -> None:
    publisher, client, _ = fake
    client.ack_inside_publish = True
    publisher.put("t", b"fast")
    assert publisher.flush(10)
    assert publisher.inflight == 0


def test_unrelated_acknowledgements_are_ignored(fake, outbox: Outbox) -> None:
    publisher, client, _ = fake
    publisher.on_publish(None, None, 999, None, None)  # e.g. the link's own status publish
    publisher.put("t", b"mine")
    wait_for(lambda: len(client.sent) == 1)
    assert len(outbox) == 1 and publisher.published == 0


def test_records_nobody_subscribed_to_are_kept_and_sent_again(outbox: Outbox, monkeypatch) -> None:
    """PUBACK "No matching subscribers" (mosquitto after a restart, before the coordinator is back): not delivery."""
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.reasoncodes import ReasonCode

    import agent.publisher as publisher_module

    monkeypatch.setattr(publisher_module, "UNHEARD_PAUSE_S", (0.05, 0.2))
    nobody = ReasonCode(PacketTypes.PUBACK, identifier=publisher_module.NO_MATCHING_SUBSCRIBERS)
    success = ReasonCode(PacketTypes.PUBACK, identifier=0)
    ref: list = []
    client = FakeClient(ref)
    connected = threading.Event()
    connected.set()
    publisher = OutboxPublisher(outbox, client.publish, connected, DEVICE, window=10, poll_s=0.01)
    ref.append(publisher)
    ids = [publisher.put("t", b"%d" % i) for i in range(3)]
    publisher.start()
    try:
        wait_for(lambda: len(client.sent) == 3, what="3 publishes")
        client.ack_inside_publish = False
        publisher.on_publish(None, None, client.sent[0][0], nobody, None)
        publisher.on_publish(None, None, client.sent[1][0], success, None)  # someone got this one
        publisher.on_publish(None, None, client.sent[2][0], nobody, None)
        # Sent again, from the oldest unheard record, after the pause; the delivered one is gone.
        wait_for(lambda: len(client.sent) == 5, what="the unheard records sent again")
        assert [p for _, _, p in client.sent[3:]] == [b"0", b"2"]
        assert [r.id for r in outbox.peek(10)] == [ids[0], ids[2]] and publisher.unheard == 2
        for mid, _, _ in client.sent[3:]:
            publisher.on_publish(None, None, mid, success, None)
        assert publisher.flush(10)
        assert publisher.published == 3 and len(client.sent) == 5
    finally:
        publisher.stop()


def test_pump_runs_one_round_for_a_caller_woken_through_on_wake(outbox: Outbox) -> None:
    """Without a thread (agent.simulate): every put and acknowledgement calls on_wake; pump() does the
    worker's round: settle, then send up to the window while connected and not stopped."""
    ref: list = []
    client = FakeClient(ref)
    connected = threading.Event()
    wakes: list[int] = []
    publisher = OutboxPublisher(outbox, client.publish, connected, DEVICE, window=3, on_wake=lambda: wakes.append(1))
    ref.append(publisher)
    with pytest.raises(RuntimeError, match="on_wake"):
        publisher.start()
    for i in range(4):
        publisher.put("t/x", bytes([i]))
    assert len(wakes) == 4
    assert publisher.pump() is False and client.sent == []  # not connected: nothing goes out
    connected.set()
    assert publisher.pump() is True  # a full window went out: more may wait
    assert [payload for _, _, payload in client.sent] == [b"\x00", b"\x01", b"\x02"]
    assert publisher.pump() is False  # the window is full
    client.ack(1)
    assert len(wakes) == 5
    assert len(outbox) == 4  # the worker deletes, not paho's callback
    assert publisher.pump() is True  # the one free slot taken by the last record
    assert publisher.pump() is False  # full again
    assert len(outbox) == 3 and publisher.published == 1
    assert [payload for _, _, payload in client.sent][-1] == b"\x03"
    client.ack(2)
    publisher.stop()
    assert len(wakes) >= 7  # the ack and stop() both asked for a round
    publisher.put("t/x", b"late")
    assert publisher.pump() is False
    assert len(client.sent) == 4  # stopped: nothing more is sent ...
    assert publisher.published == 2  # ... but what was acknowledged is still deleted
    assert len(outbox) == 3


def test_a_failing_on_wake_hook_does_not_escape(outbox: Outbox) -> None:
    def broken() -> None:
        raise RuntimeError("boom")

    connected = threading.Event()
    connected.set()
    publisher = OutboxPublisher(outbox, lambda *a: Info(1), connected, DEVICE, on_wake=broken)
    publisher.put("t/x", b"a")  # stored although the hook failed
    publisher.on_publish(None, None, 7, None, None)  # paho's thread: never raises
    assert len(outbox) == 1
    publisher.pump()
    assert len(outbox) == 1 and publisher.inflight == 1


def test_telemetry_carries_the_dropped_count_once(tmp_path: Path) -> None:
    box = Outbox.open(tmp_path / "small.db", max_records=3)
    connected = threading.Event()  # never connected: everything stays in the outbox
    publisher = OutboxPublisher(box, lambda *a: Info(1), connected, DEVICE)
    for i in range(5):
        publisher.put("t", b"%d" % i)  # two oldest dropped
    publisher.put_telemetry(telemetry_pb2.Telemetry(sequence=9))  # one more dropped: counted next time
    records = box.peek(10)
    env = envelope.decode(records[-1].payload, expect="telemetry")
    assert records[-1].topic == topics.telemetry(DEVICE)
    assert env.device_id == DEVICE and env.telemetry.sequence == 9 and env.telemetry.outbox_dropped == 2
    assert box.dropped == 1  # reported ones are not reported again; the drop its own put caused is pending
    publisher.put_telemetry(telemetry_pb2.Telemetry(sequence=10))
    assert envelope.decode(box.peek(10)[-1].payload).telemetry.outbox_dropped == 1
    box.close()


def test_corrupted_outbox_is_reported_as_an_event(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    path.write_bytes(b"this is not a database" * 100)
    box = Outbox.open(path)
    publisher = OutboxPublisher(box, lambda *a: Info(1), threading.Event(), DEVICE)
    assert publisher.report_recovery() is not None
    (record,) = box.peek(10)
    assert record.topic == topics.event(DEVICE)
    notice = envelope.decode(record.payload, expect="event").event.notice
    assert notice.code == "outbox_corrupt" and str(box.recovered_from) in notice.message
    box.close()
    clean = Outbox.open(tmp_path / "clean.db")
    assert OutboxPublisher(clean, lambda *a: Info(1), threading.Event(), DEVICE).report_recovery() is None
    clean.close()


# -- a real broker, stopped in the middle ---------------------------------------------------------

BROKER_CONF = """
allow_anonymous true
persistence true
persistence_location {dir}/
max_queued_messages 10000
"""


class Subscriber:
    """A persistent-session subscriber that records every telemetry message id in arrival order."""

    def __init__(self, broker: MosquittoProcess) -> None:
        self.ids: list[str] = []
        self.ready = threading.Event()
        self.client = session.make_client("sub-" + uuid.uuid4().hex[:8], "5")
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda *a: self.ready.set()
        self.client.on_message = self._on_message
        session.connect_async(self.client, session.BrokerAddress(broker.host, broker.port, False), keepalive=5, session_expiry_s=600)
        self.client.loop_start()

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        client.subscribe(topics.telemetry(DEVICE), qos=1)

    def _on_message(self, client, userdata, msg) -> None:
        self.ids.append(envelope.decode(msg.payload).message_id)

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.mark.skipif(mosquitto_binary() is None, reason="mosquitto is not installed")
def test_every_record_arrives_once_in_order_across_a_broker_restart(tmp_path: Path) -> None:
    broker = MosquittoProcess(BROKER_CONF, tmp_path / "broker").start()
    box = Outbox.open(tmp_path / "outbox.db")
    connected = threading.Event()
    agent = session.make_client(DEVICE, "5")

    def on_connect(client, userdata, flags, reason_code, properties) -> None:
        if not session.reason_failed(reason_code):
            connected.set()

    agent.on_connect = on_connect
    agent.on_disconnect = lambda *a: connected.clear()
    publisher = OutboxPublisher.for_client(box, agent, connected, DEVICE)
    subscriber = Subscriber(broker)
    try:
        assert subscriber.ready.wait(20), "the subscriber never got its SUBACK"
        session.connect_async(agent, session.BrokerAddress(broker.host, broker.port, False), keepalive=5, session_expiry_s=600)
        agent.loop_start()
        publisher.start()
        sent: list[str] = []
        done_producing = threading.Event()
        pace = threading.Event()  # never set: paces the producer like a telemetry source

        def produce() -> None:
            for i in range(600):
                message_id = envelope.new_message_id()
                payload = envelope.encode(DEVICE, message_id=message_id, telemetry=telemetry_pb2.Telemetry(sequence=i + 1))
                publisher.put(topics.telemetry(DEVICE), payload)
                sent.append(message_id)
                pace.wait(0.002)
            done_producing.set()

        producer = threading.Thread(target=produce)
        producer.start()
        wait_for(lambda: publisher.published >= 50, what="the first acknowledgements")
        broker.stop()  # in the middle of the stream
        wait_for(lambda: not connected.is_set(), what="the agent to notice")
        at_stop = len(sent)
        wait_for(lambda: len(sent) >= at_stop + 50, what="records produced while the broker is down")
        assert len(box) >= 50  # kept on disk meanwhile
        broker.start()
        assert done_producing.wait(60)
        producer.join(10)
        assert publisher.flush(60), f"{len(box)} records still in the outbox"
        wait_for(lambda: set(subscriber.ids) >= set(sent), timeout=30, what="every record at the subscriber")
        first_seen = list(dict.fromkeys(subscriber.ids))  # de-duplicated by message id, as the coordinator does
        assert first_seen == sent  # every record, exactly once after de-duplication, in order
        assert len(box) == 0
    finally:
        publisher.stop()
        subscriber.stop()
        agent.disconnect()
        agent.loop_stop()
        box.close()
        broker.stop()
