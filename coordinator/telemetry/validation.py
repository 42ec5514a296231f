"""What a telemetry report must look like to be stored. Anything else is dropped at ingest and counted
in edgefleet_mqtt_dropped_total{reason="bad_telemetry"}.

`problem()` returns None for a good report, else one sentence naming the field and what is wrong. It runs
on the link's single ingest thread for every report, so it is plain attribute reads and comparisons.

Refused:
  - windows without timestamps, ending more than `max_future_s` in the future (a device clock far ahead),
    older than `max_age_s` (years in the past, or past every retention), starting after they end, or
    longer than a day;
  - negative, NaN or infinite figures (latency, rate, power, energy, accuracy, confidence, drift, CPU);
    confidence outside 0..1; temperatures outside -100..250 °C;
  - percentiles out of order (p50 > p95 or p95 > p99);
  - histograms whose counts do not match their bounds, or whose bounds are not positive and increasing
    (a layout is checked once, then remembered by its packed bounds);
  - counters too large for a signed 64-bit column (no device counts 2**62 of anything in ten seconds);
  - a model without a name, names longer than the store's columns, or one model version twice in a report.
"""
from __future__ import annotations

import math

from coordinator.store.telemetry_tables import MESSAGE_ID_LEN, MODEL_LEN, SHORT_LEN, VARIANT_LEN, VERSION_LEN
from coordinator.telemetry.histograms import bounds_key, key_bounds
from edgefleet.v1 import telemetry_pb2

MAX_WINDOW_S = 86400.0
MAX_COUNT = 2**62
MAX_BUCKETS = 1000
MAX_FEATURES = 100_000
_isfinite = math.isfinite


def _bad_number(value: float) -> bool:
    # Negative, NaN (fails every comparison) or infinite.
    return not (value >= 0.0) or value == math.inf


def _fine(*values: float) -> bool:
    """All finite and >= 0, in two C calls (a NaN or an infinity makes the sum non-finite); the hot path."""
    return _isfinite(sum(values)) and min(values) >= 0.0


def _first_bad(named: tuple[tuple[str, float], ...]) -> str:
    for name, value in named:
        if _bad_number(value):
            return f"{name} is {value!r}: must be a finite number >= 0"
    return "figures too large to add up: " + ", ".join(f"{n} {v!r}" for n, v in named)


def problem(
    t: telemetry_pb2.Telemetry, now_s: float, *, max_future_s: float, max_age_s: float, message_id: str = "", layout_keys: list[bytes] | None = None
) -> str | None:
    """None for a good report, else what is wrong. `layout_keys`, when given, receives each model's packed
    histogram bounds (histograms.bounds_key; b"" without a histogram) so that the writer need not pack them again."""
    if len(message_id) > MESSAGE_ID_LEN:
        return f"message_id longer than {MESSAGE_ID_LEN} characters"
    start, end = t.window_start, t.window_end
    if end.seconds <= 0 or start.seconds <= 0:
        return "window_start and window_end must both be set"
    if not (0 <= end.nanos < 1_000_000_000 and 0 <= start.nanos < 1_000_000_000):
        return "window timestamp with nanos outside 0..999999999"
    end_s = end.seconds + end.nanos * 1e-9
    start_s = start.seconds + start.nanos * 1e-9
    if end_s > now_s + max_future_s:
        return f"window_end is {end_s - now_s:.0f} s in the future (more than {max_future_s:.0f} s of clock skew)"
    if end_s < now_s - max_age_s:
        return f"window_end is {(now_s - end_s) / 3600:.1f} h in the past (older than {max_age_s / 3600:.1f} h are not kept)"
    if start_s > end_s:
        return f"window_start is after window_end (by {start_s - end_s:.3f} s)"
    if end_s - start_s > MAX_WINDOW_S:
        return f"window of {(end_s - start_s) / 3600:.1f} h (at most {MAX_WINDOW_S / 3600:.0f} h)"
    if t.outbox_dropped >= MAX_COUNT or t.sequence >= MAX_COUNT:
        return "outbox_dropped or sequence is absurdly large"
    if t.HasField("system"):
        found = _system_problem(t.system)
        if found:
            return found
    seen: set[tuple[str, str, str]] = set()
    for i, m in enumerate(t.models):
        found = _model_problem(m, layout_keys)
        if found:
            return f"models[{i}] ({m.model[:MODEL_LEN]}:{m.version[:VERSION_LEN]}): {found}"
        key = (m.model, m.version, m.variant_id)
        if key in seen:
            return f"models[{i}]: {m.model}:{m.version} variant {m.variant_id!r} appears twice in one report"
        seen.add(key)
    return None


def _system_problem(s: telemetry_pb2.SystemTelemetry) -> str | None:
    if not (0.0 <= s.cpu_percent <= 100_000):
        return f"system.cpu_percent {s.cpu_percent!r} is not a percentage"
    if s.rss_bytes >= MAX_COUNT or s.memory_available_bytes >= MAX_COUNT or s.storage_free_bytes >= MAX_COUNT:
        return "system byte counts are absurdly large"
    if s.has_temperature and not (-100.0 <= s.temperature_c <= 250.0):
        return f"system.temperature_c {s.temperature_c!r} is outside -100..250"
    return None


def _model_problem(m: telemetry_pb2.ModelTelemetry, layout_keys: list[bytes] | None) -> str | None:
    if not m.model:
        return "model name is empty"
    if len(m.model) > MODEL_LEN or len(m.version) > VERSION_LEN or len(m.variant_id) > VARIANT_LEN:
        return f"model, version or variant_id longer than {MODEL_LEN}/{VERSION_LEN}/{VARIANT_LEN} characters"
    if m.requests >= MAX_COUNT or m.errors >= MAX_COUNT:
        return "requests or errors is absurdly large"
    p50, p95, p99, ips = m.p50_ms, m.p95_ms, m.p99_ms, m.inferences_per_s
    if not _fine(p50, p95, p99, ips):
        return _first_bad((("p50_ms", p50), ("p95_ms", p95), ("p99_ms", p99), ("inferences_per_s", ips)))
    # A little slack: percentiles computed in floating point can differ in the last bits.
    if p50 > p95 * (1 + 1e-9) or p95 > p99 * (1 + 1e-9):
        return f"percentiles out of order: p50 {p50:g} ms, p95 {p95:g} ms, p99 {p99:g} ms"
    key = b""
    if m.HasField("latency"):
        found, key = _histogram_problem(m.latency)
        if found:
            return found
    if layout_keys is not None:
        layout_keys.append(key)
    if m.HasField("power"):
        p = m.power
        if len(p.source) > SHORT_LEN:
            return f"power.source longer than {SHORT_LEN} characters"
        if not _fine(p.avg_watts, p.energy_per_inference_mj):
            return "power: " + _first_bad((("avg_watts", p.avg_watts), ("energy_per_inference_mj", p.energy_per_inference_mj)))
    if m.HasField("accuracy"):
        a = m.accuracy
        if not _fine(a.golden_metric, a.online_metric):
            return "accuracy: " + _first_bad((("golden_metric", a.golden_metric), ("online_metric", a.online_metric)))
        if not (0.0 <= a.mean_confidence <= 1.0):
            return f"accuracy.mean_confidence {a.mean_confidence!r} is outside 0..1"
    if m.HasField("drift"):
        d = m.drift
        if len(d.method) > SHORT_LEN:
            return f"drift.method longer than {SHORT_LEN} characters"
        if _bad_number(d.max_score):
            return f"drift.max_score is {d.max_score!r}: must be a finite number >= 0"
        features = d.per_feature
        if len(features) > MAX_FEATURES or (len(features) and not _fine(*features)):
            return "drift.per_feature has negative, NaN or infinite scores (or too many)"
        if d.samples >= MAX_COUNT:
            return "drift.samples is absurdly large"
    return None


# Bucket layouts already checked, by their packed bounds: almost every report carries the same layout, and
# checking 121 bounds one by one in Python costs more than the rest of ingest. Bounded; the ingest thread only.
_checked_layouts: dict[bytes, str | None] = {}


def _histogram_problem(h: telemetry_pb2.LatencyHistogram) -> tuple[str | None, bytes]:
    """(what is wrong or None, the packed bounds)."""
    n_bounds, n_counts = len(h.bounds_ms), len(h.counts)
    if not n_bounds and not n_counts:
        return None, b""
    if n_bounds > MAX_BUCKETS:
        return f"latency histogram with {n_bounds} buckets (at most {MAX_BUCKETS})", b""
    if n_counts != n_bounds + 1:
        return f"latency histogram has {n_bounds} bounds but {n_counts} counts (expected {n_bounds + 1})", b""
    if _bad_number(h.sum_ms):
        return f"latency histogram sum_ms is {h.sum_ms!r}", b""
    key = bounds_key(h)
    if key in _checked_layouts:
        return _checked_layouts[key], key
    found = None
    previous = 0.0
    for b in key_bounds(key):
        if not (b > previous) or not _isfinite(b):
            found = "latency histogram bounds must be positive, finite and increasing"
            break
        previous = b
    if len(_checked_layouts) >= 256:
        _checked_layouts.clear()  # a device sending a new layout every time must not grow this
    _checked_layouts[key] = found
    return found, key
