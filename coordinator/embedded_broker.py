"""An embedded MQTT 3.1.1 broker (amqtt) for `edgectl demo` when no broker answers and mosquitto is not
installed. Not for production: one process, everything in memory, no shared subscriptions (run the
coordinator with `mqtt.share_group = ""`, so one coordinator only), no MQTT 5.

    python -m coordinator.embedded_broker [--host 127.0.0.1] [--port 0]

prints `edgefleet embedded-broker ready url=mqtt://HOST:PORT` once it listens (port 0: the kernel picks
a free one, so there is no race for it) and stops cleanly on SIGTERM or SIGINT
(`edgefleet embedded-broker stopped`).

Four amqtt 0.12.1 behaviours are corrected here, each found by tests/integration/test_embedded_broker.py:
- Its AnonymousAuthPlugin marks every client anonymous, and amqtt neither keeps an anonymous client's
  session nor queues QoS 1 messages for it while it is offline: persistent sessions (clean_session=False),
  which the protocol relies on, would silently not exist. AcceptAll accepts every client without
  marking it anonymous (no credentials at all: it listens on loopback unless --host says otherwise).
- On every connect amqtt sends the client the retained messages matching *any* client's subscription
  (the coordinator's `ef/v1/dev/+/status` included), so each agent would receive every device's status
  and hello. EdgefleetBroker only sends retained messages for the client's own subscriptions.
- A QoS 1 message it sends is dropped for good when the client's PUBACK takes over 5 s, or when the
  client disconnects before acknowledging it: never sent again, not even to the persistent session.
  The coordinator acknowledges only after storing, which can take longer under load. `_qos1_until_acked`
  (installed on amqtt's broker protocol handler by serve(), in that process only) waits for the PUBACK however long
  it takes and keeps the message in the session until then, so amqtt's own retry on reconnect
  ([MQTT-4.4.0-1]) sends it again.
- A client that goes silent with its socket still open (a cut cable, a frozen board) is never dropped:
  amqtt only logs the read timeout, so its last will (`offline`) is never published. `_drop_silent`
  closes the connection after 1.5x the client's keepalive without a packet, as MQTT 3.1.1 requires
  ([MQTT-3.1.2-24]); that publishes the will.
The overrides touch amqtt internals: pyproject pins amqtt to 0.12.x.
"""
from __future__ import annotations

import argparse
import asyncio
import logging
import math
import signal
import sys
from typing import Any

from amqtt.broker import Broker
from amqtt.mqtt.protocol.broker_handler import BrokerProtocolHandler
from amqtt.plugins.base import BaseAuthPlugin
from amqtt.session import OUTGOING

log = logging.getLogger(__name__)

READY = "edgefleet embedded-broker ready"
STOPPED = "edgefleet embedded-broker stopped"
SESSION_EXPIRY_S = 86400  # as mqtt.session_expiry_s: a device away longer than a day starts a new session


class AcceptAll(BaseAuthPlugin):
    """Accept every client, as mosquitto's `allow_anonymous true`, but keep its persistent session."""

    async def authenticate(self, *, session: Any) -> bool:
        return True


class EdgefleetBroker(Broker):
    async def _initialize_client_session(self, *args: Any, **kwargs: Any) -> Any:
        handler, client_session = await super()._initialize_client_session(*args, **kwargs)
        # The reader's timeout is the session's keep_alive: make it the 1.5x grace MQTT 3.1.1 gives.
        if client_session.keep_alive > 0:
            client_session.keep_alive = math.ceil(client_session.keep_alive * 1.5)
        return handler, client_session

    async def _publish_retained_messages_for_subscription(self, subscription: tuple[str, int], session: Any) -> None:
        topic_filter = subscription[0]
        if not any(s.client_id == session.client_id for s, _ in self._subscriptions.get(topic_filter, ())):
            return  # another client's subscription (amqtt sends those on connect too)
        await super()._publish_retained_messages_for_subscription(subscription, session)


_amqtt_qos1_flow = BrokerProtocolHandler._handle_qos1_message_flow


async def _qos1_until_acked(self: BrokerProtocolHandler, app_message: Any) -> None:
    """amqtt's outgoing QoS 1 flow without its 5 s limit, and without forgetting an unacknowledged message."""
    if app_message.direction != OUTGOING:
        return await _amqtt_qos1_flow(self, app_message)
    packet_id = app_message.packet_id
    self.session.inflight_out[packet_id] = app_message
    waiter: asyncio.Future = asyncio.get_running_loop().create_future()
    # Registered before sending: a PUBACK read while the send is still draining must find it.
    self._puback_waiters[packet_id] = waiter
    try:
        packet = app_message.build_publish_packet(dup=app_message.publish_packet is not None)
        await self._send_packet(packet)
        app_message.publish_packet = packet
        app_message.puback_packet = await waiter  # cancelled when the client goes: the message stays in flight
        self.session.inflight_out.pop(packet_id, None)
    finally:
        if self._puback_waiters.get(packet_id) is waiter:
            del self._puback_waiters[packet_id]


def _drop_silent(self: BrokerProtocolHandler) -> None:
    """The reader waited one keepalive period (1.5x the client's, see EdgefleetBroker) for a packet: give up."""
    if self.session is not None:
        log.info("%s sent nothing for %s s: closing its connection (its will is published)", self.session.client_id, self.session.keep_alive)
    asyncio.ensure_future(self.handle_connection_closed())


def install_fixes() -> None:
    """Patch amqtt's broker protocol handler in this process (serve() calls it; importing this module does not)."""
    BrokerProtocolHandler._handle_qos1_message_flow = _qos1_until_acked
    BrokerProtocolHandler.handle_read_timeout = _drop_silent


def broker_config(host: str, port: int) -> dict[str, Any]:
    return {
        "listeners": {"default": {"type": "tcp", "bind": f"{host}:{port}"}},
        "session_expiry_interval": SESSION_EXPIRY_S,
        # Only our auth plugin: no $SYS publisher, no per-packet logging.
        "plugins": {"coordinator.embedded_broker.AcceptAll": {}},
    }


def bound_port(broker: Broker) -> int:
    server = broker._servers["default"].instance  # amqtt keeps the asyncio.Server; port 0 is only known here
    return server.sockets[0].getsockname()[1]


async def serve(host: str, port: int, say=print) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    install_fixes()
    broker = EdgefleetBroker(broker_config(host, port))
    await broker.start()
    say(f"{READY} url=mqtt://{host}:{bound_port(broker)}")
    try:
        await stop.wait()
    finally:
        await broker.shutdown()
        say(STOPPED)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m coordinator.embedded_broker", description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: loopback only)")
    parser.add_argument("--port", type=int, default=0, help="port (default 0: a free one, printed on the ready line)")
    parser.add_argument("--log-level", default="warning")
    args = parser.parse_args(argv)
    if not 0 <= args.port <= 65535:
        parser.error(f"--port must be 0..65535, not {args.port}")
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        asyncio.run(serve(args.host, args.port, say=lambda line: print(line, flush=True)))
    except OSError as exc:
        print(f"embedded broker cannot listen on {args.host}:{args.port}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # noqa: BLE001 - amqtt wraps listen errors in BrokerError
        print(f"embedded broker failed: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
