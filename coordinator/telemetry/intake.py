"""The telemetry handler ingest calls for every report: known device? valid? then queue it for the writer.

It runs on the link's single ingest thread, so it stays cheap: the set of known devices is cached in
memory (a hit costs no query; a removed device is forgotten within `known_ttl_s`, a stranger is looked up
again after `unknown_ttl_s`), validation is plain comparisons (validation.py), and the store work happens
on the writer's thread.
"""
from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import Callable

from coordinator.ingest import RateLimitedLog
from coordinator.metrics import CoordinatorMetrics
from coordinator.store.devices import DeviceRegistry
from coordinator.telemetry.records import Report
from coordinator.telemetry.validation import problem
from coordinator.telemetry.writer import TelemetryWriter


class KnownDevices:
    """Whether a device id is registered, cached: hits for `known_ttl_s`, misses for `unknown_ttl_s`."""

    def __init__(
        self,
        registry: DeviceRegistry,
        *,
        known_ttl_s: float = 60.0,
        unknown_ttl_s: float = 5.0,
        monotonic: Callable[[], float] = time.monotonic,
    ):
        self.registry = registry
        self.known_ttl_s = known_ttl_s
        self.unknown_ttl_s = unknown_ttl_s
        self.monotonic = monotonic
        self._until: dict[str, tuple[float, bool]] = {}

    def __contains__(self, device_id: str) -> bool:
        now = self.monotonic()
        cached = self._until.get(device_id)
        if cached is not None and now < cached[0]:
            return cached[1]
        known = self.registry.find(device_id) is not None
        if len(self._until) > 100_000:
            self._until.clear()  # strangers with random ids must not grow this without bound
        self._until[device_id] = (now + (self.known_ttl_s if known else self.unknown_ttl_s), known)
        return known


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
        self.writer.submit(Report(device_id, env.message_id, env.telemetry, keys))
        return True
