"""Install events from agents -> the rollout's device rows and the device's model history.

An InstallProgress names its rollout and the sequence of the manifest (or rollback order) it is
about. It moves the device row only when that sequence is the deploy this rollout sent the device
(or the rollback order it sent after an abort), and only forward: for one sequence, states rank
downloading < verifying < staged < trial < committed < failed < rolled_back, so a QoS 1 redelivery
or a late older event changes nothing. Model history rows are unique by envelope message id.
A CommandRejected (bad signature, sequence not above the device's floor) ends the command it names.

On a running coordinator the ingest handler only checks the device is known and queues; one worker
applies whatever has queued in one transaction, so chunk requests (the same ingest thread) never wait
behind a fleet's worth of install reports. A transaction costs about a millisecond of CPU whatever it
holds, and a fleet's reports trickle in one at a time: so a batch of progress (downloading, verifying,
staged, trial) waits up to `coalesce_s` for company, while a batch holding an install's end (committed,
failed, rolled back: what the engine waits for) is applied at once. The worker keeps the rows it read
or wrote: a compare-and-set on the row's revision tells when another writer changed one meanwhile
(then it is read again), so most events cost their UPDATE alone, not a SELECT too.
"""
from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from types import SimpleNamespace
from typing import Callable

from sqlalchemy import bindparam, select, update

from coordinator import acks
from coordinator.ingest import RateLimitedLog
from coordinator.rollouts import states as S
from coordinator.rollouts.repository import RolloutRepository
from coordinator.store.devices import DeviceRegistry
from coordinator.store.known import KnownDevices
from coordinator.store.rollout_tables import ModelHistoryRow, RolloutDeviceRow, RolloutRow
from coordinator.store.schema import DeviceRow
from coordinator.transfer.upsert import dialect_insert
from edgefleet.v1 import events_pb2

log = logging.getLogger(__name__)
_ATTEMPTS = 8
_STOP = object()
COALESCE_S = 0.05  # longest a batch of progress events waits for more before it is applied
_MAX_ROWS = 100_000  # rows the worker keeps; beyond, it forgets them all and reads them again
# Install states the engine waits for (a device finished, or its rollback did): applied without waiting.
_ENDS = frozenset(s for s, state in S.DEVICE_STATE_OF.items() if state in S.DEVICE_DONE)

# Statements built once: building and cache-keying a statement per event cost more CPU than running it
# (a fleet reports ~8 events per device and install). Core on the session's connection, not the ORM.
_DEV = RolloutDeviceRow.__table__
# What merge() and the log read of a device row (not the stored commands).
_ROWS = select(_DEV.c.device_id, _DEV.c.device_name, _DEV.c.state, _DEV.c.install_state, _DEV.c.sequence, _DEV.c.bytes_done, _DEV.c.bytes_total,
               _DEV.c.rollback, _DEV.c.rollback_sequence, _DEV.c.revision).where(_DEV.c.rollout_id == bindparam("k_rollout"), _DEV.c.device_id.in_(bindparam("k_devices", expanding=True)))
_BUMP = (update(RolloutRow.__table__).where(RolloutRow.__table__.c.id == bindparam("k_rollout"))
         .values(revision=RolloutRow.__table__.c.revision + 1, updated_at=bindparam("v_updated_at")))
_SETS: dict[tuple[str, ...], object] = {}       # the columns an event changes -> its compare-and-set UPDATE
_HISTORY_INSERTS: dict[str, object] = {}        # dialect -> INSERT .. ON CONFLICT (message_id) DO NOTHING


def _set_stmt(columns: tuple[str, ...]):
    stmt = _SETS.get(columns)
    if stmt is None:
        stmt = _SETS[columns] = (update(_DEV).where(_DEV.c.rollout_id == bindparam("k_rollout"), _DEV.c.device_id == bindparam("k_device"),
                                                    _DEV.c.revision == bindparam("k_revision"))
                                 .values({c: bindparam("v_" + c) for c in columns}))
    return stmt


def merge(row, p: events_pb2.InstallProgress, at: datetime) -> dict | None:
    """The column values an event changes on a device row, or None when it changes nothing."""
    if p.sequence and p.sequence == row.sequence:
        new, cur = S.INSTALL_RANK.get(p.state, 0), S.INSTALL_RANK.get(row.install_state, 0)
        state = S.DEVICE_STATE_OF.get(p.state)
        if state is None or new < cur:
            return None
        if new == cur:
            # The same state again: only download progress can move (quarters are reported as they come).
            if p.bytes_done > row.bytes_done and state == S.INSTALLING:
                return {"bytes_done": p.bytes_done, "last_event_at": at}
            return None
        values = {"install_state": p.state, "state": state, "last_event_at": at, "bytes_total": p.bytes_total or row.bytes_total}
        values["bytes_done"] = max(p.bytes_done, row.bytes_done) if state == S.INSTALLING else (p.bytes_done or row.bytes_done)
        if p.reason or state != S.INSTALLING:
            values["detail"] = p.reason
        if state in S.DEVICE_DONE:
            values["finished_at"] = at
        if p.state == events_pb2.INSTALL_STATE_ROLLED_BACK and row.rollback in S.RB_OPEN:
            values["rollback"] = S.RB_DONE
        return values
    if p.sequence and p.sequence == row.rollback_sequence and p.state == events_pb2.INSTALL_STATE_ROLLED_BACK:
        if row.rollback == S.RB_DONE and row.state == S.ROLLED_BACK:
            return None
        # The order's own sequence: the agent had nothing of this rollout active (the deploy never came,
        # or was cancelled by the order): it runs what it ran before.
        values = {"rollback": S.RB_DONE, "last_event_at": at, "detail": p.reason}
        if row.state != S.FAILED:
            values.update(state=S.ROLLED_BACK, install_state=p.state, finished_at=at)
        return values
    return None


def _history_reason(p: events_pb2.InstallProgress) -> str:
    what = f"{p.model}:{p.version} {p.variant_id}" if p.model else "the rollout's model"
    word = S.install_word(p.state)
    text = {"trial": f"activated {what}, on trial", "committed": f"committed {what}", "failed": f"install of {what} failed",
            "rolled_back": f"rolled back {what}"}.get(word, f"{word} {what}")
    if p.reason:
        text += f": {p.reason}"
    return text


@dataclass
class _Pending:
    device_id: str
    message_id: str
    progress: events_pb2.InstallProgress
    at: datetime
    ack: Callable[[], None] | None = None  # the PUBACK, sent once the event is applied (coordinator/acks.py)


class InstallEvents:
    """Applies install events to the store. Started (`start()`), the ingest handler only queues and a worker
    applies whatever has arrived in one transaction: ingest stays free for chunk requests while a fleet
    reports, and a burst of events costs one commit. Not started, each event is applied at once (tests)."""

    def __init__(self, repo: RolloutRepository, *, on_change: Callable[[str, bool], None] | None = None, limiter: RateLimitedLog | None = None,
                 clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc), batch: int = 500, known_ttl_s: float = 60.0,
                 coalesce_s: float = COALESCE_S):
        """`on_change(rollout_id, settled)`: a device row changed; settled when it finished or its rollback did
        (what the engine waits for), not for download progress. `coalesce_s`: how long the worker lets a batch
        of progress events wait for more (0: apply whatever has queued at once)."""
        if coalesce_s < 0 or batch < 1:
            raise ValueError(f"coalesce_s must be >= 0 and batch >= 1 (got {coalesce_s}, {batch})")
        self.repo = repo
        self.store = repo.store
        self.on_change = on_change or (lambda rollout_id, settled: None)
        self.limiter = limiter or RateLimitedLog()
        self.clock = clock
        self.batch = batch
        self.known_ttl_s = known_ttl_s
        self.coalesce_s = coalesce_s
        self.batches = 0  # transactions applied (tests, and a figure to compare)
        self.known = KnownDevices(DeviceRegistry(self.store), known_ttl_s=known_ttl_s)
        # (rollout id, device id) -> the row as last read or written by a committed batch (see the docstring).
        self._rows: dict[tuple[str, str], SimpleNamespace] = {}
        self._apply_lock = threading.Lock()
        self._queue: queue.Queue = queue.Queue()
        self._thread: threading.Thread | None = None
        self._idle = threading.Condition()
        self._pending = 0

    # --- life cycle --------------------------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._work, name="rollout-events", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Apply what is queued, then stop; later events are applied at once on the caller's thread."""
        thread, self._thread = self._thread, None
        if thread is not None:
            self._queue.put(_STOP)
            thread.join(timeout)

    def wait_idle(self, timeout: float) -> bool:
        with self._idle:
            return self._idle.wait_for(lambda: self._pending == 0, timeout)

    # --- ingest handlers -------------------------------------------------------------------------------

    def handle_install(self, env) -> bool:
        """Ingest handler for Event.install; False for an unknown device."""
        if not self._is_known(env.device_id):
            return False
        item = _Pending(env.device_id, env.message_id, env.event.install, self.clock())
        if self._thread is None:
            self.apply_batch([item])
        else:
            # Queued, not yet stored: the broker keeps the event until it is applied (a kill -9 in between
            # gets it redelivered, not lost).
            item.ack = acks.defer()
            with self._idle:
                self._pending += 1
            self._queue.put(item)
        return True

    def handle_rejected(self, env) -> bool:
        """Ingest handler for Event.rejected; False for an unknown device."""
        return self.reject(env.device_id, env.event.rejected.command_id, env.event.rejected.reason) != "unknown_device"

    def _is_known(self, device_id: str) -> bool:
        # The fleet's ids in one query per TTL: a rollout's first events (a wave's 'downloading', all at
        # once) would otherwise cost a query each on the ingest thread, ahead of the wave's ready requests.
        return device_id in self.known

    def _take(self) -> list:
        """The next batch: whatever has queued, and while it is progress only, what comes within coalesce_s."""
        first = self._queue.get()
        items = [first]
        urgent = first is _STOP or first.progress.state in _ENDS
        deadline = None
        while len(items) < self.batch:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                if urgent or self.coalesce_s <= 0:
                    break
                if deadline is None:
                    deadline = time.monotonic() + self.coalesce_s
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                try:
                    item = self._queue.get(timeout=left)
                except queue.Empty:
                    break
            items.append(item)
            urgent = urgent or item is _STOP or item.progress.state in _ENDS
        return items

    def _work(self) -> None:
        while True:
            items = self._take()
            stop = any(i is _STOP for i in items)
            items = [i for i in items if i is not _STOP]
            try:
                if items:
                    self.apply_batch(items)
            except Exception:  # noqa: BLE001 - the store blinked: apply them one by one, each on its own
                log.exception("applying %d install events at once failed; retrying one by one", len(items))
                for i in items:
                    try:
                        self.apply_batch([i])
                    except Exception:  # noqa: BLE001
                        log.exception("install event from %s (rollout %s) could not be applied", i.device_id, i.progress.rollout_id)
            finally:
                # Acked after the attempt even when an event could not be applied (logged above): an
                # unacked message would hold back every PUBACK after it (they go out in order). The
                # batch's PUBACKs go to paho as one write.
                try:
                    acks.complete_all(i.ack for i in items)
                except Exception:  # noqa: BLE001 - a Delivery never raises; another callback must not stop the worker
                    log.exception("acknowledging %d install events failed", len(items))
                with self._idle:
                    self._pending -= len(items)
                    self._idle.notify_all()
            if stop:
                return

    # --- the work --------------------------------------------------------------------------------------

    def apply(self, device_id: str, message_id: str, p: events_pb2.InstallProgress) -> str:
        """Apply one event now: unknown_device | updated | unchanged | not_ours."""
        if not self._is_known(device_id):
            return "unknown_device"
        return self.apply_batch([_Pending(device_id, message_id, p, self.clock())])[0]

    def apply_batch(self, items: list[_Pending]) -> list[str]:
        """Apply events in arrival order in one transaction; per event: updated | unchanged | not_ours."""
        with self._apply_lock:
            outcomes, changed, rows = self._apply(items)
            # Committed: the batch's copies are what the store holds now (until another writer bumps a revision).
            if len(self._rows) + len(rows) > _MAX_ROWS:
                self._rows.clear()
            self._rows.update(rows)
            self.batches += 1
        for rollout_id, settled in changed.items():
            self.on_change(rollout_id, settled)
        return outcomes

    def _apply(self, items: list[_Pending]) -> tuple[list[str], dict[str, bool], dict[tuple[str, str], SimpleNamespace]]:
        outcomes: list[str] = []
        changed: dict[str, bool] = {}  # rollout id -> settled
        # Working copies: the kept rows change only once the transaction committed.
        rows: dict[tuple[str, str], SimpleNamespace | None] = {}
        fresh: set[tuple[str, str]] = set()  # read in this transaction
        with self.store.engine.begin() as conn:
            history = [self._history_values(item) for item in items if item.progress.state in S.HISTORY_STATES]
            if history:
                conn.execute(self._history_insert(conn), history)
            # Rows not kept from an earlier batch: one SELECT per rollout.
            wanted: dict[str, set[str]] = {}
            for item in items:
                key = (item.progress.rollout_id, item.device_id)
                if key[0] and key not in rows:
                    kept = self._rows.get(key)
                    if kept is not None:
                        rows[key] = SimpleNamespace(**vars(kept))
                    else:
                        wanted.setdefault(key[0], set()).add(item.device_id)
            for rollout_id, devices in wanted.items():
                fresh.update(self._read_rows(conn, rollout_id, devices, into=rows))
            for item in items:
                p, device_id = item.progress, item.device_id
                if not p.rollout_id:
                    outcomes.append("not_ours")
                    continue
                key = (p.rollout_id, device_id)
                outcome = "unchanged"
                for _ in range(_ATTEMPTS):
                    if key not in rows:
                        fresh.update(self._read_rows(conn, p.rollout_id, {device_id}, into=rows))
                    row = rows[key]
                    if row is None:
                        self.limiter.warning((device_id, "rollout:unknown"), "install event from %s for rollout %r, which has no such device", device_id, p.rollout_id)
                        outcome = "not_ours"
                        break
                    values = merge(row, p, item.at)
                    if values is None:
                        if key not in fresh:
                            del rows[key]  # a kept row says nothing to do: ask the store's (it may have moved on)
                            continue
                        break
                    values.update(revision=row.revision + 1, updated_at=item.at)
                    columns = tuple(sorted(values))
                    params = {"v_" + c: values[c] for c in columns}
                    params.update(k_rollout=p.rollout_id, k_device=device_id, k_revision=row.revision)
                    res = conn.execute(_set_stmt(columns), params)
                    if res.rowcount == 1:
                        for k, v in values.items():
                            setattr(row, k, v)
                        settled = values.get("state") in S.DEVICE_DONE or values.get("rollback") == S.RB_DONE
                        changed[p.rollout_id] = changed.get(p.rollout_id, False) or settled
                        if values.get("state") in (S.FAILED, S.ROLLED_BACK):
                            log.info("rollout %s: %s %s: %s", p.rollout_id, row.device_name or device_id, values["state"], p.reason or "no reason given")
                        outcome = "updated"
                        break
                    del rows[key]  # another writer (the engine, an operator, a replica) changed the row: read it again
                else:
                    raise RuntimeError(f"install event from {device_id}: the row of rollout {p.rollout_id} kept changing under it")
                outcomes.append(outcome)
            if changed:
                now = self.clock()
                conn.execute(_BUMP, [{"k_rollout": rollout_id, "v_updated_at": now} for rollout_id in changed])
        return outcomes, changed, {k: v for k, v in rows.items() if v is not None}

    @staticmethod
    def _read_rows(conn, rollout_id: str, devices: set[str], *, into: dict) -> set[tuple[str, str]]:
        """Read the devices' rows into `into` (None for a device the rollout does not have); returns their keys."""
        keys = set()
        for d in devices:
            into[(rollout_id, d)] = None
            keys.add((rollout_id, d))
        for m in conn.execute(_ROWS, {"k_rollout": rollout_id, "k_devices": sorted(devices)}).mappings():
            into[(rollout_id, m["device_id"])] = SimpleNamespace(**m)
        return keys

    @staticmethod
    def _history_insert(conn):
        name = conn.dialect.name
        stmt = _HISTORY_INSERTS.get(name)
        if stmt is None:
            stmt = _HISTORY_INSERTS[name] = dialect_insert(conn, ModelHistoryRow.__table__).on_conflict_do_nothing(index_elements=["message_id"])
        return stmt

    @staticmethod
    def _history_values(item: _Pending) -> dict:
        p = item.progress
        return dict(
            message_id=item.message_id or f"{item.device_id}:{p.sequence}:{p.state}",
            device_id=item.device_id,
            at=item.at,
            state=p.state,
            rollout_id=p.rollout_id,
            sequence=p.sequence,
            model=p.model,
            version=p.version,
            variant_id=p.variant_id,
            active=p.active_model.SerializeToString() if p.HasField("active_model") else None,
            reason=_history_reason(p),
        )

    def reject(self, device_id: str, command_id: str, reason: str) -> str:
        with self.store.session() as s:
            if s.get(DeviceRow, device_id) is None:
                return "unknown_device"
        found = self.repo.by_command(command_id) if command_id else None
        if found is None or found[0].device_id != device_id:
            return "not_ours"
        row, kind = found
        at = self.clock()
        if kind == "deploy":
            ok = self.repo.set_device(row.rollout_id, device_id, expect=(S.SENT, S.INSTALLING, S.TIMED_OUT), state=S.FAILED,
                                      detail=f"the agent refused the deploy: {reason}", finished_at=at, last_event_at=at)
        else:
            ok = self.repo.set_device(row.rollout_id, device_id, expect_rollback=S.RB_OPEN, rollback=S.RB_REJECTED,
                                      detail=f"the agent refused the rollback order: {reason}", last_event_at=at)
        if ok:
            log.warning("rollout %s: %s refused the %s: %s", row.rollout_id, row.device_name or device_id, kind, reason)
            self.on_change(row.rollout_id, True)
            return "updated"
        return "unchanged"
