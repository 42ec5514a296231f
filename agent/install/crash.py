"""Deterministic crash points for the fault tests: `EDGEFLEET_AGENT_CRASH_AT=<point>` makes the agent
exit with os._exit(137) (as if killed with SIGKILL: no cleanup, no flush of anything not yet on disk)
right after that point is reached.

Points: downloading, verifying, staged, trial (right after the state is persisted), activated (the
pointer was swapped, the trial is running), rolling_back, committed, and chunks:<n> (after the n-th
chunk stored by this process).
"""
from __future__ import annotations

import os
import sys

ENV = "EDGEFLEET_AGENT_CRASH_AT"
EXIT_CODE = 137


class CrashPoints:
    def __init__(self, spec: str | None = None) -> None:
        self.spec = (os.environ.get(ENV, "") if spec is None else spec).strip()
        self._chunks_at = int(self.spec.split(":", 1)[1]) if self.spec.startswith("chunks:") else None
        self._chunks = 0

    def hit(self, point: str) -> None:
        if self.spec and point == self.spec:
            self._die(point)

    def chunk_stored(self) -> None:
        if self._chunks_at is not None:
            self._chunks += 1
            if self._chunks >= self._chunks_at:
                self._die(self.spec)

    @staticmethod
    def _die(point: str) -> None:
        print(f"edgefleet crash point {point}: exiting with {EXIT_CODE}", file=sys.stderr, flush=True)
        os._exit(EXIT_CODE)
