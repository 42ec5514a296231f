"""Builders for telemetry store tests: reports with real histograms, a fake clock, a coordinator-side harness."""
from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone
from typing import Sequence

from sqlalchemy import func, select

from agent.telemetry.histogram import LatencyHistogram
from coordinator.config import TelemetryConfig
from coordinator.ingest import Ingest, RateLimitedLog
from coordinator.metrics import CoordinatorMetrics
from coordinator.store.devices import DeviceRegistry
from coordinator.store.telemetry_tables import TelemetryLatestRow, TelemetryRollupRow, TelemetrySampleRow
from coordinator.telemetry.queries import TelemetryFilter
from coordinator.telemetry.service import TelemetryService
from edgefleet import envelope, topics
from edgefleet.v1 import telemetry_pb2

NOW = datetime(2026, 11, 21, 12, 0, 0, tzinfo=timezone.utc)


class Clock:
    """Wall clock (datetime) and monotonic clock (float) that move only when told."""

    def __init__(self, now: datetime = NOW):
        self.now = now
        self.mono = 1000.0

    def __call__(self) -> datetime:
        return self.now

    def monotonic(self) -> float:
        return self.mono

    def advance(self, **kw: float) -> None:
        delta = timedelta(**kw)
        self.now += delta
        self.mono += delta.total_seconds()


def histogram(latencies: Sequence[float]) -> LatencyHistogram:
    h = LatencyHistogram()
    for ms in latencies:
        h.observe(ms)
    return h


def model(
    name: str = "digits",
    version: str = "3",
    variant: str = "int8",
    latencies: Sequence[float] = (1.0, 2.0, 3.0),
    *,
    errors: int = 0,
    window_s: float = 10.0,
    energy_mj: float | None = None,
    watts: float = 2.0,
    source: str = "estimate",
    golden: tuple[float, int] | None = None,
    online: tuple[float, int] | None = None,
    confidence: float | None = None,
    drift: float | None = None,
    with_histogram: bool = True,
) -> telemetry_pb2.ModelTelemetry:
    h = histogram(latencies)
    m = telemetry_pb2.ModelTelemetry(
        model=name, version=version, variant_id=variant, requests=len(latencies), errors=errors,
        p50_ms=h.percentile(50), p95_ms=h.percentile(95), p99_ms=h.percentile(99), inferences_per_s=len(latencies) / window_s,
    )
    if with_histogram:
        m.latency.CopyFrom(h.to_proto())
    if energy_mj is not None:
        m.power.CopyFrom(telemetry_pb2.PowerFigures(source=source, avg_watts=watts, energy_per_inference_mj=energy_mj))
    if golden or online or confidence is not None:
        acc = m.accuracy
        if golden:
            acc.golden_metric, acc.golden_count = golden
        if online:
            acc.online_metric, acc.online_count = online
        acc.mean_confidence = confidence or 0.0
    if drift is not None:
        m.drift.CopyFrom(telemetry_pb2.DriftFigures(method="psi", max_score=drift, per_feature=[drift / 2, drift], samples=len(latencies)))
    return m


def report(
    end: datetime,
    *models: telemetry_pb2.ModelTelemetry,
    window_s: float = 10.0,
    cpu: float = 12.5,
    rss: int = 50_000_000,
    temperature: float | None = None,
    outbox_dropped: int = 0,
    sequence: int = 0,
) -> telemetry_pb2.Telemetry:
    t = telemetry_pb2.Telemetry(outbox_dropped=outbox_dropped, sequence=sequence)
    t.window_start.FromDatetime(end - timedelta(seconds=window_s))
    t.window_end.FromDatetime(end)
    t.system.CopyFrom(telemetry_pb2.SystemTelemetry(
        cpu_percent=cpu, rss_bytes=rss, has_temperature=temperature is not None, temperature_c=temperature or 0.0,
        memory_available_bytes=1 << 30, storage_free_bytes=1 << 33,
    ))
    t.models.extend(models)
    return t


class Harness:
    """Registry + Ingest + TelemetryService on one store, with a fake clock. The writer thread is not
    started unless start() is called: submits are then written synchronously, which keeps tests exact."""

    def __init__(self, store, cfg: TelemetryConfig | None = None, clock: Clock | None = None):
        self.store = store
        self.clock = clock or Clock()
        self.registry = DeviceRegistry(store, clock=self.clock)
        self.metrics = CoordinatorMetrics()
        self.limiter = RateLimitedLog(60, self.clock.monotonic)
        self.ingest = Ingest(self.registry, self.metrics, log_limiter=self.limiter)
        self.cfg = cfg or TelemetryConfig(flush_interval_s=0.02)
        self.service = TelemetryService(store, self.registry, self.metrics, self.cfg, limiter=self.limiter, clock=self.clock, monotonic=self.clock.monotonic)
        self.ingest.handlers[topics.TELEMETRY] = self.service.handle
        self.metrics.registry.register(self.service.collector)

    def register(self, name: str, **labels: str) -> str:
        return self.registry.register(name, labels, 3600).device.id

    def send(self, device_id: str, telemetry: telemetry_pb2.Telemetry, message_id: str | None = None) -> str:
        payload = envelope.encode(device_id, telemetry=telemetry, message_id=message_id or uuid.uuid4().hex)
        return self.ingest.handle(topics.telemetry(device_id), payload)

    def query(self, **kw):
        return self.service.query(TelemetryFilter(**kw))

    def count(self, table=TelemetrySampleRow) -> int:
        with self.store.session() as s:
            return s.scalar(select(func.count()).select_from(table))

    def counts(self) -> tuple[int, int, int]:
        return self.count(TelemetrySampleRow), self.count(TelemetryRollupRow), self.count(TelemetryLatestRow)

    def metric(self, name: str, labels: dict | None = None) -> float:
        return self.metrics.registry.get_sample_value(name, labels or {}) or 0.0

    def dropped(self, reason: str) -> float:
        return self.metric("edgefleet_mqtt_dropped_total", {"reason": reason})
