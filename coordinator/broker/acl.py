"""Which topics each broker account may use, in one place for every auth backend.

A device publishes only ef/v1/dev/{its id}/{status,hello,event,telemetry,blob/req} and subscribes
only to ef/v1/dev/{its id}/{cmd,blob}, and to the broadcast topics ef/v1/blobs/+ (read only: every
device may read them, which is why broadcast chunks are encrypted with a key only the wave's devices
get, on their own cmd topic). The coordinator account may do everything under ef/v1/dev/, including
the shared subscriptions its replicas ingest through, and publish under ef/v1/blobs/.
"""
from __future__ import annotations

from edgefleet import topics

COORDINATOR_USERNAME = "edgefleet-coordinator"


def _device_topics(device_id: str, kinds: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(topics.device_topic(device_id, kind) for kind in kinds)


def device_publish_topics(device_id: str) -> tuple[str, ...]:
    return _device_topics(device_id, topics.AGENT_PUBLISHES)


def device_subscribe_topics(device_id: str) -> tuple[str, ...]:
    return _device_topics(device_id, topics.COORDINATOR_PUBLISHES)


def device_broadcast_filter() -> str:
    """The filter a device may subscribe to (one transfer's topic at a time) and receive from."""
    return topics.all_broadcasts()


def coordinator_broadcast_filter() -> str:
    """Where the coordinator publishes broadcast chunks."""
    return f"{topics.BLOBS_ROOT}/#"


def coordinator_filters(share_group: str = topics.SHARE_GROUP) -> tuple[str, ...]:
    """Topic filters the coordinator may publish to, subscribe to and receive from.

    mosquitto 2.0 checks a shared subscription's ACL against the whole '$share/group/...' string,
    so the shared form needs its own entry.
    """
    everything = f"{topics.ROOT}/#"
    return (everything, topics.shared(everything, share_group))


def acl_file_text(coordinator_username: str = COORDINATOR_USERNAME) -> str:
    """A mosquitto acl_file for the password_file route (deploy/mosquitto/acl.example is this text).

    Patterns use %u, the username, because the password file authenticates the username only: a
    client id is whatever the client claims. edgefleet issues username = device id.
    """
    lines = [
        "# edgefleet broker ACL for mosquitto's acl_file (the route without the dynamic security plugin).",
        "# Generated from coordinator/broker/acl.py; a test keeps this file and that code in step.",
        "",
        "# The coordinator account: every device topic, in both directions.",
        f"user {coordinator_username}",
        f"topic readwrite {topics.ROOT}/#",
        f"topic readwrite {coordinator_broadcast_filter()}",
        "",
        "# Every other account is a device whose username is its device id: its own topics only.",
    ]
    lines += [f"pattern write {topics.ROOT}/%u/{kind}" for kind in topics.AGENT_PUBLISHES]
    lines += [f"pattern read {topics.ROOT}/%u/{kind}" for kind in topics.COORDINATOR_PUBLISHES]
    lines += ["", "# Broadcast blob transfers: readable by every device, encrypted per transfer.",
              f"pattern read {device_broadcast_filter()}"]
    return "\n".join(lines) + "\n"
