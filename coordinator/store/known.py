"""Which device ids are registered, from memory: the ingest thread's handlers ask this for every message
(telemetry reports, install events), so a fleet's lookups cost one query per `known_ttl_s`, not one per
device (a query costs milliseconds while the machine is busy, and ingest is one thread)."""
from __future__ import annotations

import time
from typing import Callable

from sqlalchemy import select

from coordinator.store.devices import DeviceRegistry
from coordinator.store.schema import DeviceRow


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
