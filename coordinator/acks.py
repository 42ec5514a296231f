"""Acknowledge a QoS 1 message only once it is handled or stored, in the order the messages arrived.

The link receives with paho's manual_ack: a PUBACK tells the broker it may forget the message, so one
sent before the message is committed loses it when the coordinator dies (kill -9, power loss) in between.
Every message the link receives gets a Delivery; the link completes it when the handler returns, unless
the handler took it over with `defer()` (the telemetry writer completes its reports after their
transaction commits). PUBACKs go out in arrival order, as MQTT requires: a completed message waits for
the ones received before it.

Completions come in batches (the telemetry process reports hundreds of reports final at once): complete_all()
marks them all and sends the PUBACKs they release in one call of the sender's `send_many`, which the link
turns into one write for paho's network thread instead of one queued packet, socketpair wake-up and
send() per message.

A reconnect forgets the pending deliveries of the old connection (their packet ids mean nothing on the
new one): the broker sends every unacknowledged message again, and the handlers are idempotent by
message id, so what was already stored is not stored twice.
"""
from __future__ import annotations

import threading
from collections import deque
from typing import Callable, Iterable


class Delivery:
    """One received message waiting for its PUBACK. Calling it completes it (it is what defer() returns)."""

    __slots__ = ("mid", "done", "deferred", "order")

    def __init__(self, mid: int, order: "AckOrder | None"):
        self.mid = mid
        self.done = False
        self.deferred = False
        self.order = order

    def complete(self) -> None:
        """Mark handled or stored; sends this PUBACK and any it was holding back. Safe from any thread, idempotent."""
        if self.order is not None:
            self.order.complete(self)

    __call__ = complete


class AckOrder:
    """Deliveries in arrival order; `send(mid)` is called for each completed one at the head, or
    `send_many(mids)` once for all that one complete_many() releases."""

    def __init__(self, send: Callable[[int], object], send_many: Callable[[list[int]], object] | None = None):
        self._send = send
        self._send_many = send_many
        self._pending: deque[Delivery] = deque()
        self._lock = threading.Lock()

    def arrived(self, mid: int) -> Delivery:
        """Called on paho's thread for every QoS 1 message, in arrival order."""
        d = Delivery(mid, self)
        self._pending.append(d)
        return d

    def complete(self, d: Delivery) -> None:
        if d.done:
            return
        d.done = True
        with self._lock:
            pending = self._pending
            while pending and pending[0].done:
                self._send(pending.popleft().mid)

    def complete_many(self, ds: Iterable[Delivery]) -> None:
        """complete() for many deliveries of this order, with one send_many() for the PUBACKs they release."""
        if self._send_many is None:
            for d in ds:
                self.complete(d)
            return
        for d in ds:
            d.done = True
        with self._lock:
            pending = self._pending
            mids = []
            while pending and pending[0].done:
                mids.append(pending.popleft().mid)
            if mids:
                self._send_many(mids)

    def reset(self) -> int:
        """Forget the deliveries of a connection that ended; returns how many were still unacknowledged."""
        with self._lock:
            old, self._pending = self._pending, deque()
        return len(old)

    def waiting(self) -> int:
        return len(self._pending)


def complete_all(callbacks: Iterable[Callable[[], object] | None]) -> None:
    """Call each completion callback (what defer() returned; None is skipped); deliveries of one AckOrder
    are completed together, so the PUBACKs they release go out in one batch. Every callback runs; the first
    exception of a callback that is not a Delivery is raised after all ran."""
    by_order: dict[int, tuple[AckOrder, list[Delivery]]] = {}
    others = []
    for cb in callbacks:
        if cb is None:
            continue
        if type(cb) is Delivery:
            if cb.order is not None and not cb.done:
                entry = by_order.get(id(cb.order))
                if entry is None:
                    entry = by_order[id(cb.order)] = (cb.order, [])
                entry[1].append(cb)
        else:
            others.append(cb)
    for order, ds in by_order.values():
        order.complete_many(ds)
    failed: Exception | None = None
    for cb in others:
        try:
            cb()
        except Exception as exc:  # noqa: BLE001 - the others still run; the first failure is raised below
            failed = failed or exc
    if failed is not None:
        raise failed


# The delivery the link's worker thread is handling right now (None outside a delivery).
_current = threading.local()


def defer() -> Callable[[], None] | None:
    """Take over the acknowledgement of the message being handled on this thread: the link will not send
    its PUBACK when the handler returns; call the returned function once the message is stored (or
    deliberately dropped). Returns None outside a link delivery (tests, direct calls): nothing to do then."""
    d = getattr(_current, "delivery", None)
    if d is None:
        return None
    d.deferred = True
    return d


def handling(d: Delivery | None) -> None:
    """The link marks the delivery its worker thread is about to handle (None when done)."""
    _current.delivery = d
