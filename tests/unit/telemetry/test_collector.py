"""agent.telemetry.collector: windows, percentiles from the histogram, power labels, accuracy, drift,
the since-activation figures for the trial, sequence, and that no raw input leaves."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from agent.serve import ModelHost
from agent.serve.recent import Prediction
from agent.telemetry.accuracy import OutputSummary, summarize
from agent.telemetry.collector import TelemetryCollector
from agent.telemetry.drift import calibration_stats
from agent.telemetry.histogram import LatencyHistogram
from agent.telemetry.power import PowerReading
from edgefleet.v1 import manifest_pb2, telemetry_pb2


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Model:
    class backend:  # noqa: N801
        key, reason = "cpu", ""

    def __init__(self, metric: float = 0.9) -> None:
        self.metric = metric
        self.evaluated: list[tuple[int, str]] = []
        self.inputs = [manifest_pb2.TensorSpec(name="features", shape=[1, 4], dtype="float32")]
        self.outputs = [manifest_pb2.TensorSpec(name="probs", shape=[1, 3], dtype="float32")]

    def predict(self, inputs):
        return {"probs": np.array([[0.1, 0.7, 0.2]], np.float32)}

    def evaluate(self, x, y, task):
        self.evaluated.append((len(y), task))
        return self.metric

    def close(self) -> None:
        pass


class FixedPower:
    def __init__(self, reading: PowerReading | None) -> None:
        self.reading = reading

    def read(self) -> PowerReading | None:
        return self.reading


def manifest(version: str = "1", task: str = "classification", calibration=None) -> manifest_pb2.ModelManifest:
    m = manifest_pb2.ModelManifest(model="digits", version=version, variant_id=f"v{version}", task=task)
    if calibration is not None:
        m.calibration.CopyFrom(calibration)
    return m


def setup(**kw):
    clock, wall = Clock(), Clock(1_800_000_000.0)
    collector = TelemetryCollector(clock=clock, wall_clock=wall, **kw)
    host = ModelHost(clock=wall)
    host.subscribe(collector.on_activate)
    return collector, host, clock, wall


PROBS = summarize(np.array([[0.1, 0.7, 0.2]]), "classification")


def test_percentiles_come_from_the_histogram() -> None:
    collector, host, clock, _ = setup()
    served = host.activate(Model(), manifest=manifest())
    latencies = np.random.default_rng(0).lognormal(mean=0.0, sigma=0.8, size=2000)
    reference = LatencyHistogram()
    for ms in latencies:
        collector.on_predict(served, float(ms), {}, PROBS)
        reference.observe(float(ms))
    clock.now += 10
    (m,) = collector.collect().models
    wire = LatencyHistogram.from_proto(m.latency)
    assert wire == reference and wire.count == 2000
    assert (m.p50_ms, m.p95_ms, m.p99_ms) == (wire.percentile(50), wire.percentile(95), wire.percentile(99))
    assert (m.p50_ms, m.p95_ms, m.p99_ms) == (reference.percentile(50), reference.percentile(95), reference.percentile(99))
    for q, got in ((50, m.p50_ms), (95, m.p95_ms), (99, m.p99_ms)):  # and within a bucket (12 %) of the truth
        assert got == pytest.approx(np.percentile(latencies, q), rel=0.13)


def test_window_counts_rates_and_reset() -> None:
    collector, host, clock, wall = setup()
    served = host.activate(Model(), manifest=manifest())
    for _ in range(50):
        collector.on_predict(served, 2.0, {}, PROBS)
    for _ in range(5):
        collector.on_error(served, "invalid_input")
    clock.now += 10
    wall.now += 10
    first = collector.collect()
    (m,) = first.models
    assert (m.model, m.version, m.variant_id) == ("digits", "1", "v1")
    assert (m.requests, m.errors) == (55, 5)
    assert m.inferences_per_s == pytest.approx(5.0)
    assert first.sequence == 1
    assert first.window_end.ToNanoseconds() - first.window_start.ToNanoseconds() == 10 * 10**9
    clock.now += 5
    second = collector.collect()
    (quiet,) = second.models  # the active model is reported even without requests
    assert quiet.requests == 0 and quiet.p50_ms == 0 and second.sequence == 2
    assert second.window_start == first.window_end


def test_power_is_labelled_and_energy_is_watts_times_mean_latency() -> None:
    collector, host, clock, _ = setup(power=FixedPower(PowerReading("estimate", 4.0, "power model")))
    served = host.activate(Model(), manifest=manifest())
    for ms in (1.0, 2.0, 3.0):
        collector.on_predict(served, ms, {}, PROBS)
    clock.now += 10
    (m,) = collector.collect().models
    assert m.power.source == "estimate" and m.power.avg_watts == 4.0
    assert m.power.energy_per_inference_mj == pytest.approx(4.0 * 2.0)
    bare, host2, _, _ = setup(power=FixedPower(None))
    host2.activate(Model(), manifest=manifest())
    assert bare.collect().models[0].power.source == "none"


def test_confidence_and_online_accuracy_from_feedback() -> None:
    collector, host, clock, _ = setup()
    served = host.activate(Model(), manifest=manifest())
    collector.on_predict(served, 1.0, {}, summarize(np.array([[0.1, 0.7, 0.2]]), "classification"))
    collector.on_predict(served, 1.0, {}, summarize(np.array([[0.5, 0.3, 0.2]]), "classification"))
    for label in (1, 1, 2, 1):
        collector.on_feedback(Prediction(served.key, "classification", 1, 1, 0.7, None), label, 0.0)
    (m,) = collector.collect().models
    assert m.accuracy.mean_confidence == pytest.approx((0.7 + 0.5) / 2)
    assert m.accuracy.online_metric == pytest.approx(0.75) and m.accuracy.online_count == 4
    figures = collector.trial_figures(served.key)
    assert figures.online_metric == pytest.approx(0.75) and figures.online_count == 4
    (again,) = collector.collect().models  # per window: the next one starts empty ...
    assert again.accuracy.online_count == 0
    assert collector.trial_figures(served.key).online_count == 4  # ... the trial keeps counting


def test_regression_feedback_is_mean_absolute_error() -> None:
    collector, host, _, _ = setup()
    served = host.activate(Model(), manifest=manifest(task="regression"))
    for predicted, target in ((1.0, 1.5), (2.0, 1.0)):
        collector.on_feedback(Prediction(served.key, "regression", 1, None, None, predicted), 0, target)
    (m,) = collector.collect().models
    assert m.accuracy.online_metric == pytest.approx(0.75) and m.accuracy.online_count == 2


def test_golden_set_at_activation_and_every_k_minutes() -> None:
    golden_x, golden_y = np.zeros((40, 4), np.float32), np.zeros(40)
    asked = []

    def golden(served):
        asked.append(served.key)
        return golden_x, golden_y

    collector, host, clock, _ = setup(golden=golden, golden_every_s=300)
    model = Model(metric=0.875)
    served = host.activate(model, manifest=manifest())
    assert collector.trial_figures(served.key).golden_pending
    collector.tick()
    assert model.evaluated == [(40, "classification")]
    figures = collector.trial_figures(served.key)
    assert figures.golden_metric == 0.875 and figures.golden_count == 40 and not figures.golden_pending
    clock.now += 299
    collector.tick()
    assert len(model.evaluated) == 1
    clock.now += 1
    model.metric = 0.5
    collector.tick()
    assert len(model.evaluated) == 2
    (m,) = collector.collect().models
    assert m.accuracy.golden_metric == 0.5 and m.accuracy.golden_count == 40


def test_activation_takes_the_acceptance_tests_golden_score_then_scores_on_schedule() -> None:
    golden_x, golden_y = np.zeros((40, 4), np.float32), np.zeros(40)
    offered = {"figures": (0.96875, 256)}
    collector, host, clock, _ = setup(golden=lambda served: (golden_x, golden_y), golden_every_s=300,
                                      accepted=lambda served: offered["figures"])
    model = Model(metric=0.5)
    served = host.activate(model, manifest=manifest())
    collector.tick()
    assert model.evaluated == []  # not scored again at activation
    figures = collector.trial_figures(served.key)
    assert figures.golden_metric == 0.96875 and figures.golden_count == 256 and not figures.golden_pending
    clock.now += 300
    collector.tick()  # the periodic evaluation scores the served model itself
    assert model.evaluated == [(40, "classification")]
    assert collector.trial_figures(served.key).golden_metric == 0.5
    offered["figures"] = None  # an activation the acceptance test did not cover (after a restart): scored here
    again = host.activate(Model(metric=0.75), manifest=manifest("2"))
    collector.tick()
    assert collector.trial_figures(again.key).golden_metric == 0.75


def test_no_golden_set_is_not_pending() -> None:
    collector, host, _, _ = setup(golden=lambda served: None)
    served = host.activate(Model(), manifest=manifest())
    collector.tick()
    figures = collector.trial_figures(served.key)
    assert figures.golden_metric is None and not figures.golden_pending


def test_trial_figures_start_over_at_activation_and_scale_for_simulated_devices() -> None:
    collector, host, clock, _ = setup(latency_factor=4.0)
    old = host.activate(Model(), manifest=manifest("1"))
    for _ in range(30):
        collector.on_predict(old, 10.0, {}, PROBS)
    clock.now += 3
    new = host.activate(Model(), manifest=manifest("2"))
    for _ in range(20):
        collector.on_predict(new, 1.0, {}, PROBS)
    collector.on_error(new, "internal")
    figures = collector.trial_figures(new.key)
    assert figures.started_at == clock.now and figures.requests == 21 and figures.errors == 1
    assert figures.latency_samples == 20 and figures.p95_ms == pytest.approx(4.0, rel=0.13)
    message = collector.collect()
    assert [(m.version, m.requests) for m in message.models] == [("1", 30), ("2", 21)]
    assert message.models[0].p50_ms == pytest.approx(40.0, rel=0.13)
    assert [m.version for m in collector.collect().models] == ["2"]  # the replaced one, quiet, is gone


def test_drift_reaches_telemetry() -> None:
    rng = np.random.default_rng(0)
    stats = calibration_stats(rng.normal(size=(2000, 4)))
    collector, host, clock, _ = setup(drift_min_gap_s=0.5)
    served = host.activate(Model(), manifest=manifest(calibration=stats))
    for i in range(600):
        clock.now += 0.25  # a request every 0.25 s, a sample every 0.5 s: every second request is binned
        collector.on_predict(served, 1.0, {"features": (rng.normal(size=(1, 4)) + [0, 0, 0, 2]).astype(np.float32)}, PROBS)
    (m,) = collector.collect().models
    assert m.drift.method == "psi" and m.drift.samples == 300
    assert m.drift.max_score == m.drift.per_feature[3] > 0.25


def test_no_raw_input_or_output_leaves() -> None:
    collector, host, _, _ = setup(drift_min_gap_s=0)
    served = host.activate(Model(), manifest=manifest(calibration=calibration_stats(np.zeros((10, 4)) + 0.5)))
    secret = np.array([[1234.5678, -8765.4321, 3.14159265, 2.7182818]], np.float32)
    output = np.array([[0.123456789, 0.8, 0.076543211]], np.float32)
    collector.on_predict(served, 1.0, {"features": secret}, summarize(output, "classification"))
    payload = collector.collect().SerializeToString()
    # (the top-1 probability, 0.8, is the mean confidence of this one-request window: an aggregate)
    for value in list(secret.ravel()) + [output[0, 0], output[0, 2]]:
        assert np.float32(value).tobytes() not in payload
        assert np.float64(value).tobytes() not in payload
    assert secret.tobytes() not in payload


def test_sequence_continues_after_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "telemetry.seq"
    first = TelemetryCollector(sequence_path=path)
    assert [first.collect().sequence for _ in range(3)] == [1, 2, 3]
    assert TelemetryCollector(sequence_path=path).collect().sequence == 4
    path.write_text("garbage")
    assert TelemetryCollector(sequence_path=path).collect().sequence == 1


def test_background_loop_emits_each_window() -> None:
    got: list[telemetry_pb2.Telemetry] = []
    two = threading.Event()

    def emit(message: telemetry_pb2.Telemetry) -> None:
        got.append(message)
        if len(got) >= 2:
            two.set()

    collector = TelemetryCollector(interval_s=0.05, emit=emit)
    collector.start()
    try:
        assert two.wait(10)
    finally:
        collector.stop()
    assert [m.sequence for m in got[:2]] == [1, 2]


def test_summaries() -> None:
    probs = summarize(np.array([[0.2, 0.5, 0.3], [0.9, 0.05, 0.05]]), "classification")
    assert list(probs.top1) == [1, 0] and list(probs.confidence) == pytest.approx([0.5, 0.9])
    logits = np.array([[1.0, 3.0, 0.0]])
    softmax = np.exp(logits) / np.exp(logits).sum()
    summary = summarize(logits, "classification")
    assert summary.top1[0] == 1 and summary.confidence[0] == pytest.approx(softmax[0, 1])
    binary = summarize(np.array([[0.2], [0.9]]), "classification")
    assert list(binary.top1) == [0, 1] and list(binary.confidence) == pytest.approx([0.8, 0.9])
    logit = summarize(np.array([[2.0]]), "classification")
    assert logit.top1[0] == 1 and logit.confidence[0] == pytest.approx(1 / (1 + np.exp(-2.0)))
    value = summarize(np.array([[3.5]]), "regression")
    assert value.values[0] == 3.5 and value.top1 is None and value.rows == 1
    assert summarize(np.array([0.1, 0.9]), "classification").rows == 1  # no batch dimension
    assert isinstance(summarize(np.zeros((1, 0)), "classification"), OutputSummary)


def test_short_rows_are_summarized_as_numpy_would(monkeypatch) -> None:
    """One-row outputs of up to 64 classes take a plain-Python path: same top-1 (first maximum) and confidence."""
    from agent.telemetry import accuracy

    rng = np.random.default_rng(1)
    rows = [rng.normal(size=(1, int(rng.integers(2, 65)))).astype(np.float32) * scale for scale in (0.1, 1, 30) for _ in range(40)]
    rows += [(lambda e: (e / e.sum()).astype(np.float32))(np.exp(r - r.max())) for r in rows[:40]]  # probabilities
    rows += [np.array([[0.5, 0.2, 0.5]], np.float32), np.array([[np.nan, 1.0, 0.5]], np.float32),
             np.array([[np.inf, 1.0]], np.float32), np.array([[-np.inf, 0.0]], np.float32)]
    with np.errstate(invalid="ignore"):  # inf - inf in numpy's softmax, as in the plain-Python one
        fast = [summarize(r, "classification") for r in rows]
        monkeypatch.setattr(accuracy, "_SHORT_ROW", 0)
        slow = [summarize(r, "classification") for r in rows]
    for row, f, s in zip(rows, fast, slow):
        assert f.top1 == s.top1, row
        assert f.confidence == pytest.approx(s.confidence, rel=1e-9, nan_ok=True), row


# -- giving memory back once idle -----------------------------------------------------------------


def test_memory_is_released_once_after_requests_stop() -> None:
    released: list[int] = []
    collector, host, _, _ = setup(release_memory=lambda: released.append(1))
    assert not collector.release_if_idle()  # nothing loaded or served yet: nothing to give back
    served = host.activate(Model(), manifest=manifest())
    assert collector.release_if_idle()  # what loading the model left, no request since
    assert released == [1]
    assert not collector.release_if_idle()
    for _ in range(3):  # serving: every check sees new requests
        collector.on_predict(served, 1.0, {}, PROBS)
        assert not collector.release_if_idle()
    collector.on_error(served, "internal")
    assert not collector.release_if_idle()
    assert released == [1]
    assert collector.release_if_idle()  # a whole check period without a request
    assert released == [1, 1]
    assert not collector.release_if_idle() and not collector.release_if_idle()  # once per quiet spell
    collector.on_predict(served, 1.0, {}, PROBS)
    assert not collector.release_if_idle()
    assert collector.release_if_idle()
    assert released == [1, 1, 1]


def test_a_failing_release_does_not_reach_the_loop() -> None:
    def fail() -> None:
        raise OSError("no")

    collector, host, _, _ = setup(release_memory=fail)
    host.activate(Model(), manifest=manifest())
    assert collector.release_if_idle()  # attempted; the error is logged, not raised
    assert not collector.release_if_idle()


def test_the_loop_releases_memory_when_requests_stop() -> None:
    released = threading.Event()
    collector = TelemetryCollector(interval_s=60, idle_trim_s=0.01, release_memory=released.set)
    host = ModelHost()
    host.subscribe(collector.on_activate)
    served = host.activate(Model(), manifest=manifest())
    collector.on_predict(served, 1.0, {}, PROBS)
    collector.release_if_idle()  # sees the request: the loop's release must wait for quiet
    assert not released.is_set()
    collector.start()
    try:
        assert released.wait(10), "the idle release never ran"
    finally:
        collector.stop()
