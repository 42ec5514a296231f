"""A bounded waiting line for the interpreter.

The model runs one request at a time (see agent.serve); requests beyond the one running wait for it.
At most `max_waiting` may wait: one more is refused at once (RESOURCE_EXHAUSTED) rather than queued
without limit, so an app that floods the agent learns it immediately and latency stays bounded.
"""

from __future__ import annotations

import threading


class Admission:
    def __init__(self, max_waiting: int, running: int = 1) -> None:
        if max_waiting < 0:
            raise ValueError(f"max_waiting must be >= 0, got {max_waiting}")
        if running < 1:
            raise ValueError(f"running must be >= 1, got {running}")
        self.max_waiting = max_waiting
        self.capacity = max_waiting + running
        self._inside = 0
        self._lock = threading.Lock()
        self.refused = 0  # since start, for logs and tests

    def try_enter(self) -> bool:
        with self._lock:
            if self._inside >= self.capacity:
                self.refused += 1
                return False
            self._inside += 1
            return True

    def leave(self) -> None:
        with self._lock:
            if self._inside == 0:
                raise RuntimeError("Admission.leave() without a matching try_enter()")
            self._inside -= 1

    @property
    def inside(self) -> int:
        """Requests running or waiting now."""
        return self._inside
