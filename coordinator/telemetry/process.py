"""Telemetry ingest in a child process: decode, validation, rows and the batch writer get a GIL and a core
of their own, and the coordinator's process keeps its GIL for paho and everything else.

    parent: link worker ─▶ Ingest (topic) ─▶ TelemetryProcess.handle_raw ─▶ sender thread ═pipe═▶
    child:  receiver ─▶ Ingest + TelemetryService (as in-process: intake, writer thread, retention) ─▶ store
    child:  reporter ═pipe═▶ parent reader thread: PUBACKs (after the commit), counters, queue depth

In one process paho's per-message work (~55 us) and the telemetry path (~130 us) share one GIL, so a
stored report costs about three times what a raw receive does; across two processes each runs on its own
core. The pipe carries (sequence, topic, payload) in pickled batches (a few us per message in all).

Acknowledgement: the child numbers nothing itself; it reports the highest parent sequence up to which every
message is final (committed, or dropped as bad input), and the parent completes those deliveries in order
(coordinator/acks.py; the PUBACKs one report releases go out as one write), so the broker forgets a report
only after it is in the store.

The parent keeps every message until the child reports it final. When the child dies (killed, crashed) the
parent starts a new one and sends it everything not yet final again; the store's unique key makes a report
the old child had already committed a counted duplicate, not a second row. When the parent dies the child
sees the pipe close and exits at once: the broker redelivers what was not acknowledged.

The child is started with multiprocessing's "spawn": a program that builds a TelemetryService with
process=True must keep its top level under `if __name__ == "__main__":` (edge-coordinator and bench/ingest.py
do), or the child re-runs it and fails to start.

Counters the child moves (messages, drops, rows, duplicates, per-model requests and errors) are added to the
parent's registry as deltas, and batch times are observed there too, so /metrics reads as in one process.
"""
from __future__ import annotations

import logging
import multiprocessing
import os
import pickle
import signal
import sys
import threading
import time
from collections import deque
from typing import Any, Callable

from coordinator import acks
from coordinator.config import TelemetryConfig
from coordinator.handoff import Handoff
from coordinator.metrics import CoordinatorMetrics

log = logging.getLogger(__name__)

# Parent -> child: ("items", [(seq, topic, payload), ...]), ("flush", token), ("stop",)
# Child -> parent: ("ready",), ("done", seq, counters, batch_seconds, queued), ("flushed", token), ("stopped",)
_BATCH = 512  # messages per pipe write, at most
_COUNTERS = {
    "edgefleet_mqtt_messages_total": "messages",
    "edgefleet_mqtt_dropped_total": "dropped",
    "edgefleet_telemetry_rows_written_total": "telemetry_rows",
    "edgefleet_telemetry_duplicates_total": "telemetry_duplicates",
    "edgefleet_model_requests_total": "model_requests",
    "edgefleet_model_errors_total": "model_errors",
}


def usable(store_url: str) -> bool:
    """A child process can open the same store (not an in-memory SQLite database)."""
    return ":memory:" not in store_url and store_url.rstrip("/") not in ("sqlite:", "sqlite://")


class TelemetryProcess:
    """The parent's half. handle_raw() runs on paho's thread (Ingest.take) or the link's worker thread, one of
    them only; everything else on the sender and reader threads."""

    def __init__(self, store_url: str, cfg: TelemetryConfig, metrics: CoordinatorMetrics, *, log_level: int | None = None):
        self.store_url = store_url
        self.cfg = cfg
        self.metrics = metrics
        self.log_level = logging.getLogger().getEffectiveLevel() if log_level is None else log_level
        self._ctx = multiprocessing.get_context("spawn")  # never fork a process that runs threads
        self._proc = None
        self._conn = None
        self._send_lock = threading.Lock()  # one writer on the pipe at a time
        self._state = threading.Condition()  # stopping and child generations (the sender waits on it)
        self._seq = 0
        self._unfinished: deque[list] = deque()  # [seq, topic, payload, on_done] in order, until final
        self._outbox = Handoff()  # ("item", seq, topic, payload) or control messages, for the sender
        self._sent_upto = 0  # highest seq written to the current child's pipe
        self._flushes: dict[int, threading.Event] = {}
        self._stopping = False
        self._running = False
        self._reported: dict[tuple, float] = {}  # the child's counter values already added here
        self._threads: list[threading.Thread] = []
        self.restarts = 0
        self._generation = 0  # children started so far
        self.final = 0  # messages the child reported final (tests and the bench watch it)
        self.on_final: Callable[[int], None] | None = None

    def depth(self) -> int:
        """Messages handed over and not final yet (queued here, in the pipe, or in the child)."""
        return len(self._unfinished)

    # -- life cycle

    def start(self, timeout: float = 60.0) -> None:
        if self._running:
            return
        self._stopping = False
        self._spawn(timeout)
        self._running = True
        for target, name in ((self._send_loop, "telemetry-sender"), (self._read_loop, "telemetry-reader")):
            t = threading.Thread(target=target, name=name, daemon=True)
            t.start()
            self._threads.append(t)

    def _spawn(self, timeout: float) -> None:
        parent, child = self._ctx.Pipe()
        proc = self._ctx.Process(
            target=child_main, args=(child, self.store_url, self.cfg.model_dump(), self.log_level), name="edgefleet-telemetry", daemon=True
        )
        proc.start()
        child.close()
        if not parent.poll(timeout):
            proc.kill()
            raise RuntimeError(f"the telemetry process did not start within {timeout:.0f} s")
        try:
            msg = pickle.loads(parent.recv_bytes())
        except (EOFError, OSError):
            proc.join(5)
            raise RuntimeError(f"the telemetry process exited while starting (exit code {proc.exitcode}); its log says why") from None
        if msg[0] != "ready":
            proc.kill()
            raise RuntimeError(f"the telemetry process failed to start: {msg[1] if len(msg) > 1 else msg}")
        self._proc, self._conn = proc, parent
        self._reported = {}

    def stop(self, timeout: float = 30.0) -> None:
        """Everything handed over is written (or left unacknowledged for the broker), then the child exits."""
        if not self._running:
            return
        done = threading.Event()
        self._enqueue(("stop", done))
        if not done.wait(timeout):
            log.error("the telemetry process did not stop within %.0f s; killing it (the broker keeps what it did not store)", timeout)
        with self._state:
            self._stopping = True
        self._running = False
        self._enqueue(("end",))
        proc = self._proc
        if proc is not None:
            proc.join(5)
            if proc.is_alive():
                proc.kill()
                proc.join(5)
        if self._conn is not None:
            self._conn.close()
        for t in self._threads:
            t.join(5)
        self._threads = []

    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until every message handed over before this call is final (stored or dropped)."""
        if not self._running:
            return True
        done = threading.Event()
        self._enqueue(("flush", done))
        return done.wait(timeout)

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    # -- the link's worker thread

    def handle_raw(self, topic: str, payload: bytes) -> str:
        """Hand a telemetry message to the child; the link acknowledges it when the child reports it final."""
        # One caller thread at a time (paho's, or the link worker's without take): no lock. The reader thread
        # pops from the other end of the deque.
        on_done = acks.defer()
        self._seq += 1
        seq = self._seq
        self._unfinished.append([seq, topic, payload, on_done])
        self._outbox.put(("item", seq, topic, payload))
        return "forwarded"

    def _enqueue(self, item) -> None:
        self._outbox.put(item)

    # -- the sender thread: outbox -> pipe, many messages per write

    def _send_loop(self) -> None:
        outbox = self._outbox.items
        while True:
            if not outbox:
                self._outbox.wait()
                continue
            batch: list[tuple] = []
            control = None
            while outbox and len(batch) < _BATCH:
                item = outbox.popleft()
                if item[0] != "item":
                    control = item
                    break
                batch.append(item[1:])
            if batch and not self._send_retrying(("items", batch), upto=batch[-1][0]):
                return
            if control is None:
                continue
            if control[0] == "end":
                return
            kind, event = control
            self._flushes[id(event)] = (kind, event)
            if not self._send_retrying((kind, id(event))):
                return

    def _send_retrying(self, msg: tuple, upto: int = 0) -> bool:
        """Send; when the child is gone, wait for the reader to start another (it resends what this one had)
        and send again. False once stopping."""
        while True:
            generation = self._generation
            try:
                self._send(msg, upto)
                return True
            except (OSError, EOFError, ValueError):
                with self._state:
                    self._state.wait_for(lambda: self._stopping or self._generation != generation, 30)
                if self._stopping:
                    return False

    def _send(self, msg: tuple, upto: int = 0) -> None:
        data = pickle.dumps(msg, protocol=pickle.HIGHEST_PROTOCOL)
        with self._send_lock:
            self._conn.send_bytes(data)
            if upto:
                self._sent_upto = upto

    # -- the reader thread: acknowledgements and counters from the child

    def _read_loop(self) -> None:
        while True:
            try:
                msg = pickle.loads(self._conn.recv_bytes())
            except (OSError, EOFError):
                if self._stopping or not self._running:
                    return
                if not self._restart():
                    return
                continue
            kind = msg[0]
            if kind == "done":
                self._done(*msg[1:])
            elif kind in ("flushed", "stopped"):
                waiting = self._flushes.pop(msg[1], None)
                if waiting is not None:
                    waiting[1].set()
                if kind == "stopped":
                    return

    def _done(self, upto: int, counters: dict, batch_seconds: list[float], queued: int) -> None:
        finished = []
        unfinished = self._unfinished
        while unfinished and unfinished[0][0] <= upto:
            finished.append(unfinished.popleft())
        # One batch of PUBACKs for the lot (acks.complete_all), not one queued packet per report.
        try:
            acks.complete_all([item[3] for item in finished])
        except Exception:  # noqa: BLE001 - never stop the reader: the broker resends what was not acknowledged
            log.exception("acknowledging %d telemetry reports failed", len(finished))
        self._add_counters(counters)
        for s in batch_seconds:
            self.metrics.telemetry_batch_seconds.observe(s)
        if finished:
            self.final += len(finished)
            if self.on_final is not None:
                self.on_final(self.final)

    def _add_counters(self, counters: dict) -> None:
        for key, value in counters.items():
            delta = value - self._reported.get(key, 0.0)
            if delta <= 0:
                continue
            self._reported[key] = value
            name, labels = key
            counter = getattr(self.metrics, _COUNTERS[name])
            (counter.labels(**dict(labels)) if labels else counter).inc(delta)

    def _restart(self) -> bool:
        """The child died: start another and send it everything not final, in order."""
        code = self._proc.exitcode if self._proc is not None else None
        log.error("the telemetry process exited (code %s) with %d messages not stored; starting another and sending them again", code, len(self._unfinished))
        backoff = 0.5
        while self._running and not self._stopping:
            try:
                with self._send_lock:
                    self._spawn(60.0)
                    # list() copies in one step: handle_raw may append meanwhile.
                    again = [(seq, topic, payload) for seq, topic, payload, _ in list(self._unfinished) if seq <= self._sent_upto]
                    for at in range(0, len(again), _BATCH):
                        self._conn.send_bytes(pickle.dumps(("items", again[at : at + _BATCH]), protocol=pickle.HIGHEST_PROTOCOL))
                self.restarts += 1
                with self._state:
                    self._generation += 1
                    self._state.notify_all()
                # A flush or stop the dead child never answered is asked again.
                for token, (kind, event) in list(self._flushes.items()):
                    self._flushes.pop(token, None)
                    self._enqueue((kind, event))
                return True
            except Exception as exc:  # noqa: BLE001 - keep trying: nothing is acknowledged meanwhile
                log.error("cannot start the telemetry process: %s; retrying in %.1f s", exc, backoff)
                time.sleep(backoff)
                backoff = min(backoff * 2, 10.0)
        return False


# ---------------------------------------------------------------------------------------- the child


class _BatchTimes:
    """Stands in for the writer's batch-time histogram in the child: the parent observes them."""

    def __init__(self) -> None:
        self.values: deque[float] = deque()

    def observe(self, value: float) -> None:
        self.values.append(value)

    def take(self) -> list[float]:
        values = self.values
        return [values.popleft() for _ in range(len(values))]


def child_main(conn, store_url: str, cfg: dict[str, Any], log_level: int) -> None:
    # Ctrl-C and a service manager's SIGTERM reach the whole process group: the parent decides when we stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    logging.basicConfig(level=log_level, format="%(asctime)s %(levelname)s %(name)s[telemetry]: %(message)s", stream=sys.stderr)
    try:
        child = _Child(conn, store_url, TelemetryConfig(**cfg))
    except Exception as exc:  # noqa: BLE001 - tell the parent why, then exit
        log.exception("telemetry process cannot start")
        conn.send_bytes(pickle.dumps(("failed", str(exc))))
        return
    child.run()


class _Child:
    def __init__(self, conn, store_url: str, cfg: TelemetryConfig):
        from coordinator.ingest import Ingest
        from coordinator.store.db import Store
        from coordinator.store.devices import DeviceRegistry
        from coordinator.telemetry.service import TelemetryService
        from edgefleet import topics

        self.conn = conn
        self.store = Store(store_url)
        self.metrics = CoordinatorMetrics()
        self.batch_times = _BatchTimes()
        self.metrics.telemetry_batch_seconds = self.batch_times
        self.ingest = Ingest(DeviceRegistry(self.store), self.metrics)
        self.service = TelemetryService(self.store, self.ingest.registry, self.metrics, cfg, limiter=self.ingest.limiter)
        self.ingest.handlers[topics.TELEMETRY] = self.service.handle
        self.order = acks.AckOrder(self._final, lambda seqs: self._final(seqs[-1]))
        self._upto = 0
        self._reported_upto = 0
        self._send_lock = threading.Lock()
        self._changed = threading.Event()
        self._stop = threading.Event()

    def _final(self, seq: int) -> None:
        self._upto = seq
        self._changed.set()

    def _send(self, msg: tuple) -> None:
        data = pickle.dumps(msg, protocol=pickle.HIGHEST_PROTOCOL)
        with self._send_lock:
            self.conn.send_bytes(data)

    def _report(self) -> None:
        """Send what became final since the last report, with the counters as they are now."""
        counters = {}
        for family in self.metrics.registry.collect():
            for sample in family.samples:
                if sample.name in _COUNTERS:
                    counters[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
        upto = self._upto
        self._send(("done", upto, counters, self.batch_times.take(), self.service.writer._backlog.qsize()))
        self._reported_upto = upto

    def _report_loop(self) -> None:
        while not self._stop.is_set():
            self._changed.wait(1.0)
            self._changed.clear()
            try:
                self._report()
            except (OSError, ValueError):
                os._exit(0)  # the parent is gone

    def run(self) -> None:
        self.service.start()
        reporter = threading.Thread(target=self._report_loop, name="telemetry-reporter", daemon=True)
        reporter.start()
        self._send(("ready",))
        handle, order = self.ingest.handle, self.order
        while True:
            try:
                msg = pickle.loads(self.conn.recv_bytes())
            except (EOFError, OSError):
                # The parent died: exit now. What is not committed was never acknowledged; the broker resends it.
                os._exit(0)
            kind = msg[0]
            if kind == "items":
                for seq, topic, payload in msg[1]:
                    d = order.arrived(seq)
                    acks.handling(d)
                    try:
                        handle(topic, payload)
                    except Exception:  # noqa: BLE001 - Ingest already catches handler errors; never stop here
                        log.exception("telemetry ingest failed for %s", topic)
                    finally:
                        acks.handling(None)
                    if not d.deferred:
                        d.complete()
            elif kind == "flush":
                self.service.flush()
                self._report()
                self._send(("flushed", msg[1]))
            elif kind == "stop":
                self.service.stop()
                self._stop.set()
                self._report()
                self._send(("stopped", msg[1]))
                self.store.close()
                return
