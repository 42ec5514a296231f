"""The shared execution of simulated devices: timers on a fake clock, strands, coalesced wake-ups."""
from __future__ import annotations

import threading

import pytest

from agent.simulate.scheduler import Coalesced, Pool, Strand, Timers


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_timers_run_what_is_due_in_order_and_skip_cancelled() -> None:
    clock = FakeClock()
    timers = Timers(clock)
    ran: list[str] = []
    timers.call_later(2.0, lambda: ran.append("b"))
    timers.call_later(1.0, lambda: ran.append("a"))
    cancelled = timers.call_later(1.5, lambda: ran.append("never"))
    cancelled.cancel()
    assert timers.run_due() == 0
    clock.now += 1.0
    timers.run_due()
    assert ran == ["a"]
    clock.now += 5.0
    timers.run_due()
    assert ran == ["a", "b"]


def test_every_repeats_from_its_due_times_until_cancelled() -> None:
    clock = FakeClock()
    timers = Timers(clock)
    ticks: list[float] = []
    handle = timers.every(1.0, lambda: ticks.append(clock.now), first_delay_s=0.5)
    for _ in range(4):
        clock.now += 0.5
        timers.run_due()
    assert ticks == [100.5, 101.5]
    handle.cancel()
    clock.now += 10
    timers.run_due()
    assert ticks == [100.5, 101.5]
    with pytest.raises(ValueError, match="interval"):
        timers.every(0, lambda: None)


def test_timer_thread_calls_back_at_the_due_time() -> None:
    timers = Timers()
    timers.start()
    fired = threading.Event()
    try:
        timers.call_later(0.01, fired.set)
        assert fired.wait(5)
    finally:
        timers.stop()


def test_a_strand_runs_its_tasks_in_order_one_at_a_time_on_a_shared_pool() -> None:
    pool = Pool("test", 4)
    pool.start()
    try:
        lanes = [Strand(pool) for _ in range(3)]
        seen: dict[int, list[int]] = {i: [] for i in range(3)}
        busy = {i: False for i in range(3)}
        overlaps: list[int] = []
        done = threading.Semaphore(0)

        def task(lane: int, n: int) -> None:
            if busy[lane]:
                overlaps.append(lane)
            busy[lane] = True
            seen[lane].append(n)
            threading.Event().wait(0.0005)  # long enough for another pool thread to try the same lane
            busy[lane] = False
            done.release()

        for n in range(60):
            for i, lane in enumerate(lanes):
                lane.post(lambda i=i, n=n: task(i, n))
        for _ in range(180):
            assert done.acquire(timeout=10)
        assert overlaps == []
        assert all(seen[i] == list(range(60)) for i in range(3))
    finally:
        pool.stop()


def test_a_failing_task_does_not_stop_the_lane() -> None:
    pool = Pool("test", 1)
    pool.start()
    try:
        lane = Strand(pool)
        after = threading.Event()
        lane.post(lambda: 1 / 0)
        lane.post(after.set)
        assert after.wait(5)
    finally:
        pool.stop()


def test_coalesced_wakeups_run_once_per_burst_and_never_miss_a_late_one() -> None:
    pool = Pool("test", 2)
    pool.start()
    try:
        lane = Strand(pool)
        gate = threading.Event()
        runs: list[int] = []
        ran = threading.Semaphore(0)

        def drain() -> None:
            gate.wait(5)
            runs.append(1)
            ran.release()

        wake = Coalesced(lane, drain)
        for _ in range(50):
            wake.set()  # one run is waiting: the rest coalesce into it
        assert wake.is_set()
        gate.set()
        assert ran.acquire(timeout=5)
        wake.set()  # after the run began: one more run
        assert ran.acquire(timeout=5)
        assert not ran.acquire(timeout=0.2)
        assert len(runs) == 2
    finally:
        pool.stop()
