"""Every MQTT topic edgefleet uses is built here, and only here.

    ef/v1/dev/{device_id}/status      agent -> retained online | offline (last will) | stopped
    ef/v1/dev/{device_id}/hello       agent -> hardware profile (retained)
    ef/v1/dev/{device_id}/cmd         coordinator -> commands (QoS 1)
    ef/v1/dev/{device_id}/event       agent -> install progress, results (QoS 1)
    ef/v1/dev/{device_id}/telemetry   agent -> periodic telemetry (QoS 1)
    ef/v1/dev/{device_id}/blob/req    agent -> chunk requests
    ef/v1/dev/{device_id}/blob        coordinator -> chunks
    ef/v1/blobs/{transfer_id}         coordinator -> one blob's chunks, encrypted, to every device of a
                                      wave at once (the broker fans out); readable by any device
"""
from __future__ import annotations

import re
from dataclasses import dataclass

ROOT = "ef/v1/dev"
BLOBS_ROOT = "ef/v1/blobs"
SHARE_GROUP = "coordinators"

STATUS = "status"
HELLO = "hello"
CMD = "cmd"
EVENT = "event"
TELEMETRY = "telemetry"
BLOB_REQ = "blob/req"
BLOB = "blob"

AGENT_PUBLISHES = (STATUS, HELLO, EVENT, TELEMETRY, BLOB_REQ)
COORDINATOR_PUBLISHES = (CMD, BLOB)

# Device ids go into topics and broker usernames: keep them to a safe alphabet.
_DEVICE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


def valid_device_id(device_id: str) -> bool:
    return bool(_DEVICE_ID.match(device_id))


def device_topic(device_id: str, kind: str) -> str:
    if not valid_device_id(device_id):
        raise ValueError(f"invalid device id for a topic: {device_id!r}")
    if kind not in AGENT_PUBLISHES + COORDINATOR_PUBLISHES:
        raise ValueError(f"unknown topic kind: {kind!r}")
    return f"{ROOT}/{device_id}/{kind}"


def status(device_id: str) -> str:
    return device_topic(device_id, STATUS)


def hello(device_id: str) -> str:
    return device_topic(device_id, HELLO)


def cmd(device_id: str) -> str:
    return device_topic(device_id, CMD)


def event(device_id: str) -> str:
    return device_topic(device_id, EVENT)


def telemetry(device_id: str) -> str:
    return device_topic(device_id, TELEMETRY)


def blob_req(device_id: str) -> str:
    return device_topic(device_id, BLOB_REQ)


def blob(device_id: str) -> str:
    return device_topic(device_id, BLOB)


# 128 random bits as 32 hex digits: the name of one broadcast transfer.
_TRANSFER_ID = re.compile(r"^[0-9a-f]{32}$")


def valid_transfer_id(transfer_id: str) -> bool:
    return bool(_TRANSFER_ID.match(transfer_id))


def broadcast(transfer_id: str) -> str:
    """The broadcast topic of one blob transfer (any device may read it: its chunks are encrypted)."""
    if not valid_transfer_id(transfer_id):
        raise ValueError(f"invalid transfer id for a topic: {transfer_id!r}")
    return f"{BLOBS_ROOT}/{transfer_id}"


def all_broadcasts() -> str:
    """The filter granting read access to every broadcast topic (devices' ACLs)."""
    return f"{BLOBS_ROOT}/+"


def parse_broadcast(topic: str) -> str | None:
    """The transfer id of ef/v1/blobs/{transfer_id}; None for anything else."""
    prefix = BLOBS_ROOT + "/"
    if not topic.startswith(prefix):
        return None
    transfer_id = topic[len(prefix):]
    return transfer_id if valid_transfer_id(transfer_id) else None


def all_devices(kind: str) -> str:
    """Wildcard filter for one kind of topic from every device."""
    return f"{ROOT}/+/{kind}"


def shared(topic_filter: str, group: str = SHARE_GROUP) -> str:
    """A shared subscription: each message goes to one coordinator replica of the group.

    An empty group means a plain subscription, for brokers without shared subscriptions (amqtt):
    every subscriber then gets every message, so only one coordinator may run.
    """
    if not group:
        return topic_filter
    return f"$share/{group}/{topic_filter}"


@dataclass(frozen=True)
class ParsedTopic:
    device_id: str
    kind: str


def parse(topic: str) -> ParsedTopic | None:
    """Split ef/v1/dev/{id}/{kind} into its parts; None for anything else."""
    prefix = ROOT + "/"
    if not topic.startswith(prefix):
        return None
    rest = topic[len(prefix):]
    device_id, sep, kind = rest.partition("/")
    if not sep or not valid_device_id(device_id):
        return None
    if kind not in AGENT_PUBLISHES + COORDINATOR_PUBLISHES:
        return None
    return ParsedTopic(device_id, kind)
