"""The per-device sequence counter on SQLite and PostgreSQL, including concurrent callers."""
from __future__ import annotations

import threading

import pytest

from coordinator.transfer.sequences import SequenceCounter


def test_sequences_increase_per_device_and_respect_a_floor(store):
    counter = SequenceCounter(store)
    assert counter.current("d-a") == 0
    assert [counter.next("d-a") for _ in range(3)] == [1, 2, 3]
    assert counter.next("d-b") == 1  # each device counts on its own
    # the device says it accepted 40 (a store restored from an old backup): the next is above it
    assert counter.next("d-a", floor=40) == 41
    assert counter.next("d-a", floor=5) == 42  # a floor below the counter changes nothing
    assert counter.next("d-c", floor=7) == 8
    assert (counter.current("d-a"), counter.current("d-b"), counter.current("d-c")) == (42, 1, 8)
    with pytest.raises(ValueError, match="floor"):
        counter.next("d-a", floor=-1)


def test_concurrent_callers_never_get_the_same_number(store):
    counter = SequenceCounter(store)
    threads, per_thread = 4, 15
    got: list[int] = []
    lock = threading.Lock()
    start = threading.Barrier(threads)
    errors: list[BaseException] = []

    def work():
        try:
            start.wait(10)
            for _ in range(per_thread):
                n = counter.next("d-hot")
                with lock:
                    got.append(n)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    pool = [threading.Thread(target=work) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join(60)
    assert not errors, errors
    assert sorted(got) == list(range(1, threads * per_thread + 1))
    assert counter.current("d-hot") == threads * per_thread
