"""Queries by device, selector, model and time range; latest / summary / series views; fleet figures."""
from __future__ import annotations

from datetime import timedelta

import pytest

from coordinator.store.devices import DeviceNotFound
from coordinator.telemetry.queries import QueryError

from .factories import NOW, Harness, histogram, model, report


@pytest.fixture
def fleet(store):
    """Three cameras and a gateway; cam-1 moved from digits:3 to digits:4 ten minutes ago."""
    h = Harness(store)
    ids = {
        "cam-1": h.register("cam-1", role="camera", site="lab"),
        "cam-2": h.register("cam-2", role="camera", site="field"),
        "cam-3": h.register("cam-3", role="camera", site="lab"),
        "gw-1": h.register("gw-1", role="gateway"),
    }
    h.service.start()  # batched writes: the fixture's 80 reports in a few transactions
    for minute in range(30, 10, -1):
        h.send(ids["cam-1"], report(NOW - timedelta(minutes=minute), model(version="3", latencies=[2.0] * 10, energy_mj=5.0)))
    for minute in range(10, 0, -1):
        h.send(ids["cam-1"], report(NOW - timedelta(minutes=minute), model(version="4", latencies=[1.0] * 10, energy_mj=4.0, golden=(0.95, 200))))
    for minute in range(30, 0, -1):
        end = NOW - timedelta(minutes=minute)
        h.send(ids["cam-2"], report(end, model(version="4", latencies=[8.0] * 30, energy_mj=9.0, golden=(0.85, 100), online=(0.8, 10))))
        h.send(ids["gw-1"], report(end, model("anomaly", "1", latencies=[0.5] * 5), model(version="3", latencies=[3.0] * 2)))
    h.service.stop()  # writes everything queued; later sends are written synchronously
    # cam-3 has never reported
    return h, ids


def names(rows):
    return [(r.device_name, f"{r.model.model}:{r.model.version}") for r in rows]


def test_latest_is_each_devices_newest_report(fleet):
    h, _ = fleet
    rows, _ = h.query()
    # cam-1's digits:3 was replaced by :4 and drops out; gw-1 reports two models in one report
    assert names(rows) == [("cam-1", "digits:4"), ("cam-2", "digits:4"), ("gw-1", "anomaly:1"), ("gw-1", "digits:3")]
    assert all(r.at.ToDatetime().replace(tzinfo=NOW.tzinfo) == NOW - timedelta(minutes=1) for r in rows)


def test_selector_device_and_model_filters(fleet):
    h, ids = fleet
    assert names(h.query(selector={"role": "camera", "site": "lab"})[0]) == [("cam-1", "digits:4")]
    assert names(h.query(device="gw-1")[0]) == [("gw-1", "anomaly:1"), ("gw-1", "digits:3")]
    assert names(h.query(device=ids["cam-2"])[0]) == [("cam-2", "digits:4")]
    assert names(h.query(model="anomaly")[0]) == [("gw-1", "anomaly:1")]
    # filtered to :3, cam-1 shows its last digits:3 report, twenty minutes old
    rows, _ = h.query(model="digits:3")
    assert names(rows) == [("cam-1", "digits:3"), ("gw-1", "digits:3")]
    assert rows[0].at.ToDatetime().replace(tzinfo=NOW.tzinfo) == NOW - timedelta(minutes=11)
    assert h.query(device="gw-1", selector={"role": "camera"})[0] == []
    with pytest.raises(DeviceNotFound):
        h.query(device="nope")
    with pytest.raises(QueryError):
        h.query(model="digits:")


def test_latest_since_hides_devices_that_went_quiet(fleet):
    h, ids = fleet
    h.send(ids["cam-3"], report(NOW - timedelta(hours=5), model()))
    assert "cam-3" in [r.device_name for r in h.query()[0]]
    assert "cam-3" not in [r.device_name for r in h.query(since=NOW - timedelta(hours=1))[0]]


def test_summary_over_a_time_range(fleet):
    h, _ = fleet
    rows, _ = h.query(view="summary", since=NOW - timedelta(minutes=15), until=NOW)
    by = {(r.device_name, r.model.version, r.model.model): r for r in rows}
    cam1_v3 = by[("cam-1", "3", "digits")]
    assert (cam1_v3.windows, cam1_v3.model.requests) == (5, 50)  # minutes 15..11
    cam1_v4 = by[("cam-1", "4", "digits")]
    assert (cam1_v4.windows, cam1_v4.model.requests) == (10, 100)
    assert cam1_v4.model.inferences_per_s == pytest.approx(100 / 100)  # 100 requests over ten 10-s windows
    assert cam1_v4.model.accuracy.golden_count == 200
    cam2 = by[("cam-2", "4", "digits")]
    assert cam2.model.accuracy.online_count == 150 and cam2.model.accuracy.online_metric == pytest.approx(0.8)
    assert cam2.model.p95_ms == pytest.approx(histogram([8.0] * 30).percentile(95))
    # since alone, and the until bound is inclusive of a window ending exactly then
    assert len(h.query(view="summary", since=NOW - timedelta(minutes=1))[0]) == 4
    with pytest.raises(QueryError):
        h.query(since=NOW, until=NOW - timedelta(hours=1), view="summary")
    with pytest.raises(QueryError):
        h.query(until=NOW)  # the latest view has no end


def test_series_is_every_window_oldest_first_with_a_limit(fleet):
    h, _ = fleet
    rows, _ = h.query(view="series", device="cam-1")
    assert len(rows) == 30
    ends = [r.at.ToNanoseconds() for r in rows]
    assert ends == sorted(ends)
    rows, _ = h.query(view="series", device="cam-1", limit=4)
    assert [r.model.version for r in rows] == ["4"] * 4
    assert rows[-1].at.ToDatetime().replace(tzinfo=NOW.tzinfo) == NOW - timedelta(minutes=1)
    rows, _ = h.query(view="series", model="anomaly", since=NOW - timedelta(minutes=5), until=NOW - timedelta(minutes=3))
    assert len(rows) == 3


def test_fleet_figures_per_model_version(fleet):
    h, _ = fleet
    rows, fleet_rows = h.query(view="summary", since=NOW - timedelta(minutes=10))
    f = {(x.model, x.version): x for x in fleet_rows}
    v4 = f[("digits", "4")]
    assert v4.devices == 2
    assert v4.requests == 100 + 300  # cam-1 10 windows x 10, cam-2 10 windows x 30
    # p95 over the merged histograms of both devices = p95 of all their latencies
    assert v4.p95_ms == pytest.approx(histogram([1.0] * 100 + [8.0] * 300).percentile(95))
    assert v4.energy_per_inference_mj == pytest.approx((4.0 * 100 + 9.0 * 300) / 400)  # request-weighted
    assert v4.energy_devices == 2
    assert v4.golden_accuracy == pytest.approx((0.95 * 200 + 0.85 * 100) / 300)
    assert f[("digits", "3")].devices == 1 and f[("anomaly", "1")].energy_devices == 0


def test_removed_devices_disappear_from_queries(fleet):
    h, ids = fleet
    h.registry.remove("gw-1")
    assert "gw-1" not in {r.device_name for r in h.query()[0]}
    assert "gw-1" not in {r.device_name for r in h.query(view="series")[0]}
    # selection follows the labels as they are now
    h.registry.label("cam-2", {"site": "lab"}, [])
    assert {r.device_name for r in h.query(selector={"site": "lab"})[0]} == {"cam-1", "cam-2"}


def test_metrics_collector_reports_live_fleet_figures(fleet):
    h, ids = fleet
    from prometheus_client import generate_latest

    text = generate_latest(h.metrics.registry).decode()
    assert 'edgefleet_model_devices_reporting{model="digits",version="4"} 2.0' in text
    p95 = h.metric("edgefleet_model_latency_ms", {"model": "digits", "version": "4", "quantile": "0.95"})
    assert p95 == pytest.approx(histogram([1.0] * 10 + [8.0] * 30).percentile(95))  # the latest windows only
    assert h.metric("edgefleet_model_accuracy", {"model": "digits", "version": "4", "kind": "golden"}) == pytest.approx((0.95 * 200 + 0.85 * 100) / 300)
    h.clock.advance(minutes=10)  # everyone went quiet: nothing is live any more
    assert h.metric("edgefleet_model_devices_reporting", {"model": "digits", "version": "4"}) == 0


def test_a_device_without_a_power_source_does_not_count_for_energy(store):
    h = Harness(store)
    metered, unmetered = h.register("metered"), h.register("unmetered")
    h.send(metered, report(NOW, model(latencies=[1.0] * 10, energy_mj=5.0)))
    h.send(unmetered, report(NOW, model(latencies=[1.0] * 90, energy_mj=0.0, watts=0.0, source="none")))
    rows, (fleet_row,) = h.query(view="summary", since=NOW - timedelta(minutes=1))
    assert (fleet_row.energy_devices, fleet_row.energy_per_inference_mj) == (1, 5.0)  # not diluted by the zeros
    assert {r.device_name: r.model.power.source for r in rows} == {"metered": "estimate", "unmetered": "none"}
    assert h.metric("edgefleet_model_energy_per_inference_mj", {"model": "digits", "version": "3"}) == 5.0
