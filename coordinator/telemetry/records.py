"""Reports as table rows, and stored rows back as the admin API's messages.

A report (one Telemetry from one device) becomes one row per model version it carries, or one row with an
empty model when it carries none (its system figures are worth keeping). `detail` keeps the whole
ModelTelemetry (histogram counts, per-feature drift) minus the histogram bounds (see layouts.py).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable

from coordinator.telemetry.dialects import TimeParams
from coordinator.telemetry.histograms import bounds_key
from coordinator.telemetry.layouts import BucketLayouts
from edgefleet.v1 import admin_pb2, telemetry_pb2


# The agent's power source when the device has no meter and no power model: its figures are zeros, not data.
NO_POWER = "none"


@dataclass(slots=True)
class Report:
    """A validated report waiting for the writer. `layout_keys`: each model's packed histogram bounds as
    validation saw them (histograms.bounds_key), so the writer need not pack them again; may be empty.
    `on_stored`: called once the report is committed, or dropped for good (the link's PUBACK)."""

    device_id: str
    message_id: str
    telemetry: telemetry_pb2.Telemetry
    layout_keys: list[bytes] = field(default_factory=list)
    on_stored: Callable[[], None] | None = None


def utc(dt: datetime) -> datetime:
    # SQLite hands back naive datetimes; everything stored is UTC.
    return dt.replace(tzinfo=timezone.utc) if dt.tzinfo is None else dt


def sample_rows(report: Report, layouts: BucketLayouts, times: TimeParams) -> list[dict[str, Any]]:
    """Column dicts for telemetry_samples, values ready as driver parameters (every dict has the same keys).

    received_at is left None: the writer sets it for the whole batch."""
    t = report.telemetry
    ws, we = t.window_start, t.window_end
    has_system = t.HasField("system")
    s = t.system
    base: dict[str, Any] = {
        "device_id": report.device_id,
        "message_id": report.message_id,
        "received_at": None,
        "sequence": t.sequence,
        "window_start": times.stamp(ws.seconds, ws.nanos),
        "window_end": times.stamp(we.seconds, we.nanos),
        "windows": 1,
        "covered_s": (we.seconds - ws.seconds) + (we.nanos - ws.nanos) * 1e-9,
        "outbox_dropped": t.outbox_dropped,
        "cpu_percent": s.cpu_percent if has_system else None,
        "rss_bytes": s.rss_bytes if has_system else None,
        "temperature_c": s.temperature_c if has_system and s.has_temperature else None,
        "memory_available_bytes": s.memory_available_bytes if has_system else None,
        "storage_free_bytes": s.storage_free_bytes if has_system else None,
        "model": "",
        "version": "",
        "variant_id": "",
        "requests": 0,
        "errors": 0,
        "p50_ms": 0.0,
        "p95_ms": 0.0,
        "p99_ms": 0.0,
        "inferences_per_s": 0.0,
        "power_source": "",
        "avg_watts": None,
        "energy_mj": None,
        "golden_metric": None,
        "golden_count": 0,
        "online_metric": None,
        "online_count": 0,
        "mean_confidence": None,
        "drift_method": "",
        "drift_max": None,
        "hist_layout": "",
        "detail": None,
    }
    if not t.models:
        return [base]
    rows = []
    keys = report.layout_keys
    for i, m in enumerate(t.models):
        row = base.copy()
        row["model"] = m.model
        row["version"] = m.version
        row["variant_id"] = m.variant_id
        row["requests"] = m.requests
        row["errors"] = m.errors
        row["p50_ms"] = m.p50_ms
        row["p95_ms"] = m.p95_ms
        row["p99_ms"] = m.p99_ms
        row["inferences_per_s"] = m.inferences_per_s
        if m.HasField("power"):
            p = m.power
            row["power_source"] = p.source
            if p.source != NO_POWER:
                row["avg_watts"] = p.avg_watts
                row["energy_mj"] = p.energy_per_inference_mj
        if m.HasField("accuracy"):
            a = m.accuracy
            # A zero count means "not measured in this window", not an accuracy of 0.
            if a.golden_count:
                row["golden_metric"] = a.golden_metric
                row["golden_count"] = a.golden_count
            if a.online_count:
                row["online_metric"] = a.online_metric
                row["online_count"] = a.online_count
            if m.requests:
                row["mean_confidence"] = a.mean_confidence
        if m.HasField("drift"):
            row["drift_method"] = m.drift.method
            row["drift_max"] = m.drift.max_score
        if m.HasField("latency"):
            key = keys[i] if i < len(keys) else bounds_key(m.latency)
            if key:
                row["hist_layout"] = layouts.digest_for_key(key)
                m.latency.ClearField("bounds_ms")  # the report is ours now: strip in place, no copy
        row["detail"] = m.SerializeToString()
        rows.append(row)
    return rows


def model_telemetry(row: Any, layouts: BucketLayouts, session=None) -> telemetry_pb2.ModelTelemetry | None:
    """The stored ModelTelemetry of a row (bounds restored); None for a model-less row."""
    if not row.model:
        return None
    if row.detail:
        mt = telemetry_pb2.ModelTelemetry.FromString(row.detail)
    else:
        mt = telemetry_pb2.ModelTelemetry(
            model=row.model, version=row.version, variant_id=row.variant_id, requests=row.requests, errors=row.errors,
            p50_ms=row.p50_ms, p95_ms=row.p95_ms, p99_ms=row.p99_ms, inferences_per_s=row.inferences_per_s,
        )
    bounds = layouts.bounds(row.hist_layout, session)
    if bounds is not None and mt.HasField("latency"):
        mt.latency.bounds_ms.extend(bounds)
    return mt


def system_telemetry(row: Any) -> telemetry_pb2.SystemTelemetry | None:
    if row.cpu_percent is None and row.rss_bytes is None and row.temperature_c is None:
        return None
    return telemetry_pb2.SystemTelemetry(
        cpu_percent=row.cpu_percent or 0.0,
        rss_bytes=row.rss_bytes or 0,
        has_temperature=row.temperature_c is not None,
        temperature_c=row.temperature_c or 0.0,
        memory_available_bytes=row.memory_available_bytes or 0,
        storage_free_bytes=row.storage_free_bytes or 0,
    )


def telemetry_row(
    row: Any,
    device_name: str,
    mt: telemetry_pb2.ModelTelemetry | None,
    *,
    rolled_up: bool,
) -> admin_pb2.TelemetryRow:
    """A stored row (raw window, rollup, or an Aggregate) as the admin API's TelemetryRow."""
    out = admin_pb2.TelemetryRow(
        device_id=row.device_id,
        device_name=device_name,
        windows=row.windows,
        outbox_dropped=row.outbox_dropped,
        rolled_up=rolled_up,
    )
    out.at.FromDatetime(utc(row.window_end))
    out.window_start.FromDatetime(utc(row.window_start))
    if mt is not None:
        out.model.CopyFrom(mt)
    system = system_telemetry(row)
    if system is not None:
        out.system.CopyFrom(system)
    return out
