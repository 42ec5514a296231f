"""Fleet telemetry for Prometheus, read from the store when /metrics is scraped.

Per model version, over every device's newest report that ended within `live_window_s` (telemetry_latest:
one indexed query, O(devices)):

  edgefleet_model_devices_reporting{model,version}
  edgefleet_model_latency_ms{model,version,quantile="0.5|0.95|0.99"}   from the devices' histograms merged
  edgefleet_model_inferences_per_second{model,version}                 summed over devices
  edgefleet_model_energy_per_inference_mj{model,version}               request-weighted; only when reported
  edgefleet_model_accuracy{model,version,kind="golden|online"}         count-weighted; only when measured
  edgefleet_model_confidence{model,version}
  edgefleet_model_drift_max{model,version}

Request and error counters for rate() are edgefleet_model_requests_total / _errors_total (metrics.py),
counted by the writer as reports are stored.
"""
from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone
from typing import Callable

from coordinator.telemetry.queries import TelemetryQueries

log = logging.getLogger(__name__)


class FleetTelemetryCollector:
    def __init__(self, queries: TelemetryQueries, live_window_s: float, clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc)):
        self.queries = queries
        self.live_window_s = live_window_s
        self.clock = clock

    def collect(self):
        from prometheus_client.core import GaugeMetricFamily

        labels = ["model", "version"]
        devices = GaugeMetricFamily("edgefleet_model_devices_reporting", "Devices whose latest report carries this model version", labels=labels)
        latency = GaugeMetricFamily(
            "edgefleet_model_latency_ms", "Inference latency percentiles over the fleet's merged histograms (ms)", labels=labels + ["quantile"]
        )
        ips = GaugeMetricFamily("edgefleet_model_inferences_per_second", "Inferences per second, summed over devices", labels=labels)
        energy = GaugeMetricFamily(
            "edgefleet_model_energy_per_inference_mj", "Energy per inference (mJ), request-weighted over devices that report it", labels=labels
        )
        accuracy = GaugeMetricFamily("edgefleet_model_accuracy", "Accuracy on the golden set and from app feedback (online)", labels=labels + ["kind"])
        confidence = GaugeMetricFamily("edgefleet_model_confidence", "Mean top-1 confidence, request-weighted", labels=labels)
        drift = GaugeMetricFamily("edgefleet_model_drift_max", "Largest input drift score of any device", labels=labels)
        try:
            figures = self.queries.live_fleet(self.clock() - timedelta(seconds=self.live_window_s))
        except Exception as exc:  # noqa: BLE001 - a scrape must not fail because the store blinked
            log.warning("fleet telemetry for /metrics unavailable: %s", exc)
            figures = []
        for f in figures:
            key = [f.model, f.version]
            devices.add_metric(key, f.devices)
            for q, value in (("0.5", f.p50_ms), ("0.95", f.p95_ms), ("0.99", f.p99_ms)):
                latency.add_metric(key + [q], value)
            ips.add_metric(key, f.inferences_per_s)
            if f.energy_devices:
                energy.add_metric(key, f.energy_per_inference_mj)
            if f.golden_count:
                accuracy.add_metric(key + ["golden"], f.golden_accuracy)
            if f.online_count:
                accuracy.add_metric(key + ["online"], f.online_accuracy)
            if f.mean_confidence > 0:  # 0: no device measured it
                confidence.add_metric(key, f.mean_confidence)
            drift.add_metric(key, f.drift_max)
        yield from (devices, latency, ips, energy, accuracy, confidence, drift)
