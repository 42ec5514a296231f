"""Synthetic requests of a simulated device through its real service: inputs in range, golden rows with their
labels, telemetry scaled once by the profile's latency factor, power from the device's own busy time."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from agent.serve.host import ModelHost
from agent.simulate.requests import RequestStream, golden_rows, random_rows
from agent.simulate.scheduler import Timers
from agent.simulate.service import ProcessShare, SimulatedService
from edgefleet.v1 import hardware_pb2, manifest_pb2
from tests.unit.serve.models import built_models


@pytest.fixture(scope="module")
def models(request, tmp_path_factory) -> Path:
    return built_models(request, tmp_path_factory)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class InlinePool:
    def post(self, fn) -> None:
        fn()


def manifest(**kw) -> manifest_pb2.ModelManifest:
    return manifest_pb2.ModelManifest(model="lin", version="1", variant_id="fp32", task="classification", **kw)


def board(factor: float = 4.0) -> hardware_pb2.HardwareProfile:
    hw = hardware_pb2.HardwareProfile(hardware_class="raspberry-pi-4", simulated=True, latency_factor=factor)
    hw.memory.available_bytes = 3_400_000_000
    hw.power_model.idle_watts, hw.power_model.active_watts = 2.0, 6.0
    return hw


def test_random_inputs_stay_in_the_quantized_range_and_run(models: Path) -> None:
    host = ModelHost()
    served = host.load(models / "int8.tflite", manifest())
    spec = served.model.inputs[0]
    low, high = (-128 - spec.zero_point) * spec.scale, (127 - spec.zero_point) * spec.scale
    rows = random_rows(served, 16, np.random.default_rng(0))
    values = np.concatenate([np.frombuffer(r.request.inputs[0].data, np.float32) for r in rows])
    assert values.min() >= low and values.max() <= high
    assert values.std() > 0  # random, not a constant
    for row in rows:
        served.model.predict({spec.name: np.frombuffer(row.request.inputs[0].data, np.float32).reshape(1, 4)})


def test_random_inputs_follow_the_calibration_bins(models: Path) -> None:
    host = ModelHost()
    features = [manifest_pb2.FeatureStats(bin_edges=[10.0 * j, 10.0 * j + 1, 10.0 * j + 2], expected_fractions=[0.0, 1.0]) for j in range(4)]
    served = host.load(models / "float32.tflite", manifest(calibration=manifest_pb2.CalibrationStats(features=features)))
    rows = random_rows(served, 20, np.random.default_rng(1))
    for row in rows:
        x = np.frombuffer(row.request.inputs[0].data, np.float32)
        assert x.shape == (4,)
        for j, value in enumerate(x):  # all mass in each feature's second bin
            assert 10.0 * j + 1 <= value <= 10.0 * j + 2


def test_golden_rows_carry_their_labels(models: Path) -> None:
    host = ModelHost()
    served = host.load(models / "float32.tflite", manifest())
    x = np.arange(12, dtype=np.float64).reshape(3, 4)
    assert [r.label for r in golden_rows(served, x, np.array([2, 0, 1]), 10)] == [2, 0, 1]
    one_hot = np.eye(3)[[1, 1, 2]]
    rows = golden_rows(served, x, one_hot, 2)
    assert [r.label for r in rows] == [1, 1]
    assert rows[0].request.inputs[0].dtype == "float32"


def test_requests_reach_telemetry_scaled_once_with_power_from_busy_time(models: Path, tmp_path: Path) -> None:
    clock = FakeClock()
    reference = np.load(models / "reference.npz")
    x = np.random.default_rng(3).normal(size=(32, 4)).astype(np.float32)
    y = np.argmax(x @ reference["w"] + reference["b"], axis=1)
    emitted = []
    service = SimulatedService(tmp_path, board(4.0), emit_telemetry=emitted.append, golden=lambda served: (x, y),
                               share=ProcessShare(lambda: 2, clock=clock), interval_s=10.0, clock=clock)
    timers = Timers(clock)
    stream = RequestStream(service.servicer, timers, InlinePool(), rate=5.0, golden=lambda served: (x, y), feedback=1.0, seed=7)
    service.host.subscribe(stream.on_activate)
    latencies: list[float] = []
    predict = service.servicer.predict

    def timed(request):
        response = predict(request)
        latencies.append(response.latency_ms)  # what the host measured, before any scaling
        return response

    service.servicer.predict = timed
    service.on_active_changed(models / "float32.tflite", manifest())
    assert stream.source == "golden"
    stream.start(first_delay_s=0.0)
    for _ in range(200):
        clock.now += 0.05
        timers.run_due()
    stream.stop()
    assert stream.sent == stream.answered == len(latencies) > 20
    assert stream.failed == 0 and stream.labelled == stream.answered  # the float model classifies its golden rows right

    clock.now += 10
    service.tick()
    [telemetry] = emitted
    [model] = telemetry.models
    assert model.requests == stream.answered and model.errors == 0
    assert model.accuracy.golden_metric == 1.0 and model.accuracy.online_metric == 1.0
    assert model.accuracy.online_count == stream.labelled
    # Scaled by the profile's factor exactly once: the histogram holds 4x what the host measured.
    assert sum(model.latency.counts) == len(latencies)
    assert model.latency.sum_ms == pytest.approx(4.0 * sum(latencies), rel=1e-6)
    busy_s = sum(latencies) * 4.0 / 1e3
    elapsed = 10 + 200 * 0.05
    assert model.power.source == "estimate"
    assert model.power.avg_watts == pytest.approx(2.0 + 4.0 * busy_s / elapsed, rel=1e-6)
    assert telemetry.system.memory_available_bytes == 3_400_000_000
    assert not telemetry.system.has_temperature


def test_golden_rows_sampled_at_random_keep_row_and_label_together(models: Path) -> None:
    host = ModelHost()
    served = host.load(models / "float32.tflite", manifest())
    x = np.repeat(np.arange(50, dtype=np.float32)[:, None], 4, axis=1)  # row i is all i
    y = np.arange(50) % 3
    rows = golden_rows(served, x, y, 10, np.random.default_rng(5))
    firsts = [int(np.frombuffer(r.request.inputs[0].data, np.float32)[0]) for r in rows]
    assert len(set(firsts)) == 10 and firsts != list(range(10))
    assert [r.label for r in rows] == [i % 3 for i in firsts]
