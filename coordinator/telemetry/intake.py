"""The telemetry handler ingest calls for every report: known device? valid? then queue it for the writer.

It runs on one ingest thread, so it stays cheap: the set of known devices is cached in memory (loaded
in one query; a hit costs none; a removed device is forgotten within `known_ttl_s`, a stranger is looked
up again after `unknown_ttl_s`), validation is plain comparisons (validation.py), and the store work happens
on the writer's thread, which also acknowledges each report to the broker after its commit (acks.py).
"""
from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import Callable

from sqlalchemy import select

from coordinator import acks
from coordinator.ingest import RateLimitedLog
from coordinator.metrics import CoordinatorMetrics
from coordinator.store.devices import DeviceRegistry
from coordinator.store.schema import DeviceRow
from coordinator.telemetry.records import Report
from coordinator.telemetry.validation import problem
from coordinator.telemetry.writer import TelemetryWriter


class KnownDevices:
    """Whether a device id is registered. Every registered id is loaded in one query and reloaded every
    `known_ttl_s` (a removed device is forgotten by then); an id not among them is looked up on its own (a
    device registered since the load), and a stranger's miss is remembered for `unknown_ttl_s`.

    One query per `known_ttl_s` for the whole fleet: a lookup per device and TTL would cost one query for
    every sixth report at the agents' default 10 s interval, milliseconds each under load."""

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
        self._ids: set[str] = set()
        self._loaded_at: float | None = None
        self._strangers: dict[str, float] = {}

    def __contains__(self, device_id: str) -> bool:
        now = self.monotonic()
        if self._loaded_at is None or now - self._loaded_at >= self.known_ttl_s:
            with self.registry.store.session() as s:
                self._ids = set(s.scalars(select(DeviceRow.id)))
            self._loaded_at = now
            self._strangers.clear()
        if device_id in self._ids:
            return True
        until = self._strangers.get(device_id)
        if until is not None and now < until:
            return False
        if self.registry.find(device_id) is not None:
            self._ids.add(device_id)
            return True
        if len(self._strangers) > 100_000:
            self._strangers.clear()  # strangers with random ids must not grow this without bound
        self._strangers[device_id] = now + self.unknown_ttl_s
        return False


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
