"""Retention and downsampling with an injected clock: raw windows roll up into buckets, nothing is counted twice."""
from __future__ import annotations

from datetime import timedelta

import pytest

from coordinator.config import TelemetryConfig
from coordinator.store.telemetry_tables import TelemetryLatestRow, TelemetryRollupRow, TelemetrySampleRow
from coordinator.telemetry.retention import RetentionJob, bucket_start

from .factories import NOW, Harness, histogram, model, report

CFG = TelemetryConfig(raw_retention_h=1, rollup_interval_s=300, rollup_retention_h=24)


def fill(h: Harness, dev: str, minutes: int, start_ago_h: float = 2.0, **model_kw) -> None:
    """One 10-s window per minute for `minutes`, starting `start_ago_h` hours before NOW; latency grows."""
    first = NOW - timedelta(hours=start_ago_h)
    for i in range(minutes):
        lat = [1.0 + i % 7] * 10 + [40.0]
        h.send(dev, report(first + timedelta(minutes=i), model(latencies=lat, energy_mj=2.0 + i % 3, golden=(0.9, 50), online=(0.5 + (i % 2) * 0.4, 4), **model_kw), cpu=10.0 + i % 5))


def test_raw_past_retention_rolls_up_exactly(store):
    h = Harness(store, CFG)
    dev = h.register("cam")
    fill(h, dev, 90)  # 2 h ago .. 30 min ago: 60 windows past the 1 h retention, 30 within
    before, _ = h.query(view="summary")
    result = h.service.retention.run(NOW)
    assert (result.rolled_up, result.raw_deleted, result.more) == (60, 60, False)  # ended before NOW - 1 h
    raw, rollups, latest = h.counts()
    assert raw == 30 and rollups == 12 and latest == 1  # 10:00..10:59 in 5-minute buckets
    after, _ = h.query(view="summary")
    (b,), (a,) = before, after
    assert (a.windows, a.model.requests, a.outbox_dropped) == (b.windows, b.model.requests, b.outbox_dropped) == (90, 990, 0)
    # histograms merge exactly, so percentiles survive the rollup unchanged
    assert (a.model.p50_ms, a.model.p95_ms, a.model.p99_ms) == pytest.approx((b.model.p50_ms, b.model.p95_ms, b.model.p99_ms))
    assert a.model.power.energy_per_inference_mj == pytest.approx(b.model.power.energy_per_inference_mj)
    assert a.model.accuracy.online_metric == pytest.approx(b.model.accuracy.online_metric)
    assert a.model.accuracy.online_count == b.model.accuracy.online_count == 360
    assert a.system.cpu_percent == pytest.approx(b.system.cpu_percent)
    assert a.rolled_up and not b.rolled_up
    # a second run finds nothing new
    assert h.service.retention.run(NOW).raw_deleted == 0


def test_rollup_buckets_hold_their_windows(store):
    h = Harness(store, CFG)
    dev = h.register("cam")
    fill(h, dev, 10, start_ago_h=3)
    h.service.retention.run(NOW)
    rows, _ = h.query(view="series")
    assert all(r.rolled_up for r in rows)
    assert sum(r.windows for r in rows) == 10
    for r in rows:
        start = r.window_start.ToDatetime().replace(tzinfo=NOW.tzinfo)
        end = r.at.ToDatetime().replace(tzinfo=NOW.tzinfo)
        assert bucket_start(end, 300) <= end < bucket_start(end, 300) + timedelta(seconds=300)
        assert end - start <= timedelta(seconds=310)
    # figures of one bucket: 5 windows of (10 x lat + 40 ms) each
    first = rows[1]
    assert first.windows == 5 and first.model.requests == 55
    assert first.model.p99_ms == pytest.approx(histogram([40.0]).percentile(50), rel=0.2)


def test_a_late_report_merges_into_its_existing_rollup(store):
    h = Harness(store, CFG)
    dev = h.register("cam")
    end = NOW - timedelta(hours=3, minutes=2)
    h.send(dev, report(end, model(latencies=[1.0] * 10)))
    h.service.retention.run(NOW)
    assert h.counts()[:2] == (0, 1)
    h.send(dev, report(end + timedelta(seconds=30), model(latencies=[1.0] * 5)))  # an outbox drained late
    h.service.retention.run(NOW)
    assert h.counts()[:2] == (0, 1)
    (row,), _ = h.query(view="series")
    assert (row.windows, row.model.requests) == (2, 15)


def test_rollups_past_their_retention_are_deleted(store):
    h = Harness(store, CFG)
    dev = h.register("cam")
    fill(h, dev, 20, start_ago_h=5)
    h.service.retention.run(NOW)
    assert h.counts()[1] > 0
    later = NOW + timedelta(hours=24)
    result = h.service.retention.run(later)
    assert result.rollups_deleted > 0
    assert h.counts()[:2] == (0, 0)
    assert h.count(TelemetryLatestRow) == 1  # the newest window stays as long as the device


def test_without_rollups_raw_windows_past_retention_are_just_deleted(store):
    h = Harness(store, CFG)
    dev = h.register("cam")
    fill(h, dev, 90)
    no_rollups = TelemetryConfig(raw_retention_h=1, rollup_interval_s=0)
    result = RetentionJob(store, no_rollups, h.service.layouts).run(NOW)
    assert (result.rolled_up, result.raw_deleted) == (0, 60)
    assert h.counts()[:2] == (30, 0)


def test_large_backlogs_are_worked_off_in_slices(store):
    h = Harness(store, CFG)
    dev = h.register("cam")
    fill(h, dev, 60, start_ago_h=4)
    job = RetentionJob(store, CFG, h.service.layouts, chunk_rows=10, max_rows=25)
    first = job.run(NOW)
    assert first.raw_deleted == 30 and first.more  # three chunks of 10, then it yields
    while job.run(NOW).more:
        pass
    assert h.count(TelemetrySampleRow) == 0
    (row,), _ = h.query(view="summary")
    assert row.windows == 60 and row.model.requests == 660


def test_removed_devices_leave_the_latest_table(store):
    h = Harness(store, CFG)
    keep, gone = h.register("keep"), h.register("gone")
    for dev in (keep, gone):
        h.send(dev, report(NOW - timedelta(hours=2), model()))
    h.registry.remove("gone")
    result = h.service.retention.run(NOW)
    assert result.latest_deleted == 1
    assert h.count(TelemetryLatestRow) == 1
    assert h.count(TelemetryRollupRow) == 1  # only the kept device's window was rolled up


def test_the_writer_runs_the_job_on_its_schedule(store):
    h = Harness(store, TelemetryConfig(raw_retention_h=1, rollup_interval_s=300, maintenance_interval_s=60, flush_interval_s=0.01))
    dev = h.register("cam")
    fill(h, dev, 10, start_ago_h=3)
    h.service.start()
    try:
        h.send(dev, report(NOW, model()))
        assert h.service.flush(10)
        assert h.count(TelemetrySampleRow) == 11  # not due yet
        h.clock.advance(seconds=61)
        h.send(dev, report(NOW + timedelta(seconds=61), model()))
        assert h.service.flush(10)
        assert h.service.flush(10)  # the job runs right after the batch that found it due
    finally:
        h.service.stop()
    assert h.count(TelemetrySampleRow) == 2
    assert h.count(TelemetryRollupRow) > 0
