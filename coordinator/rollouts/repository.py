"""The rollout rows in the store (tables in coordinator/store/rollout_tables.py).

Several writers touch one rollout at once: the engine's tick, install events arriving on the ingest
thread (possibly on another replica), and operators pausing or aborting. So every change is a
compare-and-set: an UPDATE whose WHERE clause names the state (or revision) the writer read, and the
writer learns from the row count whether it won. That works the same on SQLite and PostgreSQL and
needs no lock held across a publish. Every change also bumps the rollout's `revision`, which is what
`WatchRollout` follows.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Callable, Iterable, Sequence

from sqlalchemy import bindparam, delete, func, or_, select, update
from sqlalchemy.exc import IntegrityError

from coordinator.rollouts import states as S
from coordinator.store.db import Store
from coordinator.store.rollout_tables import ModelHistoryRow, RolloutClaimRow, RolloutDeviceRow, RolloutRow
from coordinator.store.schema import DeviceRow


_DEV = RolloutDeviceRow.__table__
# A device's rollback that has nothing more to wait for (what an aborting rollout waits for).
_RB_SETTLED = (S.RB_DONE, S.RB_TIMED_OUT, S.RB_REJECTED)
_BUMP = (update(RolloutRow.__table__).where(RolloutRow.__table__.c.id == bindparam("k_rollout"))
         .values(revision=RolloutRow.__table__.c.revision + 1, updated_at=bindparam("v_updated_at")))
_DEVICE_UPDATES: dict[tuple, object] = {}  # (columns, which checks) -> its compare-and-set UPDATE


_R = RolloutRow.__table__
_MARK = select(
    _R.c.state, _R.c.current_wave,
    select(func.count()).where(_DEV.c.rollout_id == _R.c.id, _DEV.c.state.in_(S.DEVICE_DONE)).scalar_subquery(),
    select(func.count()).where(_DEV.c.rollout_id == _R.c.id, _DEV.c.rollback.in_(_RB_SETTLED)).scalar_subquery(),
).where(_R.c.id == bindparam("k_rollout"))


def _device_update(columns: tuple[str, ...], expect: bool, expect_rollback: bool, revision: bool):
    """A device row's compare-and-set UPDATE, built once per shape: building and cache-keying a statement cost
    more CPU than running it (a wave of 50 deploys, 50 rollback orders)."""
    key = (columns, expect, expect_rollback, revision)
    stmt = _DEVICE_UPDATES.get(key)
    if stmt is None:
        unknown = [c for c in columns if c not in _DEV.c]
        if unknown:
            raise ValueError(f"rollout_devices has no column {', '.join(unknown)}")
        conds = [_DEV.c.rollout_id == bindparam("k_rollout"), _DEV.c.device_id == bindparam("k_device")]
        if expect:
            conds.append(_DEV.c.state.in_(bindparam("k_expect", expanding=True)))
        if expect_rollback:
            conds.append(_DEV.c.rollback.in_(bindparam("k_expect_rollback", expanding=True)))
        if revision:
            conds.append(_DEV.c.revision == bindparam("k_revision"))
        values = {c: bindparam("v_" + c) for c in columns}
        values["revision"] = _DEV.c.revision + 1
        stmt = _DEVICE_UPDATES[key] = update(_DEV).where(*conds).values(values)
    return stmt


def utc(dt: datetime | None) -> datetime | None:
    # SQLite hands back naive datetimes: everything stored is UTC.
    if dt is not None and dt.tzinfo is None:
        return dt.replace(tzinfo=timezone.utc)
    return dt


class RolloutNotFound(LookupError):
    pass


class _NotAbortable(Exception):
    pass


class DevicesBusy(RuntimeError):
    """Devices already in an unfinished rollout: {device_id: rollout_id}."""

    def __init__(self, busy: dict[str, str]):
        self.busy = busy
        super().__init__(", ".join(f"{d} (rollout {r})" for d, r in sorted(busy.items())))


@dataclass
class RolloutSnapshot:
    rollout: RolloutRow
    devices: list[RolloutDeviceRow]

    def by_id(self) -> dict[str, RolloutDeviceRow]:
        return {d.device_id: d for d in self.devices}

    def mark(self) -> tuple:
        """RolloutRepository.mark() of this snapshot."""
        r = self.rollout
        return (r.state, r.current_wave, sum(1 for d in self.devices if d.state in S.DEVICE_DONE),
                sum(1 for d in self.devices if d.rollback in _RB_SETTLED))


class RolloutRepository:
    def __init__(self, store: Store, *, clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc)):
        self.store = store
        self.clock = clock

    # --- create -------------------------------------------------------------------------------------

    def create(self, rollout: RolloutRow, devices: Sequence[RolloutDeviceRow], claim: Iterable[str]) -> None:
        """Insert a rollout, its device rows and its claims in one transaction; DevicesBusy when a claimed
        device is in another unfinished rollout (then nothing is written)."""
        claim = list(claim)
        try:
            with self.store.session() as s:
                s.add(rollout)
                s.flush()
                s.add_all(devices)
                for device_id in claim:
                    s.add(RolloutClaimRow(device_id=device_id, rollout_id=rollout.id))
                s.flush()
        except IntegrityError:
            busy = self.claims(claim)
            if not busy:
                raise
            raise DevicesBusy(busy) from None

    def claims(self, device_ids: Iterable[str]) -> dict[str, str]:
        """{device_id: rollout_id} for those of the devices that are in an unfinished rollout."""
        ids = list(device_ids)
        if not ids:
            return {}
        with self.store.session() as s:
            rows = s.execute(select(RolloutClaimRow.device_id, RolloutClaimRow.rollout_id).where(RolloutClaimRow.device_id.in_(ids))).all()
        return {d: r for d, r in rows}

    def release_claims(self, rollout_id: str) -> int:
        with self.store.session() as s:
            return s.execute(delete(RolloutClaimRow).where(RolloutClaimRow.rollout_id == rollout_id)).rowcount

    # --- read ---------------------------------------------------------------------------------------

    def resolve_id(self, ref: str) -> str:
        """An exact rollout id, or a prefix of exactly one."""
        ref = (ref or "").strip()
        if not ref:
            raise RolloutNotFound("empty rollout id")
        with self.store.session() as s:
            if s.get(RolloutRow, ref) is not None:
                return ref
            escaped = ref.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            found = list(s.scalars(select(RolloutRow.id).where(RolloutRow.id.like(escaped + "%", escape="\\")).limit(3)))
        if len(found) == 1:
            return found[0]
        if not found:
            raise RolloutNotFound(f"no rollout with id {ref!r} (edgectl rollout list shows them)")
        raise RolloutNotFound(f"{ref!r} matches several rollouts ({', '.join(found)}, ...): give more of the id")

    def get(self, rollout_id: str) -> RolloutSnapshot:
        with self.store.session() as s:
            row = s.get(RolloutRow, rollout_id)
            if row is None:
                raise RolloutNotFound(f"no rollout with id {rollout_id!r}")
            devices = list(s.scalars(select(RolloutDeviceRow).where(RolloutDeviceRow.rollout_id == rollout_id).order_by(RolloutDeviceRow.position)))
        return RolloutSnapshot(row, devices)

    def rollout(self, rollout_id: str) -> RolloutRow:
        with self.store.session() as s:
            row = s.get(RolloutRow, rollout_id)
        if row is None:
            raise RolloutNotFound(f"no rollout with id {rollout_id!r}")
        return row

    def mark(self, rollout_id: str) -> tuple | None:
        """What the engine acts on besides the clock: the rollout's state and wave, how many of its devices
        finished and how many rollbacks did. Download progress and install steps change none of it."""
        with self.store.session() as s:
            row = s.execute(_MARK, {"k_rollout": rollout_id}).first()
        return tuple(row) if row is not None else None

    def revision(self, rollout_id: str) -> int | None:
        with self.store.session() as s:
            return s.scalar(select(RolloutRow.revision).where(RolloutRow.id == rollout_id))

    def list(self) -> list[tuple[RolloutRow, dict[str, int]]]:
        """Every rollout, newest first, with its devices counted by state (not the rows: a list stays cheap)."""
        with self.store.session() as s:
            rows = list(s.scalars(select(RolloutRow).order_by(RolloutRow.created_at.desc(), RolloutRow.id)))
            counts: dict[str, dict[str, int]] = {}
            q = select(RolloutDeviceRow.rollout_id, RolloutDeviceRow.state, func.count()).group_by(RolloutDeviceRow.rollout_id, RolloutDeviceRow.state)
            for rollout_id, state, n in s.execute(q):
                counts.setdefault(rollout_id, {})[state] = n
        return [(r, counts.get(r.id, {})) for r in rows]

    def unfinished_ids(self) -> list[str]:
        with self.store.session() as s:
            return list(s.scalars(select(RolloutRow.id).where(RolloutRow.state.in_(S.UNFINISHED)).order_by(RolloutRow.created_at, RolloutRow.id)))

    def count_by_state(self) -> dict[str, int]:
        with self.store.session() as s:
            return {state: n for state, n in s.execute(select(RolloutRow.state, func.count()).group_by(RolloutRow.state))}

    def unfinished_device_counts(self) -> dict[str, int]:
        """Devices of unfinished rollouts by state (/metrics)."""
        with self.store.session() as s:
            q = (
                select(RolloutDeviceRow.state, func.count())
                .join(RolloutRow, RolloutRow.id == RolloutDeviceRow.rollout_id)
                .where(RolloutRow.state.in_(S.UNFINISHED))
                .group_by(RolloutDeviceRow.state)
            )
            return {state: n for state, n in s.execute(q)}

    def sent_since(self, rollout_id: str, since: datetime) -> int:
        """Deploys this rollout sent at or after `since` (the rate limit)."""
        with self.store.session() as s:
            q = select(func.count()).select_from(RolloutDeviceRow).where(RolloutDeviceRow.rollout_id == rollout_id, RolloutDeviceRow.sent_at >= since)
            return int(s.scalar(q) or 0)

    def by_command(self, command_id: str) -> tuple[RolloutDeviceRow, str] | None:
        """(device row, "deploy" | "rollback") of a command this engine sent."""
        with self.store.session() as s:
            row = s.scalar(select(RolloutDeviceRow).where(RolloutDeviceRow.command_id == command_id).limit(1))
            if row is not None:
                return row, "deploy"
            row = s.scalar(select(RolloutDeviceRow).where(RolloutDeviceRow.rollback_command_id == command_id).limit(1))
            return (row, "rollback") if row is not None else None

    def online_since(self, device_ids: Iterable[str]) -> dict[str, datetime]:
        """{device_id: when it came online} for those of the devices the registry has online now."""
        ids = list(device_ids)
        if not ids:
            return {}
        with self.store.session() as s:
            rows = s.execute(select(DeviceRow.id, DeviceRow.state_changed_at).where(DeviceRow.id.in_(ids), DeviceRow.state == "online")).all()
        return {d: utc(at) for d, at in rows if at is not None}

    def manifest_floors(self, device_ids: Iterable[str]) -> dict[str, int | None]:
        """{device_id: the highest manifest sequence it reported}, None for a device not in the registry."""
        ids = list(device_ids)
        found: dict[str, int | None] = dict.fromkeys(ids)
        if ids:
            with self.store.session() as s:
                for device_id, seq in s.execute(select(DeviceRow.id, DeviceRow.manifest_sequence).where(DeviceRow.id.in_(ids))):
                    found[device_id] = int(seq or 0)
        return found

    def history(self, device_id: str, limit: int = 100) -> list[ModelHistoryRow]:
        with self.store.session() as s:
            q = select(ModelHistoryRow).where(ModelHistoryRow.device_id == device_id).order_by(ModelHistoryRow.id.desc()).limit(limit)
            return list(reversed(list(s.scalars(q))))

    # --- compare-and-set writes ------------------------------------------------------------------------

    def _bump(self, s, rollout_id: str, now: datetime) -> None:
        s.execute(_BUMP, {"k_rollout": rollout_id, "v_updated_at": now})

    def set_rollout(self, rollout_id: str, expect: Sequence[str], **values) -> bool:
        """Change the rollout row if its state is one of `expect`; False when it was not."""
        now = self.clock()
        with self.store.session() as s:
            res = s.execute(
                update(RolloutRow)
                .where(RolloutRow.id == rollout_id, RolloutRow.state.in_(list(expect)))
                .values(revision=RolloutRow.revision + 1, updated_at=now, **values)
            )
            return res.rowcount == 1

    def set_device(self, rollout_id: str, device_id: str, *, expect: Sequence[str] | None = None, expect_rollback: Sequence[str] | None = None,
                   revision: int | None = None, **values) -> bool:
        """Change one device row if its state (rollback state, revision) is what the caller read."""
        return bool(self.set_devices(rollout_id, [(device_id, values)], expect=expect, expect_rollback=expect_rollback, revision=revision))

    def set_devices(self, rollout_id: str, changes: Sequence[tuple[str, dict]], *, expect: Sequence[str] | None = None,
                    expect_rollback: Sequence[str] | None = None, revision: int | None = None) -> set[str]:
        """set_device() for many devices in one transaction (one commit, one revision bump); returns the ids
        of the devices whose row was in an expected state and changed."""
        now = self.clock()
        done: set[str] = set()
        with self.store.session() as s:
            conn = s.connection()
            for device_id, values in changes:
                columns = tuple(sorted(values)) + ("updated_at",)
                params = {"v_" + c: v for c, v in values.items()}
                params.update(v_updated_at=now, k_rollout=rollout_id, k_device=device_id)
                if expect is not None:
                    params["k_expect"] = list(expect)
                if expect_rollback is not None:
                    params["k_expect_rollback"] = list(expect_rollback)
                if revision is not None:
                    params["k_revision"] = revision
                stmt = _device_update(columns, expect is not None, expect_rollback is not None, revision is not None)
                if conn.execute(stmt, params).rowcount == 1:
                    done.add(device_id)
            if done:
                self._bump(conn, rollout_id, now)
        return done

    def begin_abort(self, rollout_id: str, reason: str, at: datetime) -> bool:
        """running | paused | pending -> aborting, in one transaction: devices not sent yet are skipped, and
        every device that may run (or come to run) the new model gets a rollback to send. Device rows are
        written before the rollout row, the order every writer uses (no deadlock on PostgreSQL)."""
        now = self.clock()
        abortable = (S.PENDING, S.RUNNING, S.PAUSED)
        try:
            with self.store.session() as s:
                return self._abort(s, rollout_id, reason, at, now, abortable)
        except _NotAbortable:
            return False

    def _abort(self, s, rollout_id: str, reason: str, at: datetime, now: datetime, abortable: tuple[str, ...]) -> bool:
        t = RolloutDeviceRow
        if s.scalar(select(RolloutRow.state).where(RolloutRow.id == rollout_id)) not in abortable:
            return False
        s.execute(
            update(t)
            .where(t.rollout_id == rollout_id, t.state == S.PENDING)
            .values(state=S.SKIPPED, detail="not sent: the rollout was aborted", finished_at=at, revision=t.revision + 1, updated_at=now)
        )
        s.execute(
            update(t)
            .where(t.rollout_id == rollout_id, t.state.in_(S.TOUCHED), t.rollback == S.RB_NONE)
            .values(rollback=S.RB_PENDING, revision=t.revision + 1, updated_at=now)
        )
        res = s.execute(
            update(RolloutRow)
            .where(RolloutRow.id == rollout_id, RolloutRow.state.in_(abortable))
            .values(state=S.ABORTING, reason=reason, abort_at=at, revision=RolloutRow.revision + 1, updated_at=now)
        )
        if res.rowcount != 1:
            raise _NotAbortable  # the state moved meanwhile: undo the device rows too
        return True

    def claim_lease(self, rollout_id: str, owner: str, now: datetime, lease_s: float) -> bool:
        """Take or renew the right to drive a rollout: held by `owner`, free, or lapsed."""
        with self.store.session() as s:
            res = s.execute(
                update(RolloutRow)
                .where(
                    RolloutRow.id == rollout_id,
                    or_(RolloutRow.lease_owner == owner, RolloutRow.lease_owner == "", RolloutRow.lease_until.is_(None), RolloutRow.lease_until < now),
                )
                .values(lease_owner=owner, lease_until=now + timedelta(seconds=lease_s))
            )
            return res.rowcount == 1

    def release_lease(self, rollout_id: str, owner: str) -> None:
        with self.store.session() as s:
            s.execute(update(RolloutRow).where(RolloutRow.id == rollout_id, RolloutRow.lease_owner == owner).values(lease_owner="", lease_until=None))
