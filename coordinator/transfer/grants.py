"""Which blobs each device may fetch: a model artifact or golden set becomes fetchable by a device
when a manifest naming it is issued to that device, and by no one else."""
from __future__ import annotations

from datetime import datetime
from typing import Sequence

from sqlalchemy import bindparam, delete, select
from sqlalchemy.orm import Session

from coordinator.store.db import Store
from coordinator.store.rollout_tables import BlobGrantRow
from coordinator.transfer.upsert import dialect_insert


_T = BlobGrantRow.__table__
_INSERTS: dict[str, object] = {}  # backend -> INSERT .. ON CONFLICT DO NOTHING, built once


def grant(session: Session, device_id: str, sha256: str, *, sequence: int, at: datetime) -> None:
    """Record (idempotently) that the device may fetch the blob, inside the caller's transaction."""
    grant_many(session, [(device_id, sha256, sequence)], at=at)


def grant_many(session: Session, grants: Sequence[tuple[str, str, int]], *, at: datetime) -> None:
    """grant() for many (device_id, sha256, sequence) in one statement (a wave's manifests)."""
    if not grants:
        return
    name = session.get_bind().dialect.name
    stmt = _INSERTS.get(name)
    if stmt is None:
        stmt = _INSERTS[name] = dialect_insert(session, _T).on_conflict_do_nothing(index_elements=["device_id", "sha256"])
    session.connection().execute(stmt, [{"device_id": d, "sha256": sha, "sequence": seq, "granted_at": at} for d, sha, seq in grants])


# Built once, run on a plain connection: asked on the ingest thread for every chunk request and ready.
_ALLOWED = select(_T.c.sequence).where(_T.c.device_id == bindparam("device_id"), _T.c.sha256 == bindparam("sha256")).limit(1)


class BlobGrants:
    def __init__(self, store: Store):
        self.store = store

    def allowed(self, device_id: str, sha256: str) -> bool:
        with self.store.engine.connect() as conn:
            return conn.execute(_ALLOWED, {"device_id": device_id, "sha256": sha256}).first() is not None

    def for_device(self, device_id: str) -> list[str]:
        with self.store.session() as s:
            return list(s.scalars(select(BlobGrantRow.sha256).where(BlobGrantRow.device_id == device_id).order_by(BlobGrantRow.granted_at)))

    def revoke_device(self, device_id: str) -> int:
        """Forget every grant of a device (it was removed); returns how many there were."""
        with self.store.session() as s:
            return s.execute(delete(BlobGrantRow).where(BlobGrantRow.device_id == device_id)).rowcount
