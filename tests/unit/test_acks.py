"""PUBACK order (coordinator/acks.py) and the thread hand-over the link uses (coordinator/handoff.py)."""
from __future__ import annotations

import threading

from coordinator import acks
from coordinator.config import MqttConfig
from coordinator.handoff import Handoff
from coordinator.link import CoordinatorLink


def test_pubacks_go_in_arrival_order_whenever_messages_complete():
    sent: list[int] = []
    order = acks.AckOrder(sent.append)
    d1, d2, d3 = order.arrived(11), order.arrived(12), order.arrived(13)
    d3.complete()
    d2.complete()
    assert sent == []  # 11 is not handled yet: 12 and 13 wait behind it
    d1.complete()
    assert sent == [11, 12, 13]
    d1.complete()  # idempotent
    assert sent == [11, 12, 13] and order.waiting() == 0


def test_a_new_connection_forgets_the_old_ones_deliveries():
    sent: list[int] = []
    order = acks.AckOrder(sent.append)
    old = order.arrived(1)
    assert order.reset() == 1
    new = order.arrived(1)  # packet ids start again on the new connection
    old.complete()
    assert sent == []  # the old delivery's PUBACK would acknowledge the new message 1
    new.complete()
    assert sent == [1]


def test_a_handler_defers_its_ack_only_inside_a_delivery():
    assert acks.defer() is None  # a direct call (tests, no link): nothing to acknowledge
    sent: list[int] = []
    order = acks.AckOrder(sent.append)
    d = order.arrived(5)
    acks.handling(d)
    try:
        done = acks.defer()
    finally:
        acks.handling(None)
    assert d.deferred and sent == []
    done()
    assert sent == [5]


def test_completions_together_release_their_pubacks_in_one_batch_and_in_order():
    sent: list[int] = []
    batches: list[list[int]] = []
    order = acks.AckOrder(sent.append, batches.append)
    ds = [order.arrived(mid) for mid in (7, 8, 9, 10)]
    acks.complete_all([ds[2], ds[1], None])
    assert batches == [] and sent == []  # 7 is not done: 8 and 9 wait behind it
    acks.complete_all([ds[0], ds[3]])
    assert batches == [[7, 8, 9, 10]] and sent == []
    acks.complete_all(ds)  # done already: nothing goes out twice
    assert batches == [[7, 8, 9, 10]] and order.waiting() == 0


def test_complete_all_runs_every_callback_and_raises_the_first_failure():
    sent: list[int] = []
    order = acks.AckOrder(sent.append)  # no batch sender: one send per PUBACK, in order
    d1, d2 = order.arrived(1), order.arrived(2)
    called: list[str] = []

    def boom():
        called.append("boom")
        raise RuntimeError("broken callback")

    try:
        acks.complete_all([boom, d2, lambda: called.append("after"), d1])
    except RuntimeError as exc:
        assert "broken callback" in str(exc)
    else:
        raise AssertionError("the callback's failure was swallowed")
    assert sent == [1, 2] and called == ["boom", "after"]


def test_deliveries_of_two_connections_are_completed_by_their_own_order():
    old_sent: list[list[int]] = []
    new_sent: list[list[int]] = []
    old, new = acks.AckOrder(lambda m: old_sent.append([m]), old_sent.append), acks.AckOrder(lambda m: new_sent.append([m]), new_sent.append)
    a, b = old.arrived(1), new.arrived(1)
    acks.complete_all([a, b])
    assert old_sent == [[1]] and new_sent == [[1]]


def test_handoff_delivers_everything_in_order_across_threads():
    h = Handoff()
    got: list[int] = []
    n = 20_000

    def consume():
        while len(got) < n:
            if not h.items:
                h.wait()
                continue
            got.append(h.items.popleft())

    t = threading.Thread(target=consume)
    t.start()
    for i in range(n):
        h.put(i)
    t.join(10)
    assert not t.is_alive(), "the consumer missed a wake-up"
    assert got == list(range(n))


def test_the_link_writes_released_pubacks_as_one_packet_and_falls_back_to_ack():
    link = CoordinatorLink(MqttConfig(url="mqtt://127.0.0.1:1"), lambda topic, payload: None)  # never started
    queued: list[tuple[int, bytes]] = []
    link.client._packet_queue = lambda command, packet, mid, qos, info=None: queued.append((command, bytes(packet)))
    link._send_acks([1, 2, 300])
    assert queued == [(0x40, bytes([0x40, 2, 0, 1, 0x40, 2, 0, 2, 0x40, 2, 1, 44]))]  # three PUBACKs, one write

    acked: list[int] = []
    link.client.ack = lambda mid, qos: acked.append(mid)
    link.client.manual_ack_set(False)  # paho acknowledges by itself: the link's acks must add nothing
    link._send_acks([4, 5])
    assert acked == [4, 5] and len(queued) == 1  # through ack(), which sends nothing without manual acks
