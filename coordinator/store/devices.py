"""The device registry: registration, enrollment tokens, status and hardware as reported over MQTT."""
from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Callable

from google.protobuf.message import Message
from sqlalchemy import delete, func, or_, select
from sqlalchemy.exc import IntegrityError

from coordinator.store.db import Store
from coordinator.store.schema import DeviceRow, EnrollmentTokenRow, HardwareHistoryRow, StatusHistoryRow
from edgefleet.labels import check_name, matches
from edgefleet.v1 import hardware_pb2

# Fields that move on every hello: they update the current profile but are not "changes" worth a history row.
VOLATILE_PATHS = frozenset({"memory.available_bytes", "storage.free_bytes", "storage.total_bytes", "os.hostname"})


class RegistryError(ValueError):
    """Base for registry errors; the message is safe to show to an operator."""


class DeviceExists(RegistryError):
    pass


class DeviceNotFound(RegistryError):
    pass


class TokenRejected(RegistryError):
    pass


@dataclass(frozen=True)
class Registration:
    device: DeviceRow
    token: str
    expires_at: datetime


def _utc(dt: datetime | None) -> datetime | None:
    # SQLite hands back naive datetimes: everything stored is UTC.
    if dt is not None and dt.tzinfo is None:
        return dt.replace(tzinfo=timezone.utc)
    return dt


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def changed_paths(old: Message, new: Message, prefix: str = "") -> list[str]:
    """Dotted paths of the fields that differ between two messages of one type."""
    out: list[str] = []
    for field in new.DESCRIPTOR.fields:
        path = prefix + field.name
        a, b = getattr(old, field.name), getattr(new, field.name)
        if field.message_type is not None and not field.is_repeated:
            if old.HasField(field.name) or new.HasField(field.name):
                out += changed_paths(a, b, path + ".")
        elif (list(a) != list(b)) if field.is_repeated else (a != b):
            out.append(path)
    return out


class DeviceRegistry:
    def __init__(self, store: Store, *, clock=lambda: datetime.now(timezone.utc)):
        self.store = store
        self.clock = clock

    # -- admin side

    def register(self, name: str, labels: dict[str, str], token_ttl_s: int) -> Registration:
        check_name(name)
        now = self.clock()
        token = secrets.token_urlsafe(24)
        device_id = "d-" + uuid.uuid4().hex[:12]
        expires = now + timedelta(seconds=token_ttl_s)
        try:
            with self.store.session() as s:
                if s.scalar(select(DeviceRow.id).where(DeviceRow.name == name)) is not None:
                    raise DeviceExists(f"a device named {name!r} already exists")
                row = DeviceRow(id=device_id, name=name, labels=dict(labels), state="registered", created_at=now, mqtt_username=device_id)
                s.add(row)
                s.flush()
                s.add(EnrollmentTokenRow(token_sha256=_token_hash(token), device_id=device_id, expires_at=expires))
        except IntegrityError:
            # Two registrations of one name raced: the unique index decided.
            raise DeviceExists(f"a device named {name!r} already exists") from None
        return Registration(row, token, expires)

    def get(self, ref: str) -> DeviceRow:
        with self.store.session() as s:
            row = s.scalar(select(DeviceRow).where(or_(DeviceRow.id == ref, DeviceRow.name == ref)))
            if row is None:
                raise DeviceNotFound(f"no device with id or name {ref!r}")
            return row

    def find(self, device_id: str) -> DeviceRow | None:
        with self.store.session() as s:
            return s.get(DeviceRow, device_id)

    def list(self, selector: dict[str, str] | None = None) -> list[DeviceRow]:
        with self.store.session() as s:
            rows = list(s.scalars(select(DeviceRow).order_by(DeviceRow.name)))
        # Label matching in Python keeps one code path for SQLite and PostgreSQL JSON.
        return [r for r in rows if matches(r.labels or {}, selector or {})]

    def label(self, ref: str, set_: dict[str, str], remove: list[str]) -> DeviceRow:
        with self.store.session() as s:
            row = s.scalar(select(DeviceRow).where(or_(DeviceRow.id == ref, DeviceRow.name == ref)))
            if row is None:
                raise DeviceNotFound(f"no device with id or name {ref!r}")
            labels = dict(row.labels or {})
            for k in remove:
                labels.pop(k, None)
            labels.update(set_)
            row.labels = labels
            return row

    def remove(self, ref: str) -> DeviceRow:
        with self.store.session() as s:
            row = s.scalar(select(DeviceRow).where(or_(DeviceRow.id == ref, DeviceRow.name == ref)))
            if row is None:
                raise DeviceNotFound(f"no device with id or name {ref!r}")
            for table in (EnrollmentTokenRow, HardwareHistoryRow, StatusHistoryRow):
                s.execute(delete(table).where(table.device_id == row.id))
            s.delete(row)
            return row

    def count_by_state(self) -> dict[str, int]:
        with self.store.session() as s:
            rows = s.execute(select(DeviceRow.state, func.count()).group_by(DeviceRow.state)).all()
        return {state: n for state, n in rows}

    def hardware_history(self, device_id: str) -> list[HardwareHistoryRow]:
        with self.store.session() as s:
            return list(s.scalars(select(HardwareHistoryRow).where(HardwareHistoryRow.device_id == device_id).order_by(HardwareHistoryRow.id)))

    def status_history(self, device_id: str, limit: int = 50) -> list[StatusHistoryRow]:
        with self.store.session() as s:
            q = select(StatusHistoryRow).where(StatusHistoryRow.device_id == device_id).order_by(StatusHistoryRow.id.desc()).limit(limit)
            return list(reversed(list(s.scalars(q))))

    # -- enrollment

    def enroll(
        self,
        token: str,
        hardware: hardware_pb2.HardwareProfile | None,
        agent_version: str,
        before_commit: Callable[[DeviceRow], None] = lambda row: None,
    ) -> DeviceRow:
        """Exchange a one-time token for the device; the token is spent in the same transaction.

        `before_commit` runs inside the transaction (broker provisioning): if it raises, the token
        stays unspent so the device can try again."""
        now = self.clock()
        with self.store.session() as s:
            tok = s.get(EnrollmentTokenRow, _token_hash(token or ""), with_for_update=True)
            if tok is None:
                raise TokenRejected("unknown enrollment token")
            if tok.used_at is not None:
                raise TokenRejected("enrollment token was already used")
            if _utc(tok.expires_at) <= now:
                raise TokenRejected(f"enrollment token expired at {_utc(tok.expires_at).isoformat()}")
            tok.used_at = now
            row = s.get(DeviceRow, tok.device_id)
            row.enrolled_at = now
            row.agent_version = agent_version
            if hardware is not None and hardware.ByteSize():
                self._set_hardware(s, row, hardware, now)
            before_commit(row)
            return row

    # -- what devices report

    def apply_status(self, device_id: str, state: str, reason: str = "") -> bool:
        """Record a status message; False when the device is unknown."""
        now = self.clock()
        with self.store.session() as s:
            row = s.get(DeviceRow, device_id)
            if row is None:
                return False
            if row.state != state:
                row.state = state
                row.state_changed_at = now
                s.add(StatusHistoryRow(device_id=device_id, at=now, state=state, reason=reason))
            if state == "online":
                row.last_seen = now
            return True

    def apply_hello(
        self,
        device_id: str,
        hardware: hardware_pb2.HardwareProfile,
        agent_version: str,
        active_model: bytes | None = None,
        manifest_sequence: int = 0,
    ) -> bool:
        now = self.clock()
        with self.store.session() as s:
            row = s.get(DeviceRow, device_id)
            if row is None:
                return False
            self._set_hardware(s, row, hardware, now)
            row.agent_version = agent_version or row.agent_version
            row.last_seen = now
            if active_model:
                row.active_model = active_model
            row.manifest_sequence = max(row.manifest_sequence or 0, manifest_sequence)
            return True

    def touch(self, device_id: str) -> bool:
        with self.store.session() as s:
            row = s.get(DeviceRow, device_id)
            if row is None:
                return False
            row.last_seen = self.clock()
            return True

    @staticmethod
    def _set_hardware(s, row: DeviceRow, hardware: hardware_pb2.HardwareProfile, now: datetime) -> None:
        if row.hardware:
            old = hardware_pb2.HardwareProfile.FromString(row.hardware)
            changed = [p for p in changed_paths(old, hardware) if p not in VOLATILE_PATHS]
        else:
            changed = ["*"]  # first profile
        blob = hardware.SerializeToString(deterministic=True)
        if changed:
            s.add(HardwareHistoryRow(device_id=row.id, at=now, changed=changed, hardware=blob))
        row.hardware = blob
        row.hardware_class = hardware.hardware_class
