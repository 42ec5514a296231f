"""Merging telemetry: many windows of one device into one (rollups, summaries), and many devices into one
fleet figure per model version.

How each figure merges, and where that is an approximation:

  requests, errors, windows, covered seconds, outbox_dropped   summed
  p50 / p95 / p99        from the merged latency histograms (exact to one bucket, ~12 %) when every window
                         with requests carries a histogram of one bucket layout; otherwise the request-weighted
                         mean of the reported percentiles (an approximation: a mean of percentiles is not a
                         percentile) — rows merged that way read rolled_up and the docs say so
  inferences/s           requests / covered seconds (summed window lengths)
  energy per inference   request-weighted mean (= total energy / total inferences); power: time-weighted mean
  golden accuracy        the newest evaluation (it is a point-in-time measurement, repeated until the next)
  online accuracy        online_count-weighted mean, counts summed (figures are per window)
  confidence             request-weighted mean
  drift                  the largest score (per feature: the largest per feature)
  CPU %                  time-weighted mean;  RSS, temperature: the largest;  memory/storage free: the newest
"""
from __future__ import annotations

from datetime import datetime
from typing import Any, Sequence

from coordinator.telemetry import histograms
from coordinator.telemetry.records import NO_POWER, utc
from edgefleet.v1 import admin_pb2, telemetry_pb2


class _Mean:
    """A weighted mean that falls back to the plain mean when every weight is 0."""

    __slots__ = ("wsum", "weight", "total", "n")

    def __init__(self) -> None:
        self.wsum = self.weight = self.total = 0.0
        self.n = 0

    def add(self, value: float, weight: float) -> None:
        self.wsum += value * weight
        self.weight += weight
        self.total += value
        self.n += 1

    def value(self) -> float | None:
        if self.weight > 0:
            return self.wsum / self.weight
        return self.total / self.n if self.n else None


class Aggregate:
    """Rows of one device and model version (raw windows, rollups, or both) merged into one."""

    def __init__(self, device_id: str, model: str, version: str, variant_id: str) -> None:
        self.device_id, self.model, self.version, self.variant_id = device_id, model, version, variant_id
        self.window_start: datetime | None = None
        self.window_end: datetime | None = None
        self.windows = 0
        self.covered_s = 0.0
        self.requests = 0
        self.errors = 0
        self.outbox_dropped = 0
        self._pct = (_Mean(), _Mean(), _Mean())
        self._ips = _Mean()
        self._bounds: tuple[float, ...] | None = None
        self._counts: list[int] | None = None
        self._sum_ms = 0.0
        self._hist_ok = True
        self.power_source = ""
        self._source_at: datetime | None = None
        self._watts = _Mean()
        self._energy = _Mean()
        self._golden: tuple[datetime, float, int] | None = None
        self._online = _Mean()
        self.online_count = 0
        self._confidence = _Mean()
        self.drift_method = ""
        self.drift_max: float | None = None
        self._drift_features: list[float] | None = None
        self._drift_samples = 0
        self._cpu = _Mean()
        self.rss_bytes: int | None = None
        self.temperature_c: float | None = None
        self._newest_at: datetime | None = None
        self.memory_available_bytes: int | None = None
        self.storage_free_bytes: int | None = None

    def add(self, row: Any, mt: telemetry_pb2.ModelTelemetry | None) -> None:
        """Merge one stored row (attribute access to the figure columns) and its ModelTelemetry (bounds restored)."""
        start, end = utc(row.window_start), utc(row.window_end)
        self.window_start = start if self.window_start is None else min(self.window_start, start)
        newest = self.window_end is None or end >= self.window_end
        self.window_end = end if self.window_end is None else max(self.window_end, end)
        self.windows += row.windows
        self.covered_s += row.covered_s
        self.requests += row.requests
        self.errors += row.errors
        self.outbox_dropped += row.outbox_dropped
        for mean, value in zip(self._pct, (row.p50_ms, row.p95_ms, row.p99_ms)):
            mean.add(value, row.requests)
        self._ips.add(row.inferences_per_s, row.covered_s)
        self._add_histogram(row, mt)
        if row.power_source and (self._source_at is None or end >= self._source_at):
            self.power_source, self._source_at = row.power_source, end
        if row.avg_watts is not None:
            self._watts.add(row.avg_watts, row.covered_s)
        if row.energy_mj is not None:
            self._energy.add(row.energy_mj, row.requests)
        if row.golden_metric is not None and (self._golden is None or end >= self._golden[0]):
            self._golden = (end, row.golden_metric, row.golden_count)
        if row.online_metric is not None:
            self._online.add(row.online_metric, row.online_count)
            self.online_count += row.online_count
        if row.mean_confidence is not None:
            self._confidence.add(row.mean_confidence, row.requests)
        if row.drift_max is not None:
            self._add_drift(row, mt)
        if row.cpu_percent is not None:
            self._cpu.add(row.cpu_percent, row.covered_s)
        if row.rss_bytes is not None:
            self.rss_bytes = max(self.rss_bytes or 0, row.rss_bytes)
        if row.temperature_c is not None:
            self.temperature_c = row.temperature_c if self.temperature_c is None else max(self.temperature_c, row.temperature_c)
        if newest or self._newest_at is None:
            self._newest_at = end
            if row.memory_available_bytes is not None:
                self.memory_available_bytes = row.memory_available_bytes
            if row.storage_free_bytes is not None:
                self.storage_free_bytes = row.storage_free_bytes

    def _add_histogram(self, row: Any, mt: telemetry_pb2.ModelTelemetry | None) -> None:
        if not self._hist_ok:
            return
        latency = mt.latency if mt is not None and mt.HasField("latency") else None
        if latency is None or not latency.bounds_ms:
            if row.requests:
                self._hist_ok = False  # requests without a histogram: fall back to weighted percentiles
            return
        bounds = tuple(latency.bounds_ms)
        if self._bounds is None:
            self._bounds, self._counts = bounds, [0] * (len(bounds) + 1)
        elif bounds != self._bounds:
            self._hist_ok = False
            return
        histograms.add_counts(self._counts, latency.counts)
        self._sum_ms += latency.sum_ms

    def _add_drift(self, row: Any, mt: telemetry_pb2.ModelTelemetry | None) -> None:
        larger = self.drift_max is None or row.drift_max >= self.drift_max
        if larger:
            self.drift_method = row.drift_method or self.drift_method
            self.drift_max = row.drift_max
        if mt is None or not mt.HasField("drift"):
            return
        self._drift_samples += mt.drift.samples
        features = list(mt.drift.per_feature)
        if self._drift_features is not None and len(self._drift_features) == len(features):
            self._drift_features = [max(a, b) for a, b in zip(self._drift_features, features)]
        elif larger and features:
            self._drift_features = features  # a different feature count: keep the worse window's

    # -- results

    @property
    def histogram_merged(self) -> bool:
        return self._hist_ok and self._bounds is not None

    def percentiles(self) -> tuple[float, float, float]:
        if self.histogram_merged:
            return tuple(histograms.percentile(self._bounds, self._counts, q) for q in (50, 95, 99))  # type: ignore[return-value]
        return tuple(m.value() or 0.0 for m in self._pct)  # type: ignore[return-value]

    def inferences_per_s(self) -> float:
        if self.covered_s > 0:
            return self.requests / self.covered_s
        return self._ips.value() or 0.0

    def model_telemetry(self) -> telemetry_pb2.ModelTelemetry | None:
        """The merged figures as a ModelTelemetry (histogram with bounds); None for model-less rows."""
        if not self.model:
            return None
        p50, p95, p99 = self.percentiles()
        mt = telemetry_pb2.ModelTelemetry(
            model=self.model, version=self.version, variant_id=self.variant_id, requests=self.requests, errors=self.errors,
            p50_ms=p50, p95_ms=p95, p99_ms=p99, inferences_per_s=self.inferences_per_s(),
        )
        if self.histogram_merged:
            mt.latency.bounds_ms.extend(self._bounds)
            mt.latency.counts.extend(self._counts)
            mt.latency.sum_ms = self._sum_ms
        watts, energy = self._watts.value(), self._energy.value()
        if self.power_source or watts is not None or energy is not None:
            mt.power.CopyFrom(telemetry_pb2.PowerFigures(source=self.power_source, avg_watts=watts or 0.0, energy_per_inference_mj=energy or 0.0))
        online, confidence = self._online.value(), self._confidence.value()
        if self._golden is not None or online is not None or confidence is not None:
            acc = mt.accuracy
            if self._golden is not None:
                acc.golden_metric, acc.golden_count = self._golden[1], self._golden[2]
            if online is not None:
                acc.online_metric, acc.online_count = online, self.online_count
            acc.mean_confidence = confidence or 0.0
        if self.drift_max is not None:
            mt.drift.CopyFrom(telemetry_pb2.DriftFigures(
                method=self.drift_method, max_score=self.drift_max, per_feature=self._drift_features or [], samples=self._drift_samples,
            ))
        return mt

    def columns(self, layouts) -> dict[str, Any]:
        """The figure columns of a rollup row (detail without bounds, named by hist_layout)."""
        mt = self.model_telemetry()
        hist_layout = ""
        if mt is not None and mt.latency.bounds_ms:
            hist_layout = layouts.digest(mt.latency.bounds_ms)
            mt.latency.ClearField("bounds_ms")
        p50, p95, p99 = self.percentiles()
        golden = self._golden
        return {
            "device_id": self.device_id, "model": self.model, "version": self.version, "variant_id": self.variant_id,
            "window_start": self.window_start, "window_end": self.window_end, "windows": self.windows, "covered_s": self.covered_s,
            "requests": self.requests, "errors": self.errors, "p50_ms": p50, "p95_ms": p95, "p99_ms": p99,
            "inferences_per_s": self.inferences_per_s(), "power_source": self.power_source,
            "avg_watts": self._watts.value(), "energy_mj": self._energy.value(),
            "golden_metric": golden[1] if golden else None, "golden_count": golden[2] if golden else 0,
            "online_metric": self._online.value(), "online_count": self.online_count,
            "mean_confidence": self._confidence.value(), "drift_method": self.drift_method, "drift_max": self.drift_max,
            "cpu_percent": self._cpu.value(), "rss_bytes": self.rss_bytes, "temperature_c": self.temperature_c,
            "memory_available_bytes": self.memory_available_bytes, "storage_free_bytes": self.storage_free_bytes,
            "outbox_dropped": self.outbox_dropped, "hist_layout": hist_layout,
            "detail": mt.SerializeToString() if mt is not None else None,
        }

    # Attribute access like a stored row, so records.telemetry_row() and system_telemetry() take an Aggregate.
    @property
    def cpu_percent(self) -> float | None:
        return self._cpu.value()


class FleetAggregate:
    """Per model version over the rows of one query: devices, requests, merged-histogram percentiles, means."""

    def __init__(self, model: str, version: str) -> None:
        self.model, self.version = model, version
        self.devices: set[str] = set()
        self.energy_devices: set[str] = set()
        self.requests = self.errors = 0
        self.ips = 0.0
        self._bounds: tuple[float, ...] | None = None
        self._counts: list[int] | None = None
        self._hist_ok = True
        self._pct = (_Mean(), _Mean(), _Mean())
        self._energy = _Mean()
        self._golden = _Mean()
        self.golden_count = 0
        self._online = _Mean()
        self.online_count = 0
        self._confidence = _Mean()
        self.drift_max = 0.0

    def add(self, device_id: str, mt: telemetry_pb2.ModelTelemetry) -> None:
        self.devices.add(device_id)
        self.requests += mt.requests
        self.errors += mt.errors
        self.ips += mt.inferences_per_s
        for mean, value in zip(self._pct, (mt.p50_ms, mt.p95_ms, mt.p99_ms)):
            mean.add(value, mt.requests)
        self._add_histogram(mt)
        if mt.HasField("power") and mt.power.source != NO_POWER:
            self.energy_devices.add(device_id)
            self._energy.add(mt.power.energy_per_inference_mj, mt.requests)
        if mt.HasField("accuracy"):
            a = mt.accuracy
            if a.golden_count:
                self._golden.add(a.golden_metric, a.golden_count)
                self.golden_count += a.golden_count
            if a.online_count:
                self._online.add(a.online_metric, a.online_count)
                self.online_count += a.online_count
            if mt.requests:
                self._confidence.add(a.mean_confidence, mt.requests)
        if mt.HasField("drift"):
            self.drift_max = max(self.drift_max, mt.drift.max_score)

    def _add_histogram(self, mt: telemetry_pb2.ModelTelemetry) -> None:
        if not self._hist_ok:
            return
        if not mt.latency.bounds_ms:
            if mt.requests:
                self._hist_ok = False
            return
        bounds: Sequence[float] = mt.latency.bounds_ms
        if self._bounds is None:
            self._bounds, self._counts = tuple(bounds), [0] * (len(bounds) + 1)
        elif len(bounds) != len(self._bounds) or tuple(bounds) != self._bounds:
            self._hist_ok = False
            return
        histograms.add_counts(self._counts, mt.latency.counts)

    def proto(self) -> admin_pb2.FleetModelTelemetry:
        if self._hist_ok and self._bounds is not None:
            p50, p95, p99 = (histograms.percentile(self._bounds, self._counts, q) for q in (50, 95, 99))
        else:
            p50, p95, p99 = (m.value() or 0.0 for m in self._pct)
        return admin_pb2.FleetModelTelemetry(
            model=self.model, version=self.version, devices=len(self.devices), requests=self.requests, errors=self.errors,
            inferences_per_s=self.ips, p50_ms=p50, p95_ms=p95, p99_ms=p99,
            energy_per_inference_mj=self._energy.value() or 0.0, energy_devices=len(self.energy_devices),
            golden_accuracy=self._golden.value() or 0.0, golden_count=self.golden_count,
            online_accuracy=self._online.value() or 0.0, online_count=self.online_count,
            mean_confidence=self._confidence.value() or 0.0, drift_max=self.drift_max,
        )


def fleet(rows: Sequence[admin_pb2.TelemetryRow]) -> list[admin_pb2.FleetModelTelemetry]:
    """Fleet figures per model version over query rows (model-less rows are left out)."""
    groups: dict[tuple[str, str], FleetAggregate] = {}
    for row in rows:
        if not row.HasField("model"):
            continue
        key = (row.model.model, row.model.version)
        agg = groups.get(key)
        if agg is None:
            agg = groups[key] = FleetAggregate(*key)
        agg.add(row.device_id, row.model)
    return [groups[k].proto() for k in sorted(groups)]
