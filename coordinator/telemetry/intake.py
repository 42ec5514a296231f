"""The telemetry handler ingest calls for every report: known device? valid? then queue it for the writer.

It runs on one ingest thread, so it stays cheap: the set of known devices is cached in memory (loaded
in one query; a hit costs none; a removed device is forgotten within `known_ttl_s`, a stranger is looked
up again after `unknown_ttl_s`), validation is plain comparisons (validation.py), and the store work happens
on the writer's thread, which also acknowledges each report to the broker after its commit (acks.py).
"""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Callable


from coordinator import acks
from coordinator.ingest import RateLimitedLog
from coordinator.metrics import CoordinatorMetrics
from coordinator.store.known import KnownDevices
from coordinator.telemetry.records import Report
from coordinator.telemetry.validation import problem
from coordinator.telemetry.writer import TelemetryWriter


class TelemetryIntake:
    def __init__(
        self,
        known: KnownDevices,
        writer: TelemetryWriter,
        metrics: CoordinatorMetrics,
        limiter: RateLimitedLog,
        *,
        max_future_s: float,
        max_age_s: float,
        clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
    ):
        self.known = known
        self.writer = writer
        self.limiter = limiter
        self.max_future_s = max_future_s
        self.max_age_s = max_age_s
        self.clock = clock
        self._bad = metrics.dropped.labels("bad_telemetry")

    def __call__(self, env) -> bool | str:
        """Ingest's handler for telemetry envelopes: False for an unknown device, "bad_telemetry" (truthy:
        the device is known) for a report dropped here, True for a report queued for the writer."""
        device_id = env.device_id
        if device_id not in self.known:
            return False
        keys: list[bytes] = []
        found = problem(
            env.telemetry, self.clock().timestamp(), max_future_s=self.max_future_s, max_age_s=self.max_age_s, message_id=env.message_id, layout_keys=keys
        )
        if found is not None:
            self._bad.inc()
            self.limiter.warning((device_id, "bad_telemetry"), "dropped telemetry %s from %s: %s", env.message_id[:64], device_id, found)
            return "bad_telemetry"
        # The link acknowledges this message when the writer has committed it, not when we return.
        self.writer.submit(Report(device_id, env.message_id, env.telemetry, keys, acks.defer()))
        return True
