"""How both halves of the protocol open an MQTT session: one set of rules for agent and coordinator.

Persistent sessions everywhere: MQTT 5 needs clean_start=False *and* a session expiry above 0;
MQTT 3.1.1 needs clean_session=False. paho owns the reconnect backoff.
"""
from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from edgefleet.paho_client import mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

PROTOCOLS = {"5": mqtt.MQTTv5, "3.1.1": mqtt.MQTTv311}


@dataclass(frozen=True)
class BrokerAddress:
    host: str
    port: int
    tls: bool

    def __str__(self) -> str:
        return f"{'mqtts' if self.tls else 'mqtt'}://{self.host}:{self.port}"


def parse_broker_url(url: str) -> BrokerAddress:
    parts = urlsplit(url if "://" in url else f"mqtt://{url}")
    if parts.scheme not in ("mqtt", "mqtts", "tcp", "ssl"):
        raise ValueError(f"unsupported broker URL scheme {parts.scheme!r} in {url!r}: use mqtt:// or mqtts://")
    if not parts.hostname:
        raise ValueError(f"broker URL without a host: {url!r}")
    tls = parts.scheme in ("mqtts", "ssl")
    return BrokerAddress(parts.hostname, parts.port or (8883 if tls else 1883), tls)


def make_client(client_id: str, protocol: str, *, username: str = "", password: str = "") -> mqtt.Client:
    if protocol not in PROTOCOLS:
        raise ValueError(f"unsupported MQTT protocol {protocol!r}: use '5' or '3.1.1'")
    version = PROTOCOLS[protocol]
    kwargs = {"clean_session": False} if version == mqtt.MQTTv311 else {}
    client = mqtt.Client(
        callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=version,
        **kwargs,
    )
    if username:
        client.username_pw_set(username, password or None)
    client.reconnect_delay_set(min_delay=1, max_delay=30)
    # Room for a burst of QoS 1 publishes from the outbox before paho blocks on acknowledgements.
    client.max_inflight_messages_set(100)
    client.max_queued_messages_set(0)
    return client


def connect_async(client: mqtt.Client, address: BrokerAddress, *, keepalive: int, session_expiry_s: int, receive_maximum: int = 0) -> None:
    """Start connecting in the background; paho keeps retrying until it succeeds. `receive_maximum` (MQTT 5,
    0 = not sent): how many QoS 1 messages the broker may send before we acknowledge them."""
    if address.tls:
        client.tls_set()
    if client.protocol == mqtt.MQTTv5:
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = session_expiry_s
        if receive_maximum:
            props.ReceiveMaximum = receive_maximum
        client.connect_async(address.host, address.port, keepalive=keepalive, clean_start=False, properties=props)
    else:
        client.connect_async(address.host, address.port, keepalive=keepalive)


def reason_failed(reason_code) -> bool:
    """paho 2 hands a ReasonCode for MQTT 5 and 3.1.1 alike."""
    return bool(getattr(reason_code, "is_failure", False)) or (isinstance(reason_code, int) and reason_code != 0)
