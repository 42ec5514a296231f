"""Wrap and unwrap the protobuf Envelope every MQTT payload travels in."""
from __future__ import annotations

import time
import uuid

from google.protobuf.message import DecodeError

from edgefleet.v1 import envelope_pb2

PROTOCOL_VERSION = 1
_BODIES = {f.name for f in envelope_pb2.Envelope.DESCRIPTOR.oneofs_by_name["body"].fields}


class BadPayload(ValueError):
    """A payload that is not a readable edgefleet envelope."""


def new_message_id() -> str:
    return uuid.uuid4().hex


def wrap(device_id: str, *, now: float | None = None, message_id: str | None = None, **body) -> envelope_pb2.Envelope:
    """wrap("dev-1", hello=Hello(...)) -> Envelope with id, timestamp and protocol version."""
    if len(body) != 1:
        raise TypeError("wrap() takes exactly one body field")
    (name, msg), = body.items()
    if name not in _BODIES:
        raise TypeError(f"unknown envelope body {name!r}")
    env = envelope_pb2.Envelope(
        message_id=message_id or new_message_id(),
        device_id=device_id,
        protocol_version=PROTOCOL_VERSION,
    )
    env.sent_at.FromNanoseconds(int((time.time() if now is None else now) * 1e9))
    getattr(env, name).CopyFrom(msg)
    return env


def encode(device_id: str, **kw) -> bytes:
    return wrap(device_id, **kw).SerializeToString()


def decode(payload: bytes, *, expect: str | None = None) -> envelope_pb2.Envelope:
    """Parse a payload; raise BadPayload naming what is wrong."""
    env = envelope_pb2.Envelope()
    try:
        env.ParseFromString(payload)
    except DecodeError as exc:
        raise BadPayload(f"not a protobuf envelope ({len(payload)} bytes): {exc}") from None
    if not env.message_id:
        raise BadPayload("envelope without message_id")
    if env.protocol_version != PROTOCOL_VERSION:
        raise BadPayload(f"unsupported protocol_version {env.protocol_version}")
    kind = env.WhichOneof("body")
    if kind is None:
        raise BadPayload("envelope without a body")
    if expect is not None and kind != expect:
        raise BadPayload(f"expected a {expect} body, got {kind}")
    return env
