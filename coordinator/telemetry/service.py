"""TelemetryService: the telemetry subsystem of the coordinator in one object.

    service = TelemetryService(store, registry, metrics, cfg.telemetry, limiter=ingest.limiter, process=True)
    service.attach(ingest)
    metrics.registry.register(service.collector)
    service.start()  ...  service.stop()   # stop writes everything queued

With process=True (the coordinator's default: telemetry.ingest_process) ingest hands telemetry payloads
undecoded to a child process that runs intake, writer and retention (process.py); queries and the
/metrics collector stay here. With process=False (unit tests, an in-memory store) all of it runs in this
process. The admin API (coordinator/api/telemetry.py) builds one in setup_area; bench/ingest.py builds
one beside a CoordinatorLink and an Ingest without the rest of the coordinator.
"""
from __future__ import annotations

import logging
import time
from datetime import datetime, timezone
from typing import Callable

from coordinator.config import TelemetryConfig
from coordinator.ingest import RateLimitedLog
from coordinator.metrics import CoordinatorMetrics
from coordinator.store.db import Store
from coordinator.store.devices import DeviceRegistry
from coordinator.telemetry.collector import FleetTelemetryCollector
from coordinator.store.known import KnownDevices
from coordinator.telemetry.intake import TelemetryIntake
from coordinator.telemetry.layouts import BucketLayouts
from coordinator.telemetry.process import TelemetryProcess, usable
from coordinator.telemetry.queries import TelemetryFilter, TelemetryQueries
from coordinator.telemetry.retention import RetentionJob, max_age_s
from coordinator.telemetry.writer import TelemetryWriter
from edgefleet import topics

log = logging.getLogger(__name__)


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
        process: bool = False,
    ):
        self.cfg = cfg
        if process and not usable(store.url):
            log.warning("telemetry ingest runs in the coordinator's process: a child process cannot open %s", store.url)
            process = False
        # In process mode the child runs its own intake and writer; these stay unused here.
        self.remote = TelemetryProcess(store.url, cfg, metrics) if process else None
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
        if self.remote is not None:
            metrics.telemetry_queue.set_function(self.remote.depth)
        self.known = KnownDevices(registry, monotonic=monotonic)
        self.handle = TelemetryIntake(
            self.known, self.writer, metrics, limiter, max_future_s=cfg.max_future_s, max_age_s=max_age_s(cfg), clock=clock
        )
        self.queries = TelemetryQueries(store, registry, self.layouts)
        self.collector = FleetTelemetryCollector(self.queries, cfg.live_window_s, clock)

    def attach(self, ingest) -> None:
        """Make this service ingest's telemetry handler (undecoded payloads to the child in process mode)."""
        if self.remote is not None:
            ingest.raw_handlers[topics.TELEMETRY] = self.remote.handle_raw
        else:
            ingest.handlers[topics.TELEMETRY] = self.handle

    def start(self) -> None:
        if self.remote is not None:
            self.remote.start()
        else:
            self.writer.start()

    def stop(self, timeout: float = 30.0) -> None:
        if self.remote is not None:
            self.remote.stop(timeout)
        else:
            self.writer.stop(timeout)

    def flush(self, timeout: float = 30.0) -> bool:
        return self.remote.flush(timeout) if self.remote is not None else self.writer.flush(timeout)

    def query(self, f: TelemetryFilter):
        return self.queries.query(f)
