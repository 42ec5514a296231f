"""PUBACK order (coordinator/acks.py) and the thread hand-over the link uses (coordinator/handoff.py)."""
from __future__ import annotations

import threading

from coordinator import acks
from coordinator.handoff import Handoff


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
