"""The telemetry batch writer: one thread that turns queued reports into rows, many per transaction.

Ingest (the link's single worker thread) only validates and queues; this thread does the store work:

  - a batch closes at `batch_size` rows' worth of reports or `flush_interval_s` after its first report; a
    writer that is behind (more reports queued when its batch is full) takes what is queued along, up to
    CATCH_UP times `batch_size` rows: catching up costs less per row, and keeping up stays as prompt;
  - one transaction per batch: the samples (INSERT ... ON CONFLICT DO NOTHING on the report's message id,
    so a QoS 1 redelivery stores nothing), the newest window per device and model version
    (telemetry_latest, an upsert that only moves forward), and the devices' last_seen;
  - the store down or locked: the batch is retried with backoff and the queue fills; when it is full,
    ingest waits (backpressure to the broker) rather than drop anything; a store still down when stop()
    runs out of time loses what is queued, counted as store_unavailable, so shutdown never hangs (a
    report written directly, with no writer running, waits at most `direct_retry_s`);
  - a batch the store refuses for its content is retried report by report, and only the reports that
    still fail are dropped (counted as bad_telemetry, logged);
  - between batches, every `maintenance_interval_s`, the retention job runs (see retention.py) in this
    same thread, so SQLite sees one writer;
  - stop() writes everything queued before returning; a report submitted after stop() is written
    synchronously by the caller (the link may still deliver while the service shuts down);
  - a report's `on_stored` (the link's PUBACK, see coordinator/acks.py) is called after its transaction
    commits, or when it is dropped for good (refused for its content); never for one lost to a store that
    stayed down through stop(): the broker sends that one again.
"""
from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict, deque
from datetime import datetime, timezone
from typing import Any, Callable

from sqlalchemy import exc as sa_exc
from sqlalchemy import update

from coordinator import acks
from coordinator.ingest import RateLimitedLog
from coordinator.metrics import CoordinatorMetrics
from coordinator.store.db import Store
from coordinator.store.schema import DeviceRow
from coordinator.store.telemetry_tables import TelemetryLatestRow, TelemetrySampleRow
from coordinator.telemetry.dialects import BulkInsert, TimeParams
from coordinator.telemetry.layouts import BucketLayouts
from coordinator.telemetry.records import Report, sample_rows

log = logging.getLogger(__name__)

_STOP = object()
# A writer that is behind (reports queued when its batch is full) writes up to this many batches' rows in one
# transaction: SQLite's cost per row falls with the batch (500 rows: ~24 us, 2,000: ~17 us here).
CATCH_UP = 4
_KEY = ("device_id", "message_id", "model", "version", "variant_id")
_LATEST_KEY = ("device_id", "model", "version", "variant_id")


class _HasDuplicates(Exception):
    """A batch wrote fewer rows than it has: write it again, finding out which were new."""


class _Barrier:
    """Queued by flush(): set once everything queued before it is written."""

    def __init__(self) -> None:
        self.done = threading.Event()


class _Backlog:
    """A bounded FIFO that the writer drains many reports at a time.

    The writer says how many reports it waits for (`take(..., wait_for=n)`), and a put wakes it only when
    that many are there: at thousands of reports per second it wakes about twice per batch instead of once
    per report, and each wake-up is a GIL hand-over the ingest and paho threads pay for. Closed (before
    start and after stop) it refuses everything, and the caller writes the report itself."""

    def __init__(self, maxsize: int):
        self._items: deque = deque()
        self._max = maxsize
        self._want = 1 << 62  # how many items the waiting writer needs; huge while it is busy
        self.closed = True
        self._lock = threading.Lock()
        self._not_empty = threading.Condition(self._lock)
        self._not_full = threading.Condition(self._lock)

    def open(self) -> None:
        with self._lock:
            self.closed = False

    def close(self) -> list:
        """Refuse further puts (waking blocked ones) and return what is still queued."""
        with self._lock:
            self.closed = True
            rest = list(self._items)
            self._items.clear()
            self._not_full.notify_all()
            return rest

    def put(self, item: object, *, block: bool = True, force: bool = False) -> bool:
        """Append and return True; False when closed, or when full and not `block`. `force` ignores the
        bound and wakes the writer (markers)."""
        with self._lock:
            if self.closed:
                return False
            if not force and len(self._items) >= self._max:
                if not block:
                    return False
                while len(self._items) >= self._max and not self.closed:
                    self._not_full.wait()
                if self.closed:
                    return False
            self._items.append(item)
            if force or len(self._items) >= self._want:
                self._not_empty.notify()
        return True

    def take(self, n: int, timeout: float, wait_for: int = 1) -> list:
        """Up to n items, once `wait_for` are queued or `timeout` seconds have passed."""
        with self._lock:
            if len(self._items) < wait_for and timeout > 0:
                self._want = wait_for
                self._not_empty.wait(timeout)
                self._want = 1 << 62
            items = self._items
            out = [items.popleft() for _ in range(min(n, len(items)))]
            if out and len(items) < self._max:
                self._not_full.notify_all()
            return out

    def qsize(self) -> int:
        return len(self._items)


def _acknowledge(items) -> None:
    """Tell the link these reports are committed (or dropped for good): their PUBACKs may go, in one batch."""
    try:
        acks.complete_all([report.on_stored for report, _ in items])
    except Exception:  # noqa: BLE001 - an acknowledgement must never stop the writer
        log.exception("acknowledging %d telemetry reports failed", len(items))


def transient(exc: BaseException) -> bool:
    """A store failure worth retrying the same batch for (down, locked, connection lost)."""
    if isinstance(exc, (sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.DisconnectionError, sa_exc.TimeoutError)):
        return True
    return bool(getattr(exc, "connection_invalidated", False))


class TelemetryWriter:
    def __init__(
        self,
        store: Store,
        layouts: BucketLayouts,
        metrics: CoordinatorMetrics,
        *,
        batch_size: int = 500,
        flush_interval_s: float = 0.5,
        queue_size: int = 100_000,
        clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
        maintenance: Callable[[datetime], bool] | None = None,
        maintenance_interval_s: float = 60.0,
        monotonic: Callable[[], float] = time.monotonic,
        limiter: RateLimitedLog | None = None,
    ):
        self.store = store
        self.layouts = layouts
        self.metrics = metrics
        self.batch_size = batch_size
        self.flush_interval_s = flush_interval_s
        self.clock = clock
        self.maintenance = maintenance
        self.maintenance_interval_s = maintenance_interval_s
        self.monotonic = monotonic
        self.limiter = limiter or RateLimitedLog()
        self._backlog = _Backlog(queue_size)
        self._thread: threading.Thread | None = None
        # Set when stop() runs out of time: the writer thread stops retrying a store that is down (what it
        # cannot write is counted as store_unavailable), so shutdown never hangs on it.
        self._give_up = threading.Event()
        # How long a report written by its submitter (no writer running) may wait for a store that is down.
        self.direct_retry_s = 10.0
        self._write_lock = threading.Lock()
        self._times = TimeParams(store.backend)
        samples, latest = TelemetrySampleRow.__table__, TelemetryLatestRow.__table__
        columns = [c.name for c in samples.columns if c.name != "id"]
        # A QoS 1 redelivery carries the same message id: nothing is stored. Most batches have no duplicate,
        # which the row count shows; only a batch that has one is written again, returning which rows were
        # new (a RETURNING row per insert costs the common case ~10% of the writer's time).
        self._insert_samples = BulkInsert(store.backend, samples, columns, f"ON CONFLICT ({', '.join(_KEY)}) DO NOTHING")
        self._insert_samples_returning = BulkInsert(
            store.backend, samples, columns, f"ON CONFLICT ({', '.join(_KEY)}) DO NOTHING RETURNING {', '.join(_KEY)}"
        )
        updates = ", ".join(f"{c.name} = excluded.{c.name}" for c in latest.columns if c.name not in _LATEST_KEY)
        self._upsert_latest = BulkInsert(
            store.backend,
            latest,
            [c.name for c in latest.columns],
            # Only forward: a late report (an outbox draining after an outage) must not replace a newer one.
            f"ON CONFLICT ({', '.join(_LATEST_KEY)}) DO UPDATE SET {updates} WHERE excluded.window_end >= {latest.name}.window_end",
        )
        metrics.telemetry_queue.set_function(self._backlog.qsize)

    # -- called by ingest

    def submit(self, report: Report) -> None:
        """Queue a validated report; waits while the queue is full (never drops). Without a running writer
        (before start, after stop) the report is written here and now."""
        backlog = self._backlog
        if backlog.put(report, block=False):
            return
        if not backlog.closed:
            self.limiter.warning(("telemetry", "backlog"), "telemetry writer is behind (%d reports queued): ingest waits for the store", backlog.qsize())
            if backlog.put(report):
                return
        self._commit([(report, sample_rows(report, self.layouts, self._times))], deadline=time.monotonic() + self.direct_retry_s)

    # -- lifecycle

    def start(self) -> None:
        if self._thread is not None:
            return
        self._give_up.clear()
        self._backlog.open()
        self._thread = threading.Thread(target=self._run, name="telemetry-writer", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Write everything queued, then stop the thread. A store that stays down for `timeout` loses the rest (counted)."""
        thread = self._thread
        if thread is None:
            return
        deadline = time.monotonic() + timeout
        self._backlog.put(_STOP, force=True)
        thread.join(timeout)
        if thread.is_alive():
            self._give_up.set()
            thread.join(10)
        self._thread = None
        # Reports queued behind the stop marker (a submit racing stop) are written here, then the backlog
        # refuses more: later reports are written by whoever submits them.
        leftovers = []
        for item in self._backlog.close():
            if isinstance(item, Report):
                leftovers.append((item, sample_rows(item, self.layouts, self._times)))
            elif isinstance(item, _Barrier):
                item.done.set()
        if leftovers:
            self._commit(leftovers, deadline=max(deadline, time.monotonic() + 1.0))

    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until every report submitted before this call is stored; False on timeout."""
        barrier = _Barrier()
        if not self._backlog.put(barrier, force=True):
            return True  # not running: every submit was written synchronously
        return barrier.done.wait(timeout)

    @property
    def running(self) -> bool:
        return self._thread is not None

    # -- the thread

    def _run(self) -> None:
        next_maintenance = self.monotonic() + self.maintenance_interval_s
        stopping = False
        while not stopping:
            items: list[tuple[Report, list[dict[str, Any]]]] = []
            barriers: list[_Barrier] = []
            nrows = 0
            taken = self._backlog.take(self.batch_size, max(0.0, next_maintenance - self.monotonic()))
            deadline = self.monotonic() + self.flush_interval_s
            while taken:
                close = False
                for item in taken:
                    if item is _STOP:
                        stopping = close = True
                    elif isinstance(item, _Barrier):
                        barriers.append(item)
                        close = True  # a flush() is waiting: write now
                    else:
                        try:
                            rows = sample_rows(item, self.layouts, self._times)
                        except Exception:  # noqa: BLE001 - validation should make this impossible; never stop the writer
                            self.metrics.dropped.labels("bad_telemetry").inc()
                            log.exception("cannot turn telemetry %s from %s into rows", item.message_id, item.device_id)
                            _acknowledge([(item, [])])  # dropped for good: a redelivery would fail the same way
                            continue
                        items.append((item, rows))
                        nrows += len(rows)
                if close:
                    break
                if nrows >= self.batch_size:
                    # Full. A writer that is behind adds what is queued already, up to CATCH_UP batches: a
                    # bigger transaction dirties about the same index pages (message ids are random) for more rows.
                    room = self.batch_size * CATCH_UP - nrows
                    if room <= 0 or not self._backlog.qsize():
                        break
                    taken = self._backlog.take(room, 0.0)
                    continue
                left = deadline - self.monotonic()
                if left <= 0:
                    break
                taken = self._backlog.take(self.batch_size - nrows, left, wait_for=self.batch_size - nrows)
            if items:
                self._commit(items)
            for barrier in barriers:
                barrier.done.set()
            if self.maintenance is not None and self.monotonic() >= next_maintenance and not stopping:
                more = self._maintain()
                # A backlog of old rows is worked off in slices between batches, not in one long pause.
                next_maintenance = self.monotonic() + (1.0 if more else self.maintenance_interval_s)

    def _maintain(self) -> bool:
        try:
            return bool(self.maintenance(self.clock()))
        except Exception:  # noqa: BLE001 - retention must never stop ingest
            log.exception("telemetry retention job failed; will retry")
            return False

    # -- the store

    def _commit(self, items: list[tuple[Report, list[dict[str, Any]]]], deadline: float | None = None) -> None:
        """Write the reports' rows, retrying while the store is down: the writer thread until stop() gives
        up, a direct write (no writer running) until `deadline` (time.monotonic())."""
        backoff = 0.2
        while True:
            try:
                self.write_rows([row for _, rows in items for row in rows])
            except Exception as exc:  # noqa: BLE001 - sorted below
                if transient(exc):
                    left = None if deadline is None else deadline - time.monotonic()
                    if self._give_up.is_set() or (left is not None and left <= 0):
                        # Not acknowledged: the broker keeps them for our session and sends them again.
                        lost = len(items)
                        self.metrics.dropped.labels("store_unavailable").inc(lost)
                        log.error("telemetry store unavailable: %d reports not stored (the writer is stopping or stopped): %s", lost, exc)
                        return
                    self.limiter.warning(("telemetry", "store"), "telemetry store unavailable, retrying (%d reports waiting): %s", len(items), exc)
                    self._give_up.wait(backoff if left is None else min(backoff, left))
                    backoff = min(backoff * 2, 5.0)
                    continue
                if len(items) > 1:
                    for item in items:  # find the report the store refuses; store the others
                        self._commit([item], deadline)
                    return
                report = items[0][0]
                self.metrics.dropped.labels("bad_telemetry").inc()
                self.limiter.warning((report.device_id, "bad_telemetry_store"), "the store refused telemetry %s from %s: %s", report.message_id, report.device_id, exc)
                _acknowledge(items)  # refused for its content: a redelivery would be refused again
                return
            else:
                _acknowledge(items)
                return

    def write_rows(self, rows: list[dict[str, Any]]) -> int:
        """Store sample rows (records.sample_rows) in one transaction, received now; returns how many were
        new (the rest were duplicates)."""
        if not rows:
            return 0
        started = time.perf_counter()
        now = self.clock()
        received = self._times.moment(now)
        for r in rows:
            r["received_at"] = received
        with self._write_lock:
            try:
                fresh, new_layouts = self._write(rows, now, returning=False)
            except _HasDuplicates:
                fresh, new_layouts = self._write(rows, now, returning=True)
        self.layouts.mark_stored(new_layouts)
        self.metrics.telemetry_batch_seconds.observe(time.perf_counter() - started)
        self.metrics.telemetry_rows.inc(len(fresh))
        if len(fresh) != len(rows):
            self.metrics.telemetry_duplicates.inc(len(rows) - len(fresh))
        per_model: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
        for r in fresh:
            if r["model"]:
                figures = per_model[(r["model"], r["version"])]
                figures[0] += r["requests"]
                figures[1] += r["errors"]
        for (model, version), (requests, errors) in per_model.items():
            self.metrics.model_requests.labels(model, version).inc(requests)
            if errors:
                self.metrics.model_errors.labels(model, version).inc(errors)
        return len(fresh)

    def _write(self, rows: list[dict[str, Any]], now: datetime, *, returning: bool) -> tuple[list[dict[str, Any]], list[str]]:
        """One transaction; (the rows stored for the first time, new layout digests). Without `returning`,
        raises _HasDuplicates (rolling back) when some row was stored before."""
        with self.store.session() as s:
            new_layouts = self.layouts.store_new(s, (r["hist_layout"] for r in rows))
            conn = s.connection()
            if returning:
                inserted: list[tuple] = []
                for sql, params in self._insert_samples_returning.statements(rows):
                    inserted.extend(conn.exec_driver_sql(sql, params).fetchall())
                by_key = {tuple(r[k] for k in _KEY): r for r in rows}
                fresh = [by_key[tuple(k)] for k in inserted]
            else:
                count = 0
                for sql, params in self._insert_samples.statements(rows):
                    count += conn.exec_driver_sql(sql, params).rowcount
                if count != len(rows):
                    raise _HasDuplicates()
                fresh = rows
            latest: dict[tuple, dict[str, Any]] = {}
            for r in fresh:
                key = (r["device_id"], r["model"], r["version"], r["variant_id"])
                have = latest.get(key)
                if have is None or r["window_end"] >= have["window_end"]:
                    latest[key] = r
            for sql, params in self._upsert_latest.statements(list(latest.values())):
                conn.exec_driver_sql(sql, params)
            devices = {r["device_id"] for r in rows}
            s.execute(update(DeviceRow).where(DeviceRow.id.in_(devices)).values(last_seen=now))
        return fresh, new_layouts
