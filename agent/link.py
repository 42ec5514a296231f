"""The agent's MQTT session: the device half of the protocol (coordinator/link.py is the other).

Client id = device id. A retained last will says `offline`; every connect publishes a retained
`online` and a fresh retained hello; a clean stop publishes a retained `stopped`. paho owns the
reconnect backoff; callbacks only enqueue or publish and never raise.

Hooks for running a link without its threads (agent.simulate.link): `deliver` takes arriving messages
instead of the command worker (and calls `handle_message` where it likes), `on_connected` runs after
every successful connect.

`subscribe(topic, done)` subscribes to a broadcast topic (ef/v1/blobs/{transfer_id}) and calls
done(granted) once the SUBACK is in, on the link's worker (FleetLink: the device's strand), never on
paho's thread. Messages on broadcast topics carry no device id and are taken as this device's.
"""
from __future__ import annotations

import logging
import queue
import threading
import time
from typing import Callable

from agent.identity import Identity
from agent.version import AGENT_VERSION
from edgefleet import envelope, session, topics
from edgefleet.v1 import device_pb2

log = logging.getLogger(__name__)
_STOP = object()


def status_payload(device_id: str, state: int, reason: str = "") -> bytes:
    return envelope.encode(device_id, status=device_pb2.Status(state=state, reason=reason, agent_version=AGENT_VERSION))


class AgentLink:
    def __init__(
        self,
        ident: Identity,
        make_hello: Callable[[], device_pb2.Hello],
        *,
        on_command: Callable[[object], None] = lambda env: None,
        protocol: str | None = None,
        keepalive_s: int | None = None,
        clock: Callable[[], float] = time.monotonic,
        on_connected: Callable[[], None] | None = None,
        deliver: Callable[[str, bytes], None] | None = None,
    ):
        """`on_command(envelope)` runs for every message addressed to this device (see handle_message).

        `on_connected()` runs on paho's network thread after each successful connect (subscribed, online
        and hello published, `connected` set): it must not block. `deliver(topic, payload)` also runs
        there, for every arriving message, in place of the link's own command worker: it must hand the
        message on (and have handle_message called on it) without blocking."""
        self.ident = ident
        self.device_id = ident.device_id
        self.protocol = protocol or ident.mqtt.protocol
        self.keepalive_s = keepalive_s or ident.mqtt.keepalive_s
        self.address = session.parse_broker_url(ident.mqtt.url)
        self._make_hello = make_hello
        self._on_command = on_command
        self._clock = clock
        self._on_connected = on_connected
        self._deliver = deliver or self._enqueue
        self.connected = threading.Event()
        self.connects = 0
        self.closing = False  # set before our own disconnect: the disconnect that follows is no loss
        self._last_unreachable_log: float | None = None
        self._inbox: queue.Queue = queue.Queue()
        self._worker = threading.Thread(target=self._work, name="agent-commands", daemon=True)
        self._subacks: dict[int, Callable[[bool], None]] = {}  # SUBSCRIBE mid -> done(granted)
        self._subacks_lock = threading.Lock()
        self.client = session.make_client(ident.mqtt.client_id or self.device_id, self.protocol, username=ident.mqtt.username, password=ident.mqtt.password)
        self.client.will_set(topics.status(self.device_id), status_payload(self.device_id, device_pb2.DEVICE_STATE_OFFLINE, "connection lost"), qos=1, retain=True)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_connect_fail = self._on_connect_fail
        self.client.on_message = self._on_message
        self.client.on_subscribe = self._on_subscribe

    def start(self) -> None:
        self._worker.start()
        log.info("connecting to %s as %s (MQTT %s, keepalive %ss)", self.address, self.device_id, self.protocol, self.keepalive_s)
        session.connect_async(self.client, self.address, keepalive=self.keepalive_s, session_expiry_s=self.ident.mqtt.session_expiry_s)
        self.client.loop_start()

    def stop(self, reason: str = "agent stopped", timeout_s: float = 5.0) -> None:
        """Say `stopped` (retained) when connected, then disconnect cleanly so the will is not sent."""
        try:
            if self.connected.is_set():
                info = self.client.publish(
                    topics.status(self.device_id), status_payload(self.device_id, device_pb2.DEVICE_STATE_STOPPED, reason), qos=1, retain=True
                )
                info.wait_for_publish(timeout=timeout_s)
            self.closing = True
            self.client.disconnect()
        except Exception as exc:  # noqa: BLE001 - stopping must finish
            log.warning("could not publish stopped status: %s", exc)
        finally:
            self.client.loop_stop()
            self._inbox.put(_STOP)
            self._worker.join(timeout=timeout_s)

    def publish(self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False):
        return self.client.publish(topic, payload, qos=qos, retain=retain)

    def subscribe(self, topic: str, done: Callable[[bool], None]) -> None:
        """Subscribe at QoS 1; done(granted) runs via post() once the broker answered (False at once when
        not connected). A SUBACK lost with the connection never calls done: the caller times out."""
        # Held across the call so that a SUBACK read at once by paho's thread finds its mid registered.
        with self._subacks_lock:
            try:
                result, mid = self.client.subscribe(topic, qos=1)
            except Exception as exc:  # noqa: BLE001
                log.warning("subscribe to %s failed: %s", topic, exc)
                result, mid = -1, None
            if result == 0 and mid is not None:
                self._subacks[mid] = done
                return
        self.post(lambda: done(False))

    def unsubscribe(self, topic: str) -> None:
        try:
            self.client.unsubscribe(topic)
        except Exception as exc:  # noqa: BLE001 - a stale subscription only brings chunks that are ignored
            log.debug("unsubscribe from %s failed: %s", topic, exc)

    def post(self, fn: Callable[[], None]) -> None:
        """Run fn on the link's worker thread (in order with arriving messages)."""
        self._inbox.put_nowait(fn)

    # paho callbacks: never raise.

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        try:
            with self._subacks_lock:
                done = self._subacks.pop(mid, None)
            if done is not None:
                granted = all(not getattr(rc, "is_failure", False) for rc in reason_codes)
                self.post(lambda: done(granted))
        except Exception:  # noqa: BLE001
            log.exception("on_subscribe failed")

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        try:
            if session.reason_failed(reason_code):
                log.error("broker %s refused device %s: %s", self.address, self.device_id, reason_code)
                return
            self.connects += 1
            self._last_unreachable_log = None
            with self._subacks_lock:
                self._subacks.clear()  # SUBACKs of the last connection will not come
            client.subscribe([(topics.cmd(self.device_id), 1), (topics.blob(self.device_id), 1)])
            client.publish(topics.status(self.device_id), status_payload(self.device_id, device_pb2.DEVICE_STATE_ONLINE), qos=1, retain=True)
            hello = self._make_hello()
            client.publish(topics.hello(self.device_id), envelope.encode(self.device_id, hello=hello), qos=1, retain=True)
            self.connected.set()
            log.info("online at %s (session present: %s)", self.address, getattr(flags, "session_present", "?"))
        except Exception:  # noqa: BLE001
            log.exception("on_connect failed")
            return
        if self._on_connected is not None:
            try:
                self._on_connected()
            except Exception:  # noqa: BLE001
                log.exception("%s: on_connected hook failed", self.device_id)

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        try:
            self.connected.clear()
            if self.closing:
                log.debug("disconnected from %s (stopping)", self.address)
                return
            log.warning("disconnected from %s (%s); reconnecting with backoff", self.address, reason_code)
        except Exception:  # noqa: BLE001
            pass

    def _on_connect_fail(self, client, userdata) -> None:
        try:
            now = self._clock()
            if self._last_unreachable_log is None or now - self._last_unreachable_log >= 60:
                self._last_unreachable_log = now
                log.warning("broker %s unreachable; still retrying (backoff up to 30 s)", self.address)
        except Exception:  # noqa: BLE001
            pass

    def _on_message(self, client, userdata, msg) -> None:
        try:
            self._deliver(msg.topic, bytes(msg.payload))
        except Exception:  # noqa: BLE001
            log.exception("could not take a message on %s", getattr(msg, "topic", "?"))

    def _enqueue(self, topic: str, payload: bytes) -> None:
        self._inbox.put_nowait((topic, payload))

    def _work(self) -> None:
        while True:
            item = self._inbox.get()
            if item is _STOP:
                return
            if callable(item):
                try:
                    item()
                except Exception:  # noqa: BLE001
                    log.exception("link callback failed")
                continue
            self.handle_message(*item)

    def handle_message(self, topic: str, payload: bytes) -> None:
        """Decode one arriving message and run on_command on it when it is addressed to this device.
        Bad payloads and failing commands are logged; never raises."""
        try:
            env = envelope.decode(payload)
            if env.device_id != self.device_id and not (topics.parse_broadcast(topic) and env.WhichOneof("body") == "blob_chunk"):
                log.warning("ignored a message on %s addressed to %s", topic, env.device_id)
                return
            self._on_command(env)
        except envelope.BadPayload as exc:
            log.warning("ignored a bad payload on %s: %s", topic, exc)
        except Exception:  # noqa: BLE001
            log.exception("command handling failed for %s", topic)
