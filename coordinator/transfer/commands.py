"""Commands for ef/v1/dev/{id}/cmd, wrapped in the envelope every MQTT payload travels in.

The agent acknowledges and de-duplicates by command_id: re-publishing one Command (a retry after a
timeout) is safe; building a new one for the same purpose is not.
"""
from __future__ import annotations

import uuid
from typing import Callable, Sequence

from edgefleet import envelope, topics
from edgefleet.v1 import commands_pb2, manifest_pb2, transfer_pb2


def new_command_id() -> str:
    return uuid.uuid4().hex


def deploy_command(signed: manifest_pb2.SignedManifest, *, command_id: str | None = None,
                   broadcasts: Sequence[transfer_pb2.BlobBroadcast] = ()) -> commands_pb2.Command:
    """`broadcasts`: the manifest's blobs sent to the wave on a broadcast topic (their keys go only here,
    on the device's own cmd topic)."""
    deploy = commands_pb2.Deploy(manifest=signed, broadcasts=list(broadcasts))
    return commands_pb2.Command(command_id=command_id or new_command_id(), deploy=deploy)


def profile_command(
    request_id: str, candidates: Sequence[manifest_pb2.SignedManifest], *, warmup: int = 5, runs: int = 50, command_id: str | None = None
) -> commands_pb2.Command:
    req = commands_pb2.ProfileRequest(request_id=request_id, warmup=warmup, runs=runs)
    req.candidates.extend(candidates)
    return commands_pb2.Command(command_id=command_id or new_command_id(), profile=req)


def command_message(device_id: str, command: commands_pb2.Command, *, now: float | None = None) -> tuple[str, bytes]:
    """(topic, payload) for one command to one device."""
    return topics.cmd(device_id), envelope.encode(device_id, now=now, command=command)


def send_command(publish: Callable[..., object], device_id: str, command: commands_pb2.Command) -> object:
    """Publish at QoS 1 with `publish(topic, payload, qos=1)` (CoordinatorLink.publish); returns what it returns."""
    topic, payload = command_message(device_id, command)
    return publish(topic, payload, qos=1)
