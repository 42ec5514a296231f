"""AgentLink for one device among many simulated in a process.

The same session as `edge-agent run` (client id, credentials, retained will `offline`, `online` and a
fresh hello on every connect, `stopped` on a clean stop, command decoding), but it owns no thread:
AgentLink.start() would start two per device (paho's loop_start() and a command worker). Here the
fleet's NetworkLoop drives the socket and each command runs on the device's strand, in arrival order
(AgentLink's `deliver` hook posts AgentLink.handle_message there).
"""

from __future__ import annotations

import logging
import time
from typing import Any, Callable

from agent.identity import Identity
from agent.link import AgentLink, status_payload
from agent.simulate.network import NetworkLoop
from agent.simulate.scheduler import Strand
from edgefleet import session, topics
from edgefleet.v1 import device_pb2

log = logging.getLogger(__name__)


class FleetLink(AgentLink):
    def __init__(
        self,
        ident: Identity,
        make_hello: Callable[[], device_pb2.Hello],
        *,
        on_command: Callable[[object], None],
        network: NetworkLoop,
        strand: Strand,
        protocol: str | None = None,
        keepalive_s: int | None = None,
        on_connect_fail: Callable[[BaseException], None] | None = None,
        on_connected: Callable[[], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`make_hello` and `on_connected` run on the network thread: they must not block (no device locks)."""
        super().__init__(ident, make_hello, on_command=on_command, protocol=protocol, keepalive_s=keepalive_s, clock=clock,
                         on_connected=on_connected, deliver=self._to_strand)
        self._network = network
        self._strand = strand
        self._connect_failed = on_connect_fail

    def start(self) -> None:
        log.debug("connecting to %s as %s (MQTT %s, keepalive %ss)", self.address, self.device_id, self.protocol, self.keepalive_s)
        session.connect_async(self.client, self.address, keepalive=self.keepalive_s, session_expiry_s=self.ident.mqtt.session_expiry_s)
        self._network.add(self.client, on_connect_fail=self._connect_failed)

    # -- stopping, in two steps so a fleet stops all its devices at once --------------------------

    def say_stopped(self, reason: str = "agent stopped") -> Any | None:
        """Publish the retained `stopped` when connected; paho's message info to wait on, or None."""
        self.closing = True
        if not self.connected.is_set():
            return None
        try:
            return self.client.publish(topics.status(self.device_id),
                                       status_payload(self.device_id, device_pb2.DEVICE_STATE_STOPPED, reason), qos=1, retain=True)
        except Exception as exc:  # noqa: BLE001 - stopping must finish
            log.warning("%s: could not publish stopped status: %s", self.device_id, exc)
            return None

    def disconnect(self) -> None:
        """A clean disconnect (the broker drops the will) and no reconnect after it."""
        self.closing = True
        self._network.close(self.client)
        try:
            self.client.disconnect()
        except Exception as exc:  # noqa: BLE001
            log.debug("%s: disconnect failed: %s", self.device_id, exc)

    def stop(self, reason: str = "agent stopped", timeout_s: float = 5.0) -> None:
        info = self.say_stopped(reason)
        if info is not None:
            try:
                info.wait_for_publish(timeout=timeout_s)
            except Exception as exc:  # noqa: BLE001
                log.warning("%s: stopped status not acknowledged: %s", self.device_id, exc)
        self.disconnect()

    def post(self, fn: Callable[[], None]) -> None:
        """SUBACK callbacks run on the device's strand, like its messages."""
        self._strand.post(fn)

    def _to_strand(self, topic: str, payload: bytes) -> None:
        """Network thread: the message is handled on the device's strand, after those before it."""
        self._strand.post(lambda: self.handle_message(topic, payload))
