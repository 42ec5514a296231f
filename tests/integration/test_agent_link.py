"""agent.link.AgentLink's hooks on a real (private) mosquitto: `on_connected` runs once the session is up,
`deliver` takes arriving messages in place of the command worker, `handle_message` decodes and filters
them; and the default path (the daemon's: its own command worker) still delivers commands."""

from __future__ import annotations

import logging
import queue
import threading
import uuid
from pathlib import Path

import pytest

from agent.identity import Identity, MqttIdentity
from agent.link import AgentLink
from edgefleet import envelope, session, topics
from edgefleet.v1 import commands_pb2, device_pb2
from tests.mosquitto import MosquittoProcess, mosquitto_binary

pytestmark = pytest.mark.skipif(mosquitto_binary() is None, reason="mosquitto is not installed")

BROKER_CONF = "allow_anonymous true\n"


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    with MosquittoProcess(BROKER_CONF, tmp_path_factory.mktemp("broker")) as proc:
        yield proc


def identity(broker: MosquittoProcess) -> Identity:
    device_id = "dev-" + uuid.uuid4().hex[:8]
    return Identity(device_id=device_id, device_name=device_id, coordinator="test",
                    mqtt=MqttIdentity(url=f"mqtt://{broker.host}:{broker.port}", client_id=device_id, username="", password=""),
                    public_key_hex="", key_id="")


def ping(device_id: str, command_id: str) -> bytes:
    return envelope.encode(device_id, command=commands_pb2.Command(command_id=command_id, ping=commands_pb2.Ping()))


def send(broker: MosquittoProcess, topic: str, *payloads: bytes) -> None:
    """Publish from a separate client and wait for the broker's acknowledgements."""
    client = session.make_client("ctl-" + uuid.uuid4().hex[:8], "5")
    connected = threading.Event()
    client.on_connect = lambda *a: connected.set()
    session.connect_async(client, session.BrokerAddress(broker.host, broker.port, False), keepalive=5, session_expiry_s=0)
    client.loop_start()
    try:
        assert connected.wait(10), "the control client never connected"
        for payload in payloads:
            client.publish(topic, payload, qos=1).wait_for_publish(10)
    finally:
        client.disconnect()
        client.loop_stop()


def test_hooks_take_over_connect_and_message_delivery(broker: MosquittoProcess, caplog) -> None:
    ident = identity(broker)
    commands: list[str] = []
    delivered: queue.Queue = queue.Queue()
    connected_seen: list[bool] = []
    online = threading.Event()

    def on_connected() -> None:
        connected_seen.append(link.connected.is_set())
        online.set()

    link = AgentLink(ident, device_pb2.Hello, on_command=lambda env: commands.append(env.command.command_id),
                     on_connected=on_connected, deliver=lambda topic, payload: delivered.put((topic, payload)))
    subscribed = threading.Event()
    link.client.on_subscribe = lambda *a: subscribed.set()  # the link sets none: the test waits for the SUBACK
    link.start()
    try:
        assert online.wait(10), "on_connected never ran"
        assert connected_seen == [True] and link.connects == 1
        assert subscribed.wait(10), "the link's subscription was never acknowledged"
        # A command arrives through `deliver` only.
        send(broker, topics.cmd(ident.device_id), ping(ident.device_id, "c1"), ping("someone-else", "c2"), b"not protobuf")
        arrived = [delivered.get(timeout=10) for _ in range(3)]
        assert [topic for topic, _ in arrived] == [topics.cmd(ident.device_id)] * 3
        assert commands == []  # the command worker was bypassed
        with caplog.at_level(logging.WARNING, logger="agent.link"):
            for topic, payload in arrived:
                link.handle_message(topic, payload)  # never raises, whatever arrived
        assert commands == ["c1"]
        assert "addressed to someone-else" in caplog.text and "ignored a bad payload" in caplog.text
    finally:
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="agent.link"):
            link.stop()
        assert not link.connected.is_set()
    assert "reconnecting" not in caplog.text  # our own disconnect is not reported as a lost connection


def test_without_hooks_the_command_worker_delivers(broker: MosquittoProcess) -> None:
    ident = identity(broker)
    got = threading.Event()
    commands: list[str] = []

    def on_command(env) -> None:
        commands.append(env.command.command_id)
        got.set()

    link = AgentLink(ident, device_pb2.Hello, on_command=on_command)
    subscribed = threading.Event()
    link.client.on_subscribe = lambda *a: subscribed.set()
    link.start()
    try:
        assert subscribed.wait(10), "the link's subscription was never acknowledged"
        send(broker, topics.cmd(ident.device_id), ping(ident.device_id, "c9"))
        assert got.wait(10), "the command never reached on_command"
        assert commands == ["c9"]
    finally:
        link.stop()
