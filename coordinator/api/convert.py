"""Store rows -> protobuf messages for the admin API."""
from __future__ import annotations

from datetime import datetime, timezone

from google.protobuf.timestamp_pb2 import Timestamp

from coordinator.store.schema import DeviceRow, HardwareHistoryRow
from edgefleet.v1 import admin_pb2, device_pb2, hardware_pb2

STATES = {
    "registered": device_pb2.DEVICE_STATE_REGISTERED,
    "online": device_pb2.DEVICE_STATE_ONLINE,
    "offline": device_pb2.DEVICE_STATE_OFFLINE,
    "stopped": device_pb2.DEVICE_STATE_STOPPED,
}


def ts(dt: datetime | None) -> Timestamp | None:
    if dt is None:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    t = Timestamp()
    t.FromDatetime(dt)
    return t


def device(row: DeviceRow) -> admin_pb2.Device:
    msg = admin_pb2.Device(
        id=row.id,
        name=row.name,
        labels=row.labels or {},
        state=STATES.get(row.state, device_pb2.DEVICE_STATE_UNSPECIFIED),
        agent_version=row.agent_version or "",
    )
    for field, value in (("last_seen", row.last_seen), ("created_at", row.created_at), ("enrolled_at", row.enrolled_at)):
        t = ts(value)
        if t is not None:
            getattr(msg, field).CopyFrom(t)
    if row.hardware:
        msg.hardware.ParseFromString(row.hardware)
    if row.active_model:
        msg.active_model.ParseFromString(row.active_model)
    return msg


def hardware_change(row: HardwareHistoryRow) -> admin_pb2.ProfileChange:
    change = admin_pb2.ProfileChange(changed=list(row.changed or []), hardware=hardware_pb2.HardwareProfile.FromString(row.hardware))
    change.at.CopyFrom(ts(row.at))
    return change
