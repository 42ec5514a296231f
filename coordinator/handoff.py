"""A FIFO from producer threads to one consumer thread, cheap enough to cross once per MQTT message.

queue.Queue takes a Condition per put and get (several us of Python-level locking and notify); an Event
costs about as much on set(). Here a put is a deque append, plus a bare lock release when the consumer is
asleep: the consumer sleeps by acquiring a lock it already holds, and a producer that sees it asleep
releases it. A wake-up may be spurious (the consumer looks again); none is lost: the consumer says it
sleeps before its last look at the deque, and the producer appends before it looks at that flag.
"""
from __future__ import annotations

import threading
from collections import deque
from typing import Any


class Handoff:
    def __init__(self) -> None:
        self.items: deque = deque()
        self._sleeping = False
        self._bell = threading.Lock()
        self._bell.acquire()  # held while nobody rings; the consumer blocks on acquiring it again

    def put(self, item: Any) -> None:
        self.items.append(item)
        if self._sleeping:
            self._sleeping = False
            try:
                self._bell.release()
            except RuntimeError:
                pass  # rung twice (two producers at once): already released

    def wait(self) -> None:
        """Consumer only: return once the deque is not empty (or after a spurious wake-up: look again)."""
        if self.items:
            return
        self._sleeping = True
        if self.items:
            self._sleeping = False
            return
        self._bell.acquire()

    def __len__(self) -> int:
        return len(self.items)
