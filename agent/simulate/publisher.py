"""OutboxPublisher without a thread of its own, for devices simulated many to a process.

`edge-agent run`'s publisher has a worker thread that wakes on every stored record and acknowledgement,
and at least every 0.5 s to notice a reconnect. Here the same rounds (OutboxPublisher.pump: delete what
the broker acknowledged, hand the next records to paho, in outbox order, up to the window) run on the
device's strand when something happens: a record stored, a PUBACK, a connect, or the device's
housekeeping seeing records that nothing is carrying. Same outbox, same ordering and acknowledgement rules.
"""

from __future__ import annotations

import logging
import sqlite3
from typing import Any

from agent.outbox import Outbox
from agent.publisher import OutboxPublisher, Publish
from agent.simulate.scheduler import Coalesced, Strand

log = logging.getLogger(__name__)


class StrandPublisher(OutboxPublisher):
    def __init__(self, outbox: Outbox, publish: Publish, connected: Any, device_id: str, *, strand: Strand, **kw: Any) -> None:
        # Every wake-up (a put, a PUBACK on paho's thread, wake(), stop()) posts one drain to the strand;
        # bursts coalesce into one.
        self._drain_soon = Coalesced(strand, self.drain)
        super().__init__(outbox, publish, connected, device_id, on_wake=self._drain_soon.set, **kw)

    def start(self) -> None:
        """Nothing to start: drains run on the strand."""

    @property
    def idle_with_records(self) -> bool:
        """Records wait in the outbox and none is with paho: only a drain moves them."""
        return bool(len(self.outbox)) and self.inflight == 0

    def drain(self) -> None:
        """Worker rounds until nothing more can go out now (acknowledgements wake the next drain)."""
        try:
            while self.pump():
                pass  # a full window went out and more may wait
        except sqlite3.ProgrammingError:
            log.debug("%s: outbox closed; drain skipped", self.device_id)
        except Exception:  # noqa: BLE001 - the records stay in the outbox; the next wake-up retries
            log.exception("%s: outbox publishing failed; retrying at the next wake-up", self.device_id)
