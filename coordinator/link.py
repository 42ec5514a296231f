"""The coordinator's MQTT session: the coordinator half of the protocol (agent/link.py is the other).

Status and hello are idempotent state: every replica subscribes to them directly, because a shared
subscription never delivers retained messages and a restarted coordinator needs the retained ones.
Events, telemetry and chunk requests must be handled once: they go through the shared subscription.
paho callbacks only enqueue; a worker thread does the work, so nothing raised can stop paho's thread.
"""
from __future__ import annotations

import logging
import queue
import socket
import threading
from typing import Callable

import paho.mqtt.client as mqtt

from coordinator.config import MqttConfig
from edgefleet import session, topics

log = logging.getLogger(__name__)

DIRECT_KINDS = (topics.STATUS, topics.HELLO)
SHARED_KINDS = (topics.EVENT, topics.TELEMETRY, topics.BLOB_REQ)
_STOP = object()


class CoordinatorLink:
    def __init__(self, cfg: MqttConfig, handle: Callable[[str, bytes], object], *, on_state: Callable[[bool], None] | None = None):
        self.cfg = cfg
        self.address = session.parse_broker_url(cfg.url)
        self.client_id = cfg.client_id or f"edgefleet-coordinator-{socket.gethostname()}"
        self._handle = handle
        self._on_state = on_state or (lambda up: None)
        self._queue: queue.Queue = queue.Queue(maxsize=100_000)
        self.connected = threading.Event()
        self._worker = threading.Thread(target=self._work, name="coordinator-ingest", daemon=True)
        self.client = session.make_client(self.client_id, cfg.protocol, username=cfg.username, password=cfg.password)
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
        session.connect_async(self.client, self.address, keepalive=self.cfg.keepalive_s, session_expiry_s=self.cfg.session_expiry_s)
        self.client.loop_start()

    def stop(self) -> None:
        try:
            self.client.disconnect()
        finally:
            self.client.loop_stop()
            self._queue.put(_STOP)
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
            self.connected.clear()
            self._on_state(False)
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
        try:
            self._queue.put_nowait((msg.topic, bytes(msg.payload)))
        except queue.Full:
            log.error("ingest queue full: dropping a message on %s", msg.topic)
        except Exception:  # noqa: BLE001
            pass

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            topic, payload = item
            try:
                self._handle(topic, payload)
            except Exception:  # noqa: BLE001
                log.exception("ingest failed for %s", topic)
