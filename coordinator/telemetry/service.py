"""TelemetryService: the telemetry subsystem of the coordinator in one object.

    service = TelemetryService(store, registry, metrics, cfg.telemetry, limiter=ingest.limiter)
    ingest.handlers[topics.TELEMETRY] = service.handle
    metrics.registry.register(service.collector)
    service.start()  ...  service.stop()   # stop writes everything queued

The admin API (coordinator/api/telemetry.py) builds one in setup_area; bench/ingest.py builds one beside a
CoordinatorLink and an Ingest without the rest of the coordinator.
"""
from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import Callable

from coordinator.config import TelemetryConfig
from coordinator.ingest import RateLimitedLog
from coordinator.metrics import CoordinatorMetrics
from coordinator.store.db import Store
from coordinator.store.devices import DeviceRegistry
from coordinator.telemetry.collector import FleetTelemetryCollector
from coordinator.telemetry.intake import KnownDevices, TelemetryIntake
from coordinator.telemetry.layouts import BucketLayouts
from coordinator.telemetry.queries import TelemetryFilter, TelemetryQueries
from coordinator.telemetry.retention import RetentionJob, max_age_s
from coordinator.telemetry.writer import TelemetryWriter


class TelemetryService:
    def __init__(
        self,
        store: Store,
        registry: DeviceRegistry,
        metrics: CoordinatorMetrics,
        cfg: TelemetryConfig,
        *,
        limiter: RateLimitedLog | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
        monotonic: Callable[[], float] = time.monotonic,
    ):
        self.cfg = cfg
        limiter = limiter or RateLimitedLog()
        self.layouts = BucketLayouts(store)
        self.retention = RetentionJob(store, cfg, self.layouts)
        self.writer = TelemetryWriter(
            store,
            self.layouts,
            metrics,
            batch_size=cfg.batch_size,
            flush_interval_s=cfg.flush_interval_s,
            queue_size=cfg.queue_size,
            clock=clock,
            maintenance=self.retention,
            maintenance_interval_s=cfg.maintenance_interval_s,
            monotonic=monotonic,
            limiter=limiter,
        )
        self.known = KnownDevices(registry, monotonic=monotonic)
        self.handle = TelemetryIntake(
            self.known, self.writer, metrics, limiter, max_future_s=cfg.max_future_s, max_age_s=max_age_s(cfg), clock=clock
        )
        self.queries = TelemetryQueries(store, registry, self.layouts)
        self.collector = FleetTelemetryCollector(self.queries, cfg.live_window_s, clock)

    def start(self) -> None:
        self.writer.start()

    def stop(self, timeout: float = 30.0) -> None:
        self.writer.stop(timeout)

    def flush(self, timeout: float = 30.0) -> bool:
        return self.writer.flush(timeout)

    def query(self, f: TelemetryFilter):
        return self.queries.query(f)
