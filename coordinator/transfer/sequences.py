"""The per-device sequence counter: every manifest and rollback order gets the next number.

The agent refuses a manifest whose sequence is lower than one it already accepted, so the counter
must never repeat or go back, even with several coordinator replicas issuing at once: one
INSERT ... ON CONFLICT DO UPDATE ... RETURNING statement increments and reads it atomically on both
SQLite (the write lock) and PostgreSQL (the row lock).
"""
from __future__ import annotations

from sqlalchemy import bindparam, case, select
from sqlalchemy.orm import Session

from coordinator.store.db import Store
from coordinator.store.rollout_tables import DeviceSequenceRow
from coordinator.transfer.upsert import dialect_insert


_NEXT: dict[str, object] = {}  # backend -> the statement, built once (building one cost more CPU than running it)


def _next_statement(session: Session):
    name = session.get_bind().dialect.name
    stmt = _NEXT.get(name)
    if stmt is None:
        row = DeviceSequenceRow.__table__.c
        floor = bindparam("floor")
        stmt = _NEXT[name] = (
            dialect_insert(session, DeviceSequenceRow.__table__)
            .values(device_id=bindparam("device_id"), last_sequence=bindparam("first"))
            .on_conflict_do_update(
                index_elements=[row.device_id],
                set_={"last_sequence": case((row.last_sequence > floor, row.last_sequence), else_=floor) + 1},
            )
            .returning(row.last_sequence)
        )
    return stmt


def next_sequence(session: Session, device_id: str, *, floor: int = 0) -> int:
    """Allocate the next sequence for a device inside the caller's transaction; always > floor.

    `floor` is the highest sequence the device says it accepted (Hello.last_manifest_sequence): a
    coordinator whose store was restored from an old backup must still issue numbers above it.
    """
    if floor < 0:
        raise ValueError(f"sequence floor must be >= 0, got {floor}")
    # On the session's connection: Core, not the ORM's bulk-insert path (a wave runs this once per device).
    conn = session.connection()
    return int(conn.execute(_next_statement(session), {"device_id": device_id, "floor": floor, "first": floor + 1}).scalar_one())


def current_sequence(session: Session, device_id: str) -> int:
    """The last sequence issued to a device; 0 when none was."""
    value = session.scalar(select(DeviceSequenceRow.last_sequence).where(DeviceSequenceRow.device_id == device_id))
    return int(value or 0)


class SequenceCounter:
    """next_sequence / current_sequence in their own transactions."""

    def __init__(self, store: Store):
        self.store = store

    def next(self, device_id: str, *, floor: int = 0) -> int:
        with self.store.session() as s:
            return next_sequence(s, device_id, floor=floor)

    def current(self, device_id: str) -> int:
        with self.store.session() as s:
            return current_sequence(s, device_id)
