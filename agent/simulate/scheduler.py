"""Shared execution for many simulated devices in one process, so that a device costs no thread of its own.

    timers = Timers()                  # one thread calls each callback at its due time (callbacks only post work)
    work = Pool("sim-work", 4)         # a few threads run whatever is posted to them
    lane = Strand(work)                # one device's serial lane: its tasks run in order, never two at once
    wake = Coalesced(lane, drain)      # wake.set() runs `drain` once soon, however often it is set meanwhile

A task that raises is logged and dropped; the thread carries on. `Timers.run_due()` runs what is due in
the caller's thread, for tests with a fake clock.
"""

from __future__ import annotations

import collections
import heapq
import itertools
import logging
import queue
import threading
import time
from typing import Callable

log = logging.getLogger(__name__)

Task = Callable[[], object]
_STOP = object()


def run_logged(fn: Task) -> None:
    try:
        fn()
    except Exception:  # noqa: BLE001 - one device's failure must not stop the shared thread
        log.exception("simulated-device task %s failed", getattr(fn, "__qualname__", fn))


class Timer:
    """A scheduled callback; cancel() before it is due and it never runs."""

    __slots__ = ("fn", "cancelled")

    def __init__(self, fn: Task) -> None:
        self.fn = fn
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class Timers:
    """One thread, a heap of due times. Callbacks run on that thread: they must be quick (post work)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, name: str = "sim-timers") -> None:
        self._clock = clock
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, Timer]] = []
        self._seq = itertools.count()
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def now(self) -> float:
        return self._clock()

    def call_at(self, when: float, fn: Task) -> Timer:
        timer = Timer(fn)
        with self._cond:
            heapq.heappush(self._heap, (when, next(self._seq), timer))
            if self._heap[0][2] is timer:
                self._cond.notify()
        return timer

    def call_later(self, delay_s: float, fn: Task) -> Timer:
        return self.call_at(self._clock() + max(0.0, delay_s), fn)

    def every(self, interval_s: float, fn: Task, *, first_delay_s: float | None = None) -> Timer:
        """Call `fn` every `interval_s` (first after `first_delay_s`, default one interval) until cancelled."""
        if interval_s <= 0:
            raise ValueError(f"interval must be above 0 s, got {interval_s}")
        handle = Timer(fn)

        def fire(due: float) -> None:
            if handle.cancelled:
                return
            following = max(due + interval_s, self._clock())  # a late tick does not bunch up the next ones
            self.call_at(following, lambda: fire(following))
            fn()

        first = self._clock() + (interval_s if first_delay_s is None else max(0.0, first_delay_s))
        self.call_at(first, lambda: fire(first))
        return handle

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify()
        if self._thread.is_alive():
            self._thread.join(timeout_s)

    def __len__(self) -> int:
        return len(self._heap)

    def run_due(self) -> int:
        """Run every callback due now in this thread; how many ran (tests with a fake clock)."""
        ran = 0
        while True:
            with self._cond:
                if not self._heap or self._heap[0][0] > self._clock():
                    return ran
                _, _, timer = heapq.heappop(self._heap)
            if not timer.cancelled:
                run_logged(timer.fn)
                ran += 1

    def _run(self) -> None:
        while True:
            with self._cond:
                while True:
                    if self._stopped:
                        return
                    if not self._heap:
                        self._cond.wait()
                        continue
                    left = self._heap[0][0] - self._clock()
                    if left <= 0:
                        break
                    self._cond.wait(left)
                _, _, timer = heapq.heappop(self._heap)
            if not timer.cancelled:
                run_logged(timer.fn)


class Pool:
    """A fixed number of threads running posted callables in arrival order (no futures: posting is cheap)."""

    def __init__(self, name: str, workers: int) -> None:
        if workers < 1:
            raise ValueError(f"a pool needs at least 1 worker, got {workers}")
        self.name = name
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._threads = [threading.Thread(target=self._run, name=f"{name}-{i}", daemon=True) for i in range(workers)]
        self._started = False

    def post(self, fn: Task) -> None:
        self._queue.put(fn)

    @property
    def backlog(self) -> int:
        return self._queue.qsize()

    def start(self) -> None:
        if not self._started:
            self._started = True
            for thread in self._threads:
                thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        if not self._started:
            return
        for _ in self._threads:
            self._queue.put(_STOP)
        deadline = time.monotonic() + timeout_s
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    def _run(self) -> None:
        while True:
            fn = self._queue.get()
            if fn is _STOP:
                return
            run_logged(fn)


class Strand:
    """A serial lane on a shared pool: tasks run in the order posted, one at a time, on any pool thread.

    This is how one simulated device keeps the guarantee its own worker thread would give (the install
    state machine, the trial and telemetry never run concurrently for one device) without the thread.
    """

    BATCH = 16  # tasks run per turn before the lane yields its pool thread to other devices

    def __init__(self, pool: Pool) -> None:
        self._pool = pool
        self._lock = threading.Lock()
        self._tasks: collections.deque[Task] = collections.deque()
        self._scheduled = False

    def post(self, fn: Task) -> None:
        with self._lock:
            self._tasks.append(fn)
            if self._scheduled:
                return
            self._scheduled = True
        self._pool.post(self._drain)

    @property
    def pending(self) -> int:
        return len(self._tasks)

    def _drain(self) -> None:
        for _ in range(self.BATCH):
            with self._lock:
                if not self._tasks:
                    self._scheduled = False
                    return
                fn = self._tasks.popleft()
            run_logged(fn)
        self._pool.post(self._drain)  # still scheduled: continue after the others had a turn


class Coalesced:
    """`set()` posts `fn` to `lane` unless a run is already waiting there: bursts of wake-ups cost one run.

    A set() while `fn` runs posts one more run, so nothing set after a run began is missed; the strand
    keeps two runs from overlapping. Duck-types the part of threading.Event that a worker's producers
    use (set, is_set, clear).
    """

    def __init__(self, lane: Strand, fn: Task) -> None:
        self._lane = lane
        self._fn = fn
        self._lock = threading.Lock()
        self._waiting = False

    def set(self) -> None:
        with self._lock:
            if self._waiting:
                return
            self._waiting = True
        self._lane.post(self._run)

    def is_set(self) -> bool:
        return self._waiting

    def clear(self) -> None:
        """Nothing to clear: the pending run, if any, still happens."""

    def _run(self) -> None:
        with self._lock:
            self._waiting = False
        self._fn()
