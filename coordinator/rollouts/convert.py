"""Rollout rows -> admin.proto messages (Rollout, RolloutDevice, ModelHistoryEntry)."""
from __future__ import annotations

from datetime import datetime

from coordinator.rollouts import states as S
from coordinator.rollouts.repository import RolloutSnapshot, utc
from coordinator.rollouts.spec import RolloutParams
from coordinator.store.rollout_tables import ModelHistoryRow, RolloutDeviceRow, RolloutRow
from edgefleet.v1 import admin_pb2, device_pb2, events_pb2


def _ts(msg, dt: datetime | None) -> None:
    if dt is not None:
        msg.FromDatetime(utc(dt))


def device_progress(d: RolloutDeviceRow) -> admin_pb2.RolloutDevice:
    msg = admin_pb2.RolloutDevice(
        device_id=d.device_id, device_name=d.device_name, wave=d.wave, variant_id=d.variant_id, state=d.state,
        install_state=d.install_state, detail=d.detail, bytes_done=d.bytes_done, bytes_total=d.bytes_total,
        rollback=d.rollback, sequence=d.sequence,
    )
    _ts(msg.updated_at, d.updated_at)
    return msg


def device_plan(d: RolloutDeviceRow) -> admin_pb2.DevicePlan:
    excluded = not d.variant_id
    return admin_pb2.DevicePlan(
        device_id=d.device_id, device_name=d.device_name, hardware_class=d.hardware_class, variant_id=d.variant_id,
        reason=d.choice, excluded=excluded, wave=d.wave,
    )


def rollout(snap: RolloutSnapshot) -> admin_pb2.Rollout:
    """With every device: GetRollout, WatchRollout."""
    msg = summary(snap.rollout, {})
    for d in snap.devices:
        msg.devices.append(device_plan(d))
        msg.progress.append(device_progress(d))
        msg.device_states[d.device_id] = d.state
    for state in S.DEVICE_STATES:
        n = sum(1 for d in snap.devices if d.state == state)
        if n:
            msg.counts[state] = n
    return msg


def summary(r: RolloutRow, counts: dict[str, int]) -> admin_pb2.Rollout:
    """Without the devices, only their counts by state: ListRollouts."""
    params = RolloutParams.from_json(r.params)
    msg = admin_pb2.Rollout(
        id=r.id,
        spec=params.to_proto(f"{r.model}:{r.version}", r.selector),
        state=r.state,
        current_wave=r.current_wave,
        reason=r.reason,
        waves=r.waves,
    )
    for state, n in counts.items():
        if n:
            msg.counts[state] = n
    _ts(msg.created_at, r.created_at)
    _ts(msg.updated_at, r.updated_at)
    _ts(msg.finished_at, r.finished_at)
    return msg


def history_entry(h: ModelHistoryRow) -> admin_pb2.ModelHistoryEntry:
    msg = admin_pb2.ModelHistoryEntry(state=h.state, rollout_id=h.rollout_id, reason=h.reason)
    if h.active:
        msg.model.CopyFrom(device_pb2.ActiveModel.FromString(h.active))
    elif h.state in (events_pb2.INSTALL_STATE_TRIAL, events_pb2.INSTALL_STATE_COMMITTED):
        msg.model.CopyFrom(device_pb2.ActiveModel(model=h.model, version=h.version, variant_id=h.variant_id, sequence=h.sequence))
    _ts(msg.at, h.at)
    return msg
