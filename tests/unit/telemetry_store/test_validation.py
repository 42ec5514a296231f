"""Bad telemetry is dropped at the coordinator, counted as bad_telemetry, logged once a minute, never stored."""
from __future__ import annotations

import logging
import math
from datetime import timedelta

import pytest

from coordinator.config import TelemetryConfig
from coordinator.telemetry.validation import problem
from edgefleet import topics
from edgefleet.v1 import telemetry_pb2

from .factories import NOW, Harness, model, report

LIMITS = {"max_future_s": 300.0, "max_age_s": 30 * 86400.0}


def good() -> telemetry_pb2.Telemetry:
    return report(NOW - timedelta(seconds=5), model(energy_mj=3.0, golden=(0.9, 100), online=(0.8, 5), confidence=0.7, drift=0.1), temperature=45.0)


def _set(t, path: str, value) -> None:
    *parents, leaf = path.split(".")
    target = t
    for p in parents:
        target = target.models[int(p[7:-1])] if p.startswith("models[") else getattr(target, p)
    if isinstance(value, list):
        getattr(target, leaf)[:] = value
    else:
        setattr(target, leaf, value)


def _end_in(seconds: float):
    def mutate(t):
        t.window_end.FromDatetime(NOW + timedelta(seconds=seconds))
        t.window_start.FromDatetime(NOW + timedelta(seconds=seconds - 10))
    return mutate


BAD = {
    "window_end far in the future": (_end_in(3600), "future"),
    "window_end years in the past": (_end_in(-5 * 365 * 86400), "in the past"),
    "no timestamps": (lambda t: (t.ClearField("window_start"), t.ClearField("window_end")), "must both be set"),
    "start after end": (lambda t: t.window_start.FromDatetime(NOW + timedelta(seconds=60)), "after window_end"),
    "window longer than a day": (lambda t: t.window_start.FromDatetime(NOW - timedelta(days=3)), "window of"),
    "negative latency": (lambda t: _set(t, "models[0].p50_ms", -1.0), "p50_ms"),
    "NaN latency": (lambda t: _set(t, "models[0].p99_ms", math.nan), "p99_ms"),
    "infinite rate": (lambda t: _set(t, "models[0].inferences_per_s", math.inf), "inferences_per_s"),
    "percentiles out of order": (lambda t: _set(t, "models[0].p50_ms", t.models[0].p99_ms * 2), "out of order"),
    "negative energy": (lambda t: _set(t, "models[0].power.energy_per_inference_mj", -3.0), "power"),
    "NaN power": (lambda t: _set(t, "models[0].power.avg_watts", math.nan), "power"),
    "negative accuracy": (lambda t: _set(t, "models[0].accuracy.golden_metric", -0.5), "accuracy"),
    "confidence above 1": (lambda t: _set(t, "models[0].accuracy.mean_confidence", 1.5), "mean_confidence"),
    "infinite drift": (lambda t: _set(t, "models[0].drift.max_score", math.inf), "drift.max_score"),
    "negative drift feature": (lambda t: _set(t, "models[0].drift.per_feature", [0.1, -2.0]), "per_feature"),
    "negative cpu": (lambda t: _set(t, "system.cpu_percent", -5.0), "cpu_percent"),
    "absurd temperature": (lambda t: _set(t, "system.temperature_c", 5000.0), "temperature"),
    "histogram counts do not match bounds": (lambda t: t.models[0].latency.counts.append(1), "counts"),
    "histogram bounds not increasing": (lambda t: _set(t, "models[0].latency.bounds_ms", [2.0, 1.0] + list(t.models[0].latency.bounds_ms[2:])), "increasing"),
    "histogram sum NaN": (lambda t: _set(t, "models[0].latency.sum_ms", math.nan), "sum_ms"),
    "counter too large for the store": (lambda t: _set(t, "models[0].requests", 2**63), "absurdly large"),
    "model without a name": (lambda t: _set(t, "models[0].model", ""), "name is empty"),
    "model name too long": (lambda t: _set(t, "models[0].model", "m" * 500), "longer than"),
    "one version twice": (lambda t: t.models.append(t.models[0]), "twice"),
}


def test_a_good_report_has_no_problem():
    assert problem(good(), NOW.timestamp(), **LIMITS) is None


@pytest.mark.parametrize("name", sorted(BAD))
def test_each_bad_input_is_named(name):
    mutate, needle = BAD[name]
    t = good()
    mutate(t)
    found = problem(t, NOW.timestamp(), **LIMITS)
    assert found is not None and needle in found, found


def test_small_clock_skew_and_a_late_outbox_drain_are_accepted():
    ahead = good()
    _end_in(120)(ahead)
    assert problem(ahead, NOW.timestamp(), **LIMITS) is None
    late = report(NOW - timedelta(days=3), model())
    assert problem(late, NOW.timestamp(), **LIMITS) is None


def test_bad_reports_are_dropped_counted_logged_once_and_not_stored(tmp_path, caplog):
    from coordinator.store.db import Store

    store = Store(f"sqlite:///{tmp_path / 'db.sqlite'}")
    h = Harness(store)
    dev = h.register("cam")
    caplog.set_level(logging.WARNING)
    for name in sorted(BAD):
        t = good()
        BAD[name][0](t)
        # The device is known: ingest records the message as handled ("ok"), or, if Ingest passes handler
        # reasons through, as the handler's own drop reason.
        assert h.send(dev, t) in ("ok", "bad_telemetry")
    assert h.dropped("bad_telemetry") == len(BAD)
    assert h.count() == 0
    warnings = [r for r in caplog.records if "dropped telemetry" in r.getMessage()]
    assert len(warnings) == 1  # rate-limited per device and reason
    h.clock.advance(seconds=61)
    bad = good()
    BAD["negative cpu"][0](bad)
    h.send(dev, bad)
    assert len([r for r in caplog.records if "dropped telemetry" in r.getMessage()]) == 2
    # and a good report from the same device is still stored afterwards
    assert h.send(dev, good()) == "ok"
    assert h.count() == 1
    store.close()


def test_garbage_and_unknown_devices_are_dropped_by_ingest(tmp_path):
    from coordinator.store.db import Store

    store = Store(f"sqlite:///{tmp_path / 'db.sqlite'}")
    h = Harness(store, TelemetryConfig())
    dev = h.register("cam")
    assert h.ingest.handle(topics.telemetry(dev), b"\x00\xffnot an envelope") == "malformed"
    assert h.send("d-stranger", good()) == "unknown_device"
    assert h.dropped("malformed") == 1 and h.dropped("unknown_device") == 1
    assert h.count() == 0
    store.close()
