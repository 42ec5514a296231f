"""Acknowledge a QoS 1 message only once it is handled or stored, in the order the messages arrived.

The link receives with paho's manual_ack: a PUBACK tells the broker it may forget the message, so one
sent before the message is committed loses it when the coordinator dies (kill -9, power loss) in between.
Every message the link receives gets a Delivery; the link completes it when the handler returns, unless
the handler took it over with `defer()` (the telemetry writer completes its reports after their
transaction commits). PUBACKs go out in arrival order, as MQTT requires: a completed message waits for
the ones received before it.

A reconnect forgets the pending deliveries of the old connection (their packet ids mean nothing on the
new one): the broker sends every unacknowledged message again, and the handlers are idempotent by
message id, so what was already stored is not stored twice.
"""
from __future__ import annotations

import threading
from collections import deque
from typing import Callable


class Delivery:
    """One received message waiting for its PUBACK."""

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


class AckOrder:
    """Deliveries in arrival order; `send(mid)` is called for each completed one at the head."""

    def __init__(self, send: Callable[[int], object]):
        self._send = send
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

    def reset(self) -> int:
        """Forget the deliveries of a connection that ended; returns how many were still unacknowledged."""
        with self._lock:
            old, self._pending = self._pending, deque()
        return len(old)

    def waiting(self) -> int:
        return len(self._pending)


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
    return d.complete


def handling(d: Delivery | None) -> None:
    """The link marks the delivery its worker thread is about to handle (None when done)."""
    _current.delivery = d
