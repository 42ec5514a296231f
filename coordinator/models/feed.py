"""Wakes job watchers when a job changes, without missed wake-ups.

A watcher reads `generation()`, then reads the store, then waits for the generation to move past what it
read: a change committed between the read and the wait has already moved it, so the wait returns at once.
The wait also has a timeout, so jobs run by another coordinator replica (which cannot notify this one)
are seen by polling.
"""
from __future__ import annotations

import threading


class ChangeFeed:
    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._generation = 0
        self._closed = False

    def generation(self) -> int:
        with self._cond:
            return self._generation

    def notify(self, _job_id: str = "") -> None:
        with self._cond:
            self._generation += 1
            self._cond.notify_all()

    def wait_past(self, generation: int, timeout: float) -> bool:
        """True when something changed after `generation` (or the feed closed) within `timeout` seconds."""
        with self._cond:
            return self._cond.wait_for(lambda: self._generation != generation or self._closed, timeout)

    def close(self) -> None:
        """Release every watcher (the service is stopping)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    @property
    def closed(self) -> bool:
        return self._closed
