"""InstallProgress events: what the coordinator learns at every state change."""
from __future__ import annotations

from typing import Mapping

from edgefleet.v1 import device_pb2, events_pb2, manifest_pb2

STATES = {
    "downloading": events_pb2.INSTALL_STATE_DOWNLOADING,
    "verifying": events_pb2.INSTALL_STATE_VERIFYING,
    "staged": events_pb2.INSTALL_STATE_STAGED,
    "trial": events_pb2.INSTALL_STATE_TRIAL,
    "committed": events_pb2.INSTALL_STATE_COMMITTED,
    "rolled_back": events_pb2.INSTALL_STATE_ROLLED_BACK,
    "failed": events_pb2.INSTALL_STATE_FAILED,
}


def active_model_of(manifest: manifest_pb2.ModelManifest | None) -> device_pb2.ActiveModel | None:
    if manifest is None:
        return None
    return device_pb2.ActiveModel(model=manifest.model, version=manifest.version, variant_id=manifest.variant_id,
                                  sha256=manifest.sha256, sequence=manifest.sequence)


def blob_total(manifest: manifest_pb2.ModelManifest) -> int:
    return manifest.size_bytes + (manifest.golden.size_bytes if manifest.golden.sha256 else 0)


def progress(
    manifest: manifest_pb2.ModelManifest | None,
    state: str,
    *,
    active: manifest_pb2.ModelManifest | None,
    reason: str = "",
    figures: Mapping[str, float] | None = None,
    bytes_done: int | None = None,
    rollout_id: str | None = None,
    sequence: int | None = None,
) -> events_pb2.Event:
    """One InstallProgress; `active` is the manifest of the model that runs after this transition."""
    msg = events_pb2.InstallProgress(state=STATES[state], reason=reason)
    if manifest is not None:
        total = blob_total(manifest)
        msg.rollout_id = manifest.rollout_id
        msg.model = manifest.model
        msg.version = manifest.version
        msg.variant_id = manifest.variant_id
        msg.sequence = manifest.sequence
        msg.bytes_total = total
        msg.bytes_done = total if bytes_done is None else bytes_done
    if rollout_id is not None:
        msg.rollout_id = rollout_id
    if sequence is not None:
        msg.sequence = sequence
    for key, value in (figures or {}).items():
        msg.figures[key] = float(value)
    current = active_model_of(active)
    if current is not None:
        msg.active_model.CopyFrom(current)
    return events_pb2.Event(install=msg)


def rejected(command_id: str, reason: str) -> events_pb2.Event:
    return events_pb2.Event(rejected=events_pb2.CommandRejected(command_id=command_id, reason=reason))
