"""Telemetry thresholds: figures read from the telemetry area's store for the devices that committed, and the breaches."""
from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

from agent.telemetry.histogram import LatencyHistogram
from coordinator.config import TelemetryConfig
from coordinator.ingest import Ingest
from coordinator.metrics import CoordinatorMetrics
from coordinator.rollouts.observe import Figures, TelemetryObserver, threshold_breach
from coordinator.rollouts.spec import RolloutParams
from coordinator.store.devices import DeviceRegistry
from coordinator.telemetry.service import TelemetryService
from edgefleet import envelope, topics
from edgefleet.v1 import telemetry_pb2

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=timezone.utc)


def report(end: datetime, version: str, latencies: list[float], *, errors: int = 0, golden: tuple[float, int] | None = None) -> telemetry_pb2.Telemetry:
    h = LatencyHistogram()
    for ms in latencies:
        h.observe(ms)
    m = telemetry_pb2.ModelTelemetry(model="digits", version=version, variant_id="int8", requests=len(latencies), errors=errors,
                                     p50_ms=h.percentile(50), p95_ms=h.percentile(95), p99_ms=h.percentile(99))
    m.latency.CopyFrom(h.to_proto())
    if golden:
        m.accuracy.golden_metric, m.accuracy.golden_count = golden
    t = telemetry_pb2.Telemetry()
    t.window_start.FromDatetime(end - timedelta(seconds=10))
    t.window_end.FromDatetime(end)
    t.models.append(m)
    return t


def test_figures_come_from_the_committed_devices_and_this_version_only(store):
    registry = DeviceRegistry(store, clock=lambda: NOW)
    metrics = CoordinatorMetrics()
    ingest = Ingest(registry, metrics)
    service = TelemetryService(store, registry, metrics, TelemetryConfig(flush_interval_s=0.02), limiter=ingest.limiter, clock=lambda: NOW)
    ingest.handlers[topics.TELEMETRY] = service.handle
    a, b, c = (registry.register(n, {}, 600).device.id for n in ("a", "b", "c"))

    def send(device_id: str, t: telemetry_pb2.Telemetry) -> None:
        assert ingest.handle(topics.telemetry(device_id), envelope.encode(device_id, telemetry=t, message_id=uuid.uuid4().hex)) == "ok"

    since = NOW - timedelta(minutes=5)
    send(a, report(NOW - timedelta(minutes=1), "3", [10.0] * 80 + [40.0] * 20, errors=2, golden=(0.97, 256)))
    send(b, report(NOW - timedelta(minutes=1), "3", [12.0] * 100, golden=(0.95, 256)))
    send(c, report(NOW - timedelta(minutes=1), "3", [500.0] * 100, errors=100))  # not committed: not counted
    send(a, report(NOW - timedelta(minutes=2), "2", [900.0] * 100))  # the old version: not counted
    send(b, report(NOW - timedelta(minutes=30), "3", [900.0] * 100))  # before the wave started: not counted
    assert service.flush(10)

    observe = TelemetryObserver(lambda: service)
    fig = observe([a, b], "digits", "3", since)
    assert (fig.devices, fig.requests, fig.errors, fig.metric_source) == (2, 200, 2, "golden")
    assert 30.0 < fig.p95_ms < 50.0  # from the merged histograms: 20 of 200 at 40 ms
    assert abs(fig.metric - 0.96) < 1e-9
    assert observe([c], "digits", "4", since) is None  # nothing reported for that version
    assert TelemetryObserver(lambda: None)([a], "digits", "3", since) is None  # no telemetry area: nothing breaks

    assert threshold_breach(fig, RolloutParams(max_p95_ms=60.0, max_error_rate=0.02, min_metric=0.9)) is None
    assert "p95" in threshold_breach(fig, RolloutParams(max_p95_ms=20.0))
    assert "error rate 1% > 0.5%" in threshold_breach(fig, RolloutParams(max_error_rate=0.005))
    assert "golden accuracy 0.96 < 0.97 required" in threshold_breach(fig, RolloutParams(min_metric=0.97), "accuracy")


def test_breaches_need_figures():
    p = RolloutParams(max_p95_ms=10.0, max_error_rate=0.01, min_metric=0.9, max_metric=0.5)
    assert threshold_breach(None, p) is None
    assert threshold_breach(Figures(devices=1, requests=0), p) is None  # no requests: no latency or error rate
    assert "> 0.5 allowed" in threshold_breach(Figures(devices=1, requests=0, metric=0.7, metric_source="golden"), RolloutParams(max_metric=0.5), "mae")
