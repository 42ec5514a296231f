"""agent.trial: verdicts of the trial window with an injected clock, and the supervisor acting on them."""

from __future__ import annotations

import numpy as np
import pytest

from agent.serve import ModelHost
from agent.telemetry.accuracy import summarize
from agent.telemetry.collector import TelemetryCollector
from agent.trial import COMMIT, CONTINUE, ROLLBACK, TrialFigures, TrialMonitor, TrialSupervisor
from edgefleet.v1 import manifest_pb2


class Clock:
    def __init__(self, now: float = 500.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def policy(inferences: int = 100, seconds: int = 60, min_online: float = 0.0, **thresholds: float) -> manifest_pb2.TrialPolicy:
    return manifest_pb2.TrialPolicy(inferences=inferences, seconds=seconds, min_online_metric=min_online,
                                    thresholds=manifest_pb2.AcceptanceThresholds(**thresholds))


def figures(started_at: float = 500.0, requests: int = 0, **kw) -> TrialFigures:
    kw.setdefault("latency_samples", requests - kw.get("errors", 0))
    return TrialFigures(started_at=started_at, requests=requests, **kw)


def test_continue_then_commit_after_n_inferences() -> None:
    clock = Clock()
    monitor = TrialMonitor(policy(inferences=100, seconds=600, max_p95_ms=50), "classification", clock=clock)
    assert monitor.check(figures(requests=99, p95_ms=10)).kind == CONTINUE
    verdict = monitor.check(figures(requests=100, p95_ms=10))
    assert verdict.kind == COMMIT and verdict.figures["p95_ms"] == 10 and verdict.figures["requests"] == 100


def test_commit_after_t_seconds_even_without_traffic() -> None:
    clock = Clock()
    monitor = TrialMonitor(policy(inferences=1000, seconds=60), "classification", clock=clock)
    clock.now += 59.9
    assert monitor.check(figures()).kind == CONTINUE
    clock.now += 0.1
    verdict = monitor.check(figures())
    assert verdict.kind == COMMIT and verdict.figures["elapsed_s"] == pytest.approx(60)


def test_no_window_commits_at_once() -> None:
    assert TrialMonitor(policy(0, 0), "classification", clock=Clock()).check(figures()).kind == COMMIT


def test_latency_over_budget_rolls_back_with_the_figures() -> None:
    monitor = TrialMonitor(policy(max_p95_ms=20), "classification", clock=Clock())
    assert monitor.check(figures(requests=19, p95_ms=80)).kind == CONTINUE  # too few samples to judge
    verdict = monitor.check(figures(requests=20, p95_ms=80))
    assert verdict.kind == ROLLBACK and verdict.reason == "latency_over_budget"
    assert verdict.figures["p95_ms"] == 80 and verdict.figures["max_p95_ms"] == 20
    assert monitor.check(figures(requests=20, p95_ms=19.9)).kind == CONTINUE


def test_small_trials_judge_on_their_own_size() -> None:
    monitor = TrialMonitor(policy(inferences=5, max_p95_ms=20), "classification", clock=Clock())
    assert monitor.check(figures(requests=5, p95_ms=30)).reason == "latency_over_budget"


def test_error_rate_over_the_limit() -> None:
    monitor = TrialMonitor(policy(max_error_rate=0.05), "classification", clock=Clock())
    assert monitor.check(figures(requests=40, errors=2)).kind == CONTINUE  # exactly 5 %
    verdict = monitor.check(figures(requests=40, errors=3))
    assert verdict.kind == ROLLBACK and verdict.reason == "error_rate_over_limit"
    assert verdict.figures["error_rate"] == pytest.approx(0.075) and verdict.figures["max_error_rate"] == 0.05


def test_golden_metric_under_the_floor() -> None:
    monitor = TrialMonitor(policy(min_metric=0.9), "classification", clock=Clock())
    verdict = monitor.check(figures(golden_metric=0.42, golden_count=200))
    assert verdict.kind == ROLLBACK and verdict.reason == "golden_metric_below_floor"
    assert verdict.figures["metric"] == 0.42 and verdict.figures["min_metric"] == 0.9
    assert monitor.check(figures(golden_metric=0.93, golden_count=200)).kind == CONTINUE


def test_regression_uses_the_error_ceiling() -> None:
    monitor = TrialMonitor(policy(max_metric=1.5), "regression", clock=Clock())
    assert monitor.check(figures(golden_metric=2.0)).reason == "golden_error_over_ceiling"
    assert monitor.check(figures(golden_metric=1.0, online_metric=3.0, online_count=25)).reason == "online_error_over_ceiling"
    assert monitor.check(figures(golden_metric=1.0, online_metric=1.2, online_count=25)).kind == CONTINUE


def test_online_accuracy_needs_enough_labels() -> None:
    monitor = TrialMonitor(policy(min_online=0.8), "classification", clock=Clock(), min_online_samples=20)
    assert monitor.check(figures(online_metric=0.1, online_count=19)).kind == CONTINUE
    verdict = monitor.check(figures(online_metric=0.5, online_count=20))
    assert verdict.reason == "online_metric_below_floor" and verdict.figures["online_count"] == 20


def test_commit_waits_for_the_golden_figure_for_a_grace_period() -> None:
    clock = Clock()
    monitor = TrialMonitor(policy(inferences=10, seconds=0, min_metric=0.9), "classification", clock=clock, golden_grace_s=30)
    waiting = monitor.check(figures(requests=10, golden_pending=True))
    assert waiting.kind == CONTINUE and "golden" in waiting.reason
    clock.now += 29
    assert monitor.check(figures(requests=12, golden_pending=True)).kind == CONTINUE
    assert monitor.check(figures(requests=12, golden_metric=0.95)).kind == COMMIT
    clock.now += 2
    assert monitor.check(figures(requests=12, golden_pending=True)).kind == COMMIT  # gave up waiting


# -- the supervisor -------------------------------------------------------------------------------


class Deployer:
    def __init__(self, manifest: manifest_pb2.ModelManifest) -> None:
        self.manifest = manifest
        self.on_trial = True
        self.calls: list[tuple] = []

    def trial_active(self) -> bool:
        return self.on_trial

    def active_manifest(self) -> manifest_pb2.ModelManifest:
        return self.manifest

    def commit(self) -> None:
        self.calls.append(("commit",))
        self.on_trial = False

    def rollback(self, reason, figures) -> None:
        self.calls.append(("rollback", reason, dict(figures)))
        self.on_trial = False


class Model:
    class backend:  # noqa: N801
        key, reason = "cpu", ""

    def __init__(self, metric: float) -> None:
        self.metric = metric
        self.inputs = [manifest_pb2.TensorSpec(name="x", shape=[1, 2], dtype="float32")]
        self.outputs = [manifest_pb2.TensorSpec(name="y", shape=[1, 3], dtype="float32")]

    def evaluate(self, x, y, task):
        return self.metric

    def close(self) -> None:
        pass


def trial_manifest(**thresholds: float) -> manifest_pb2.ModelManifest:
    return manifest_pb2.ModelManifest(model="digits", version="2", variant_id="v2", task="classification", sequence=3,
                                      trial=policy(inferences=50, seconds=120, **thresholds))


PROBS = summarize(np.array([[0.1, 0.8, 0.1]]), "classification")


def live(manifest: manifest_pb2.ModelManifest, metric: float = 0.95):
    clock = Clock()
    collector = TelemetryCollector(clock=clock, golden=lambda served: (np.zeros((10, 2)), np.zeros(10)))
    host = ModelHost()
    host.subscribe(collector.on_activate)
    served = host.activate(Model(metric), manifest=manifest)
    return clock, collector, served


def test_supervisor_commits_a_good_model() -> None:
    manifest = trial_manifest(max_p95_ms=10, min_metric=0.9)
    clock, collector, served = live(manifest)
    deployer = Deployer(manifest)
    committed = []
    supervisor = TrialSupervisor(deployer, collector.trial_figures, clock=clock, after_commit=lambda: committed.append(1))
    collector.tick()  # golden set at activation
    for _ in range(49):
        collector.on_predict(served, 2.0, {}, PROBS)
    assert supervisor.poll().kind == CONTINUE and deployer.calls == []
    collector.on_predict(served, 2.0, {}, PROBS)
    assert supervisor.poll().kind == COMMIT
    assert deployer.calls == [("commit",)] and committed == [1]
    assert supervisor.poll() is None  # no trial any more


def test_supervisor_rolls_back_a_slow_model_within_the_window() -> None:
    manifest = trial_manifest(max_p95_ms=10)
    clock, collector, served = live(manifest)
    deployer = Deployer(manifest)
    restored = []
    supervisor = TrialSupervisor(deployer, collector.trial_figures, clock=clock, after_rollback=lambda: restored.append(1))
    for _ in range(25):
        collector.on_predict(served, 40.0, {}, PROBS)
    verdict = supervisor.poll()
    assert verdict.kind == ROLLBACK
    ((kind, reason, figures),) = deployer.calls
    assert (kind, reason) == ("rollback", "latency_over_budget")
    assert figures["p95_ms"] == pytest.approx(40.0, rel=0.13) and figures["max_p95_ms"] == 10 and figures["requests"] == 25
    assert restored == [1]


def test_supervisor_rolls_back_on_a_collapsed_golden_metric() -> None:
    manifest = trial_manifest(min_metric=0.9)
    clock, collector, _ = live(manifest, metric=0.1)  # scrambled weights
    deployer = Deployer(manifest)
    supervisor = TrialSupervisor(deployer, collector.trial_figures, clock=clock)
    assert supervisor.poll().kind == CONTINUE  # golden figure not measured yet
    collector.tick()
    assert supervisor.poll().reason == "golden_metric_below_floor"
    assert deployer.calls[0][2]["metric"] == 0.1


def test_supervisor_ends_the_trial_on_time_for_a_model_not_loaded() -> None:
    manifest = trial_manifest()
    clock = Clock()
    deployer = Deployer(manifest)
    supervisor = TrialSupervisor(deployer, lambda key: None, clock=clock)
    assert supervisor.poll().kind == CONTINUE
    clock.now += 120
    assert supervisor.poll().kind == COMMIT


def test_supervisor_rolls_back_a_model_that_cannot_be_loaded(tmp_path) -> None:
    manifest = trial_manifest()
    host = ModelHost()
    broken = tmp_path / "broken.tflite"
    broken.write_bytes(b"\0" * 64)
    with pytest.raises(Exception, match="broken.tflite"):
        host.load(broken, manifest)
    deployer = Deployer(manifest)
    supervisor = TrialSupervisor(deployer, lambda key: None, clock=Clock(), load_error=host.load_error)
    verdict = supervisor.poll()
    assert verdict.kind == ROLLBACK and verdict.reason.startswith("load_failed: cannot load broken.tflite")
    assert deployer.calls[0][:2] == ("rollback", verdict.reason)
