"""Drain the outbox to MQTT in order: QoS 1, deleted only after the broker acknowledged it.

Everything the agent must not lose goes through here: telemetry and events (`put`, `put_telemetry`,
`put_event`). A record is first written to the SQLite outbox (agent.outbox), then a worker publishes
records oldest first while the link is connected, keeping up to `window` unacknowledged. paho calls
`on_publish(mid)` when the broker's PUBACK arrives; only then is the record deleted from the outbox.

While disconnected the worker publishes nothing and records accumulate in the outbox (bounded there:
oldest dropped first, counted; the count goes out in the next Telemetry as `outbox_dropped`). Records
already handed to paho stay in paho's session and paho re-sends them, in order, on reconnect; their
acknowledgements then delete them. Records the agent had not handed over yet are published after
those, so the broker sees every record in outbox order. If the agent dies, everything not acknowledged
is still in the outbox and is published again after restart: the coordinator drops the duplicates by
envelope message id (QoS 1 is at least once).

A PUBACK is not always delivery: an MQTT 5 broker answers "No matching subscribers" (reason 16) when no
coordinator subscription took the record. mosquitto 2.0 does so for everything published after its
restart until the coordinators reconnect (their restored shared subscriptions receive nothing; measured
in tests/integration/test_agent_faults.py). Such a record is kept: once the answers for the window are
in, the worker goes back to the oldest unheard record and sends again from there, after a pause that
doubles from 1 s to 30 s while nobody listens. (MQTT 3.1.1 has no reason codes: there the broker's ack
is taken as delivery.)

paho calls `on_publish` on its network thread with its own locks held: it only notes the id and wakes
the worker; the outbox is written by the worker.

The worker is a thread of the publisher's own (`start()`), or whoever the `on_wake` hook tells: the
fleet simulator (agent.simulate.publisher) runs `pump()` on a shared thread each time it is woken.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from typing import Any, Callable

from agent.outbox import Outbox
from edgefleet import envelope, topics
from edgefleet.v1 import events_pb2, telemetry_pb2

log = logging.getLogger(__name__)

DEFAULT_WINDOW = 100  # paho's max_inflight (edgefleet.session): more would only queue inside paho
NO_MATCHING_SUBSCRIBERS = 16  # MQTT 5 PUBACK reason code: the broker took the record and nobody got it
UNHEARD_PAUSE_S = (1.0, 30.0)  # first and longest pause before sending unheard records again
IDLE_POLL_S = 5.0  # the worker's longest sleep while the outbox is empty (put() wakes it at once)
# paho 2 return codes that mean "paho holds the message and will send it": success, not connected.
_HELD_RCS = (0, 4)

Publish = Callable[[str, bytes, int], Any]  # (topic, payload, qos) -> paho MQTTMessageInfo (has .mid, .rc)


class OutboxPublisher:
    def __init__(
        self,
        outbox: Outbox,
        publish: Publish,
        connected: threading.Event,
        device_id: str,
        *,
        window: int = DEFAULT_WINDOW,
        poll_s: float = 0.5,
        clock: Callable[[], float] = time.time,
        on_wake: Callable[[], None] | None = None,
    ) -> None:
        """`publish(topic, payload, qos)` is paho's client.publish (or a fake); hook `on_publish` to the
        client's on_publish (OutboxPublisher.for_client does both). `connected` is set while the MQTT
        session is up (AgentLink.connected).

        `on_wake()`, for a caller that runs the rounds itself instead of start(): called whenever there
        is work for `pump()` (a record stored, an acknowledgement, wake(), stop()), possibly on paho's
        network thread, so it must only schedule the round, never block or raise."""
        if window < 1:
            raise ValueError(f"window must be at least 1, got {window}")
        self.outbox = outbox
        self.device_id = device_id
        self._publish = publish
        self._connected = connected
        self.window = window
        self._poll_s = poll_s
        self._clock = clock
        self._lock = threading.Lock()
        self._inflight: dict[int, int] = {}          # paho mid -> outbox record id
        self._acked: collections.deque[int] = collections.deque()  # record ids acknowledged, to delete
        self._early: set[int] = set()                # mids acknowledged while publish() had not returned yet
        self._sent_up_to = 0                         # highest record id handed to paho
        self._unheard: set[int] = set()              # record ids acknowledged with "no matching subscribers"
        self._early_unheard: set[int] = set()        # those of _early among them
        self._hold_until = 0.0                       # monotonic time before which nothing is sent (unheard records)
        self._pause_s = UNHEARD_PAUSE_S[0]
        self.unheard = 0                             # records the broker delivered to nobody, since start (resent)
        self._wake = threading.Event()
        self._on_wake = on_wake
        self._stop = threading.Event()
        self._progress = threading.Event()
        self._thread: threading.Thread | None = None
        self.published = 0                           # records acknowledged and deleted, since start

    @classmethod
    def for_client(cls, outbox: Outbox, client: Any, connected: threading.Event, device_id: str, **kw: Any) -> OutboxPublisher:
        """A publisher on a paho client: publishes with client.publish and takes over client.on_publish."""
        publisher = cls(outbox, lambda topic, payload, qos: client.publish(topic, payload, qos=qos), connected, device_id, **kw)
        client.on_publish = publisher.on_publish
        return publisher

    # -- producers ----------------------------------------------------------------------------

    def put(self, topic: str, payload: bytes, qos: int = 1) -> int:
        """Store a record durably (it survives a crash from here on) and have it published."""
        record_id = self.outbox.put(topic, payload, qos)
        self.wake()
        return record_id

    def put_telemetry(self, message: telemetry_pb2.Telemetry) -> int:
        """Telemetry with the outbox's dropped count (read and reset here, so it is reported once)."""
        message.outbox_dropped += self.outbox.take_dropped()
        return self.put(topics.telemetry(self.device_id), envelope.encode(self.device_id, telemetry=message))

    def put_event(self, event: events_pb2.Event) -> int:
        return self.put(topics.event(self.device_id), envelope.encode(self.device_id, event=event))

    def report_recovery(self) -> int | None:
        """At start: an Event notice when the outbox file was corrupted and moved aside."""
        if self.outbox.recovered_from is None:
            return None
        text = (f"the outbox {self.outbox.path} could not be read ({self.outbox.recovery_reason}); it was moved to "
                f"{self.outbox.recovered_from} and a fresh one was created: records not yet sent are lost")
        log.error(text)
        return self.put_event(events_pb2.Event(notice=events_pb2.AgentNotice(code="outbox_corrupt", message=text)))

    # -- paho callback (network thread): note and wake, never raise ---------------------------

    def on_publish(self, client: Any = None, userdata: Any = None, mid: int = 0, reason_code: Any = None, properties: Any = None) -> None:
        try:
            unheard = getattr(reason_code, "value", None) == NO_MATCHING_SUBSCRIBERS
            with self._lock:
                record_id = self._inflight.pop(mid, None)
                if record_id is None:
                    self._early.add(mid)
                    if unheard:
                        self._early_unheard.add(mid)
                elif unheard:
                    self._unheard.add(record_id)
                else:
                    self._acked.append(record_id)
            if reason_code is not None and getattr(reason_code, "is_failure", False):
                log.warning("broker refused record %s: %s (deleted: it would be refused again)", record_id, reason_code)
            self.wake()
        except Exception:  # noqa: BLE001 - paho's thread must survive
            pass

    # -- the worker ---------------------------------------------------------------------------

    def start(self) -> None:
        """Run the rounds on a thread of the publisher's own (not with an `on_wake` hook: its owner runs them)."""
        if self._on_wake is not None:
            raise RuntimeError("this publisher's rounds are run through its on_wake hook: do not start() a thread too")
        self._thread = threading.Thread(target=self._run, name="outbox-publisher", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop publishing; unacknowledged records stay in the outbox for the next start."""
        self._stop.set()
        self.wake()
        if self._thread is not None:
            self._thread.join(timeout)

    def wake(self) -> None:
        """Have a round run soon: the worker thread's, or through the on_wake hook. Never raises."""
        self._wake.set()
        if self._on_wake is not None:
            try:
                self._on_wake()
            except Exception:  # noqa: BLE001 - called from paho's thread too
                log.exception("outbox: the on_wake hook failed")

    def pump(self) -> bool:
        """One round of the worker: delete what the broker acknowledged, then, while connected and not
        stopped, hand the next records to paho up to the window. True when a full window went out (more
        may wait: run again). Exceptions are the caller's: the records stay in the outbox either way."""
        self._settle()
        if self._stop.is_set() or not self._connected.is_set():
            return False
        return self._send()

    def flush(self, timeout: float) -> bool:
        """Wait until the outbox is empty (tests, clean shutdown); False on timeout."""
        deadline = time.monotonic() + timeout
        while len(self.outbox):
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self._stop.is_set():
                return False
            self._progress.wait(remaining)  # set whenever acknowledged records were deleted
            self._progress.clear()
        return True

    @property
    def inflight(self) -> int:
        with self._lock:
            return len(self._inflight)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.clear()
            try:
                if self.pump():
                    continue  # more may be waiting: go round without sleeping
            except Exception:  # noqa: BLE001 - keep draining; the record stays in the outbox
                log.exception("outbox publishing failed; retrying")
                self._stop.wait(self._poll_s)
            # Woken by put(), an acknowledgement or stop(); the timeout notices a reconnect, which matters
            # only while records wait (an idle agent then wakes every IDLE_POLL_S, not twice a second).
            self._wake.wait(self._poll_s if len(self.outbox) else max(self._poll_s, IDLE_POLL_S))
        try:
            self._settle()
        except Exception:  # noqa: BLE001
            log.exception("outbox: recording the last acknowledgements failed")

    def _settle(self) -> None:
        """Delete acknowledged records from the outbox."""
        with self._lock:
            ids = list(self._acked)
            self._acked.clear()
        if ids:
            self.outbox.done(ids)
            self.published += len(ids)
            self._pause_s = UNHEARD_PAUSE_S[0]  # somebody listens again
            self._progress.set()

    def _send(self) -> bool:
        """Hand the next records to paho, up to the window; True when a full batch went out."""
        with self._lock:
            room = self.window - len(self._inflight)
            if self._unheard and not self._inflight:  # every answer for the window is in: go back
                first, count = min(self._unheard), len(self._unheard)
                self._unheard.clear()
            else:
                first = count = 0
        if count:
            self._resend_from(first, count)
        if self._unheard or time.monotonic() < self._hold_until:
            return False
        if room <= 0:
            return False
        records = self.outbox.peek(limit=room, after=self._sent_up_to)
        for record in records:
            if not self._connected.is_set():
                return False
            with self._lock:
                self._early.clear()
                self._early_unheard.clear()
            try:
                info = self._publish(record.topic, record.payload, record.qos)
            except (ValueError, TypeError) as exc:  # a record paho can never send (bad topic, payload too large)
                log.error("dropping outbox record %d for %s: %s", record.id, record.topic, exc)
                self.outbox.done([record.id])
                self._sent_up_to = record.id
                continue
            rc = int(getattr(info, "rc", 0))
            if rc not in _HELD_RCS:
                log.warning("paho did not take outbox record %d (rc %d); retrying later", record.id, rc)
                return False
            with self._lock:
                if info.mid in self._early:  # acknowledged before publish() returned
                    self._early.discard(info.mid)
                    if info.mid in self._early_unheard:
                        self._early_unheard.discard(info.mid)
                        self._unheard.add(record.id)
                    else:
                        self._acked.append(record.id)
                else:
                    self._inflight[info.mid] = record.id
            self._sent_up_to = record.id
        return len(records) == room and room > 0

    def _resend_from(self, first: int, count: int) -> None:
        """Send again from record `first` on (records delivered meanwhile are gone from the outbox), after
        a pause that grows while nobody subscribes."""
        self.unheard += count
        self._sent_up_to = min(self._sent_up_to, first - 1)
        self._hold_until = time.monotonic() + self._pause_s
        # A warning at the start of a stretch without listeners, then quietly (up to two a minute).
        level = logging.WARNING if self._pause_s == UNHEARD_PAUSE_S[0] else logging.DEBUG
        log.log(level, "%d record(s) reached no subscriber at the broker (no coordinator listening?); kept, sending "
                "again in %.0f s", count, self._pause_s)
        self._pause_s = min(self._pause_s * 2, UNHEARD_PAUSE_S[1])
