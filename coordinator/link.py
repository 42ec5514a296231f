"""The coordinator's MQTT session: the coordinator half of the protocol (agent/link.py is the other).

Status and hello are idempotent state: every replica subscribes to them directly, because a shared
subscription never delivers retained messages and a restarted coordinator needs the retained ones.
Events, telemetry and chunk requests must be handled once: they go through the shared subscription.
paho callbacks only enqueue; a worker thread does the work, so nothing raised can stop paho's thread.

QoS 1 messages are acknowledged after they are handled (the telemetry writer: after its commit), in the
order they arrived (coordinator/acks.py), so a coordinator that dies loses nothing the broker sent it. How
many may wait unacknowledged is the broker's in-flight window for our session: MQTT 5 asks for
`receive_maximum` in CONNECT (mosquitto 2.0 takes it over its own max_inflight_messages, in both
directions); MQTT 3.1.1 gets the broker's max_inflight_messages. The window should hold several telemetry
batches, or the writer may wait out flush_interval_s for reports the broker is not allowed to send.
"""
from __future__ import annotations

import logging
import socket
import struct
import threading
from typing import Callable

import paho.mqtt.client as mqtt

from coordinator import acks
from coordinator.config import MqttConfig
from coordinator.handoff import Handoff
from edgefleet import session, topics

log = logging.getLogger(__name__)

_PUBACK = struct.Struct("!BBH")  # PUBACK, remaining length 2, packet id: MQTT 3.1.1, and MQTT 5 with reason Success
DIRECT_KINDS = (topics.STATUS, topics.HELLO)
SHARED_KINDS = (topics.EVENT, topics.TELEMETRY, topics.BLOB_REQ)
_STOP = ("", b"", None)


class CoordinatorLink:
    def __init__(
        self,
        cfg: MqttConfig,
        handle: Callable[[str, bytes], object],
        *,
        take: Callable[[str, bytes], bool] | None = None,
        on_state: Callable[[bool], None] | None = None,
    ):
        """`handle(topic, payload)` runs on the worker thread. `take(topic, payload)`, if given, runs first on
        paho's thread and returns True when it took the message (it must only queue it somewhere: telemetry
        for the child process, see Ingest.take), saving the hand-over to the worker."""
        self.cfg = cfg
        self.address = session.parse_broker_url(cfg.url)
        self.client_id = cfg.client_id or f"edgefleet-coordinator-{socket.gethostname()}"
        self._handle = handle
        self._take = take
        self._on_state = on_state or (lambda up: None)
        # paho's thread puts, the worker takes (handoff.py: far cheaper than queue.Queue). Never full, never
        # drops: what it holds is unacknowledged, so the broker's in-flight window limits it (loosely: mosquitto
        # 2.0.11 lets several times the window through once PUBACKs flow, docs/telemetry.md).
        self._inbox = Handoff()
        self.acks = acks.AckOrder(self._send_ack, self._send_acks)
        self.connected = threading.Event()
        self.closing = False  # set by stop(): the disconnect that follows is expected
        self._worker = threading.Thread(target=self._work, name="coordinator-ingest", daemon=True)
        self.client = session.make_client(self.client_id, cfg.protocol, username=cfg.username, password=cfg.password)
        self.client.manual_ack_set(True)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        self.client.on_connect_fail = self._on_connect_fail
        self._warned_unreachable = False

    def subscriptions(self) -> list[tuple[str, int]]:
        subs = [(topics.all_devices(k), 1) for k in DIRECT_KINDS]
        subs += [(topics.shared(topics.all_devices(k), self.cfg.share_group), 1) for k in SHARED_KINDS]
        return subs

    def start(self) -> None:
        self._worker.start()
        session.connect_async(
            self.client, self.address, keepalive=self.cfg.keepalive_s, session_expiry_s=self.cfg.session_expiry_s, receive_maximum=self.cfg.receive_maximum
        )
        self.client.loop_start()

    def stop(self) -> None:
        self.closing = True  # the disconnect that follows is ours: no warning for it
        try:
            self.client.disconnect()
        finally:
            self.client.loop_stop()
            self._put(_STOP)
            self._worker.join(timeout=10)

    def publish(self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False) -> mqtt.MQTTMessageInfo:
        return self.client.publish(topic, payload, qos=qos, retain=retain)

    def clear_retained(self, device_id: str) -> None:
        """Forget a removed device's retained status and hello on the broker."""
        for topic in (topics.status(device_id), topics.hello(device_id)):
            self.client.publish(topic, b"", qos=1, retain=True)

    # paho callbacks: never raise.

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        try:
            if session.reason_failed(reason_code):
                log.error("broker %s refused the coordinator: %s", self.address, reason_code)
                return
            self._warned_unreachable = False
            # Subscribe on every connect: a broker that lost our session must not leave us deaf.
            client.subscribe(self.subscriptions())
            self.connected.set()
            self._on_state(True)
            log.info("connected to broker %s as %s (MQTT %s)", self.address, self.client_id, self.cfg.protocol)
        except Exception:  # noqa: BLE001
            log.exception("on_connect failed")

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        try:
            # Packet ids of this connection mean nothing on the next: the broker resends what we did not ack.
            self.acks.reset()
            self.connected.clear()
            self._on_state(False)
            if self.closing:
                log.debug("disconnected from broker %s (stopping)", self.address)
            else:
                log.warning("disconnected from broker %s (%s); paho reconnects with backoff", self.address, reason_code)
        except Exception:  # noqa: BLE001
            pass

    def _on_connect_fail(self, client, userdata) -> None:
        try:
            if not self._warned_unreachable:
                log.warning("broker %s unreachable; retrying with backoff (up to 30 s between tries)", self.address)
                self._warned_unreachable = True
        except Exception:  # noqa: BLE001
            pass

    def _on_message(self, client, userdata, msg) -> None:
        delivery = None
        try:
            delivery = self.acks.arrived(msg.mid) if msg.qos else None
            topic, payload = msg.topic, msg.payload
            if self._take is not None:
                acks.handling(delivery)
                try:
                    taken = self._take(topic, payload)
                finally:
                    acks.handling(None)
                if taken:
                    if delivery is not None and not delivery.deferred:
                        delivery.complete()
                    return
            self._inbox.put((topic, payload, delivery))
        except Exception:  # noqa: BLE001
            log.exception("cannot queue a message on %s", getattr(msg, "topic", "?"))
            if delivery is not None and not delivery.deferred:
                delivery.complete()  # dropped: its PUBACK must not hold back every later one (never raises)

    def _put(self, item: tuple) -> None:
        self._inbox.put(item)

    def _send_ack(self, mid: int) -> None:
        # From any thread (paho's, the worker, the telemetry reader); paho queues the PUBACK for its network
        # thread. Never raises: callers include paho callbacks and the worker loop.
        try:
            self.client.ack(mid, 1)
        except Exception:  # noqa: BLE001
            log.exception("cannot acknowledge message %d; the broker will send it again", mid)

    def _send_acks(self, mids: list[int]) -> None:
        """Many PUBACKs as one write: paho's ack() queues a packet per message, each with a wake-up byte on
        its socketpair and its own send() on the network thread (several syscalls per message on a path
        that runs thousands of times a second). Uses paho's internal _packet_queue (paho-mqtt 2.x, which
        ack() itself calls); without it, or with manual acks off (ack() then sends nothing), one ack() each.
        Never raises."""
        client = self.client
        queue = getattr(client, "_packet_queue", None)
        if len(mids) == 1 or queue is None or not getattr(client, "_manual_ack", False):
            for mid in mids:
                self._send_ack(mid)
            return
        try:
            pack = _PUBACK.pack
            queue(0x40, b"".join([pack(0x40, 2, mid) for mid in mids]), 0, 0)
        except Exception:  # noqa: BLE001 - another paho's internals: one ack() each, as paho documents it
            log.warning("batched PUBACKs failed; acknowledging %d messages one by one", len(mids), exc_info=True)
            for mid in mids:
                self._send_ack(mid)

    def _work(self) -> None:
        inbox, handle = self._inbox, self._handle
        items = inbox.items
        while True:
            if not items:
                inbox.wait()
                continue
            item = items.popleft()
            if item is _STOP:
                return
            topic, payload, delivery = item
            acks.handling(delivery)
            try:
                handle(topic, payload)
            except Exception:  # noqa: BLE001
                log.exception("ingest failed for %s", topic)
            finally:
                acks.handling(None)
            # Handled (or dropped as bad input, which no redelivery would fix): acknowledge, unless a handler
            # took the acknowledgement over (telemetry: after the commit).
            if delivery is not None and not delivery.deferred:
                delivery.complete()
