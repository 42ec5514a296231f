"""The batch writer: idempotent by message id, batches, flushes on stop, isolates what the store refuses."""
from __future__ import annotations

import threading
import uuid
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.exc import OperationalError

from coordinator.config import TelemetryConfig
from coordinator.store.telemetry_tables import TelemetryLatestRow, TelemetrySampleRow
from coordinator.telemetry.records import Report, utc
from coordinator.telemetry.writer import CATCH_UP
from tests.fleet import wait_for

from .factories import NOW, Harness, model, report


def test_the_same_message_twice_is_stored_once(store):
    h = Harness(store)
    dev = h.register("cam")
    t = report(NOW, model(latencies=[1.0] * 7, errors=2), model("other", "1", latencies=[5.0]))
    mid = uuid.uuid4().hex
    assert h.send(dev, t, mid) == "ok"
    assert h.send(dev, t, mid) == "ok"  # a QoS 1 redelivery
    assert h.count() == 2  # one row per model version of the one report
    assert h.metric("edgefleet_telemetry_rows_written_total") == 2
    assert h.metric("edgefleet_telemetry_duplicates_total") == 2
    assert h.metric("edgefleet_model_requests_total", {"model": "digits", "version": "3"}) == 7
    assert h.metric("edgefleet_model_errors_total", {"model": "digits", "version": "3"}) == 2
    rows, _ = h.query()
    assert [(r.model.model, r.model.requests) for r in rows] == [("digits", 7), ("other", 1)]


def test_duplicates_inside_one_batch_and_across_batches(store):
    h = Harness(store, TelemetryConfig(batch_size=10, flush_interval_s=5))
    dev = h.register("cam")
    h.service.start()
    ids = [uuid.uuid4().hex for _ in range(12)]
    for i, mid in enumerate(ids + ids[:5] + ids[3:4]):  # 18 deliveries of 12 reports
        h.send(dev, report(NOW - timedelta(seconds=10 * (i % 12)), model()), mid)
    assert h.service.flush(10)
    h.service.stop()
    assert h.count() == 12
    assert h.metric("edgefleet_telemetry_duplicates_total") == 6


def test_batches_close_at_batch_size_and_on_flush(store):
    h = Harness(store, TelemetryConfig(batch_size=10, flush_interval_s=5))
    dev = h.register("cam")
    h.service.start()
    for batch in range(3):  # a writer that keeps up: each full batch is written on its own, long before 5 s
        for i in range(10):
            h.send(dev, report(NOW - timedelta(seconds=10 * batch + i), model()))
        wait_for(lambda: h.metric("edgefleet_telemetry_batch_seconds_count") == batch + 1, 10, f"batch {batch + 1} written")
    for i in range(5):
        h.send(dev, report(NOW - timedelta(seconds=30 + i), model()))
    assert h.service.flush(10)
    assert h.count() == 35
    assert h.metric("edgefleet_telemetry_batch_seconds_count") == 4  # 10 + 10 + 10 + the 5 the flush closed
    h.service.stop()


def test_a_writer_that_is_behind_takes_what_is_queued_into_bigger_batches(store):
    h = Harness(store, TelemetryConfig(batch_size=10, flush_interval_s=5))
    dev = h.register("cam")
    writer = h.service.writer
    write_rows, sizes = writer.write_rows, []
    busy, go = threading.Event(), threading.Event()

    def slow_first_batch(rows):
        sizes.append(len(rows))
        if len(sizes) == 1:
            busy.set()
            go.wait(10)  # the store is slow: reports pile up meanwhile
        return write_rows(rows)

    writer.write_rows = slow_first_batch
    h.service.start()
    for i in range(10):
        h.send(dev, report(NOW - timedelta(seconds=i), model()))
    assert busy.wait(10)
    for i in range(10, 65):
        h.send(dev, report(NOW - timedelta(seconds=i), model()))
    go.set()
    assert h.service.flush(10)
    assert sizes == [10, 10 * CATCH_UP, 65 - 10 - 10 * CATCH_UP]  # never more than CATCH_UP batches at once
    assert h.count() == 65
    h.service.stop()


def test_stop_writes_everything_queued_and_later_reports_are_written_directly(store):
    h = Harness(store, TelemetryConfig(batch_size=1000, flush_interval_s=30))
    dev = h.register("cam")
    h.service.start()
    for i in range(50):
        h.send(dev, report(NOW - timedelta(seconds=i), model()))
    h.service.stop()  # no flush: stop itself must write the 50 waiting for the 30 s interval
    assert h.count() == 50
    h.send(dev, report(NOW + timedelta(seconds=1), model()))  # the link still delivering during shutdown
    assert h.count() == 51


def test_a_report_without_models_keeps_its_system_figures(store):
    h = Harness(store)
    dev = h.register("cam")
    h.send(dev, report(NOW, cpu=33.0, rss=123_456_789, temperature=61.5))
    (row,), fleet = h.query()
    assert not row.HasField("model") and fleet == []
    assert (row.system.cpu_percent, row.system.rss_bytes, row.system.temperature_c) == (33.0, 123_456_789, 61.5)


def test_latest_only_moves_forward_and_last_seen_is_touched(store):
    h = Harness(store)
    dev = h.register("cam")
    assert h.registry.get(dev).last_seen is None
    h.send(dev, report(NOW, model(latencies=[1.0] * 3)))
    h.send(dev, report(NOW - timedelta(hours=1), model(latencies=[1.0] * 9)))  # an outbox draining late
    assert h.count(TelemetrySampleRow) == 2 and h.count(TelemetryLatestRow) == 1
    (row,), _ = h.query()
    assert row.model.requests == 3
    assert utc(h.registry.get(dev).last_seen) == NOW


def test_a_report_the_store_refuses_is_dropped_alone(store):
    h = Harness(store, TelemetryConfig(batch_size=100, flush_interval_s=5))
    dev = h.register("cam")
    h.service.start()
    poisoned = report(NOW, model())
    poisoned.models[0].requests = 2**63  # past validation (submitted directly), too big for a BIGINT
    for i in range(3):
        h.service.writer.submit(Report(dev, uuid.uuid4().hex, report(NOW - timedelta(seconds=i + 1), model())))
    h.service.writer.submit(Report(dev, uuid.uuid4().hex, poisoned))
    h.service.writer.submit(Report(dev, uuid.uuid4().hex, report(NOW - timedelta(seconds=9), model())))
    assert h.service.flush(10)
    h.service.stop()
    assert h.count() == 4
    assert h.dropped("bad_telemetry") == 1


def test_a_store_outage_is_retried_not_dropped(store, monkeypatch):
    h = Harness(store, TelemetryConfig(batch_size=100, flush_interval_s=5))
    dev = h.register("cam")
    writer = h.service.writer
    real = writer.write_rows
    failures = []

    def flaky(rows):
        if len(failures) < 2:
            failures.append(len(rows))
            raise OperationalError("INSERT", {}, Exception("database is locked"))
        return real(rows)

    monkeypatch.setattr(writer, "write_rows", flaky)
    h.service.start()
    for i in range(5):
        h.send(dev, report(NOW - timedelta(seconds=i), model()))
    assert h.service.flush(20)
    h.service.stop()
    assert failures == [5, 5]
    assert h.count() == 5
    assert h.dropped("bad_telemetry") == 0


def test_histogram_bounds_are_stored_once_and_restored(store):
    h = Harness(store)
    dev = h.register("cam")
    sent = model(latencies=[0.5, 1.5, 2.5, 30.0])
    for i in range(3):
        h.send(dev, report(NOW - timedelta(seconds=10 * i), sent))
    with store.session() as s:
        layouts = {r for r in s.scalars(select(TelemetrySampleRow.hist_layout))}
    assert len(layouts) == 1 and "" not in layouts
    rows, _ = h.query(view="series")
    assert len(rows) == 3
    assert all(list(r.model.latency.bounds_ms) == list(sent.latency.bounds_ms) for r in rows)
    assert all(list(r.model.latency.counts) == list(sent.latency.counts) for r in rows)


def test_stop_during_a_store_outage_does_not_hang_and_counts_the_loss(store, monkeypatch):
    import threading

    h = Harness(store, TelemetryConfig(batch_size=10, flush_interval_s=0.01, queue_size=100))
    dev = h.register("cam")
    writer = h.service.writer

    def down(rows):
        raise OperationalError("INSERT", {}, Exception("connection refused"))

    monkeypatch.setattr(writer, "write_rows", down)
    writer.direct_retry_s = 0.01  # reports the link delivers after stop() are written directly
    h.service.start()
    # More than the backlog holds: the sender blocks (backpressure), as ingest would.
    reports = [report(NOW - timedelta(seconds=i), model()) for i in range(150)]
    sender = threading.Thread(target=lambda: [h.send(dev, t) for t in reports])
    sender.start()
    h.service.stop(timeout=0.5)
    sender.join(20)
    assert not sender.is_alive()
    assert h.dropped("store_unavailable") == 150  # every report accounted for: none silently lost
