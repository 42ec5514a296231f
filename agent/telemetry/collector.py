"""Per-interval telemetry: one `edgefleet.v1.Telemetry` per window (default 10 s), one ModelTelemetry
per model version that was active or answered requests in the window.

Per model version, over the window: requests, errors (see agent.serve.servicer for what counts),
the latency histogram (LatencyHistogram) and p50/p95/p99 read FROM that histogram (so the coordinator,
merging histograms, computes the same figures), inferences/s (successful predictions / window
seconds), power (PowerSampler; energy per inference = average watts × mean latency), accuracy (the
latest golden-set figure; online accuracy or MAE from this window's Feedback with its count; mean
top-1 confidence) and input drift (PSI, agent.telemetry.drift; at most one request per
`drift_min_gap_s` is binned, a time-based sample). Per device: the agent's CPU % and RSS,
temperature, free memory and storage, and a `sequence` that grows by one per message (persisted in
`sequence_path` when given, so a restart continues it) for gap detection. `outbox_dropped` is the
publisher's to fill (OutboxPublisher.put_telemetry).

The collector also keeps each model's figures since its activation for the trial (`trial_figures`).

Simulated devices: `latency_factor` (the profile's) scales every observed latency, so telemetry and
the trial describe the simulated board, as profiling does. Raw inputs and outputs never leave here.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path
from typing import Callable, Mapping

import numpy as np

from agent.runtime.memory import trim_heap
from agent.serve.host import ModelKey, ServedModel
from agent.serve.recent import Prediction
from agent.telemetry.accuracy import ConfidenceMean, GoldenData, GoldenResult, GoldenSchedule, OnlineScore, OutputSummary
from agent.telemetry.drift import CalibrationError, DriftAccumulator
from agent.telemetry.histogram import LatencyHistogram
from agent.telemetry.power import NONE, PowerSampler
from agent.telemetry.system import SystemSampler
from agent.trial import TrialFigures
from edgefleet.v1 import telemetry_pb2

log = logging.getLogger(__name__)

DEFAULT_INTERVAL_S = 10.0
DEFAULT_GOLDEN_EVERY_S = 15 * 60.0
# Once requests stop for this long, the heap the burst left is given back (agent.runtime.memory).
DEFAULT_IDLE_TRIM_S = 2.0
# Drift bins at most one request per 20 ms (50 per second, 500 per 10 s window: enough for PSI over
# 10 bins), so a busy model does not pay for binning on every request.
DEFAULT_DRIFT_MIN_GAP_S = 0.02

GoldenSource = Callable[[ServedModel], "GoldenData | None"]


class _Counts:
    """What one stretch of time (a window, or the time since activation) adds up for one model."""

    def __init__(self, task: str) -> None:
        self.requests = 0
        self.errors = 0
        self.latency = LatencyHistogram()
        self.confidence = ConfidenceMean()
        self.online = OnlineScore(task)


class _ModelStats:
    def __init__(self, served: ServedModel, golden_every_s: float, clock: Callable[[], float]) -> None:
        self.served = served
        self.key = served.key
        self.task = served.task
        self.window = _Counts(self.task)
        self.life = _Counts(self.task)
        self.activated_at = clock()
        self.golden = GoldenSchedule(golden_every_s, clock)
        self.drift: DriftAccumulator | None = None
        calibration = served.manifest.calibration if served.manifest is not None else None
        if calibration is not None and calibration.features:
            try:
                self.drift = DriftAccumulator(calibration)
            except CalibrationError as exc:
                log.warning("drift not computed for %s: its calibration statistics are unusable (%s)", served.key, exc)
        self.first_input = served.input_names[0] if served.input_names else None
        self.drift_sampled_at = float("-inf")

    def reset_window(self) -> _Counts:
        window, self.window = self.window, _Counts(self.task)
        return window


class TelemetryCollector:
    def __init__(
        self,
        *,
        system: SystemSampler | None = None,
        power: PowerSampler | None = None,
        golden: GoldenSource | None = None,
        golden_every_s: float = DEFAULT_GOLDEN_EVERY_S,
        accepted: Callable[[ServedModel], tuple[float, int] | None] | None = None,
        interval_s: float = DEFAULT_INTERVAL_S,
        latency_factor: float = 1.0,
        drift_min_gap_s: float = DEFAULT_DRIFT_MIN_GAP_S,
        sequence_path: Path | str | None = None,
        emit: Callable[[telemetry_pb2.Telemetry], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        idle_trim_s: float = DEFAULT_IDLE_TRIM_S,
        release_memory: Callable[[], object] | None = trim_heap,
    ) -> None:
        """`golden(served)` returns the (x, y) golden set the install kept for that model, or None.
        `accepted(served)`: (metric, count) of the golden set as the install's acceptance test scored that
        model moments before activating it, or None; taken as the activation's golden result instead of
        scoring the same set again (later evaluations score it as usual).
        `emit(telemetry)` receives each window's message from the background loop (start()).
        `release_memory()` runs once in that loop when requests stopped for `idle_trim_s` (None: never)."""
        if interval_s <= 0:
            raise ValueError(f"telemetry interval must be above 0 s, got {interval_s}")
        if latency_factor <= 0:
            raise ValueError(f"latency_factor must be above 0, got {latency_factor}")
        self.interval_s = interval_s
        self.latency_factor = latency_factor
        self.drift_min_gap_s = drift_min_gap_s
        self._system = system
        self._power = power
        self._golden = golden
        self._accepted = accepted
        self._golden_every_s = golden_every_s
        self._emit = emit
        self._clock = clock
        self._wall = wall_clock
        self._lock = threading.Lock()
        self._stats: dict[ModelKey, _ModelStats] = {}
        self._current: ModelKey | None = None
        self._window_start = clock()
        self._window_start_wall = wall_clock()
        self._sequence_path = Path(sequence_path) if sequence_path is not None else None
        self._sequence = _read_sequence(self._sequence_path)
        self._idle_trim_s = idle_trim_s
        self._release_memory = release_memory
        self._served = 0            # requests since start (on_predict, on_error): the idle check compares it
        self._served_seen = 0
        self._release_pending = False
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    # -- the host tells us what is active -----------------------------------------------------

    def on_activate(self, served: ServedModel | None) -> None:
        """ModelHost listener: a model became active (figures since activation start over)."""
        with self._lock:
            if served is None:
                self._current = None
            else:
                previous = self._stats.get(served.key)
                stats = _ModelStats(served, self._golden_every_s, self._clock)
                if previous is not None:
                    stats.window = previous.window  # the window's figures still get reported
                self._stats[served.key] = stats
                self._current = served.key
            self._release_pending = True  # loading a model leaves freed scratch behind (file reads, packing)
        self._wake.set()  # evaluate the golden set now

    # -- the servicer reports requests (InferenceObserver) ------------------------------------

    def _stats_for(self, served: ServedModel) -> _ModelStats:
        stats = self._stats.get(served.key)
        if stats is None:  # a model activated without this listener (tests, or a race with a swap)
            with self._lock:
                stats = self._stats.setdefault(served.key, _ModelStats(served, self._golden_every_s, self._clock))
        return stats

    def on_predict(self, served: ServedModel, latency_ms: float, inputs: Mapping[str, np.ndarray], summary: OutputSummary) -> None:
        stats = self._stats_for(served)
        latency_ms *= self.latency_factor
        with self._lock:  # one step, so a window closing meanwhile never splits a request from its latency
            self._served += 1
            for counts in (stats.window, stats.life):
                counts.requests += 1
                counts.latency.observe(latency_ms)
                if summary.confidence is not None:
                    counts.confidence.add(summary.confidence)
        if stats.drift is not None and stats.first_input is not None:
            now = self._clock()
            if now - stats.drift_sampled_at >= self.drift_min_gap_s:  # a benign race: one sample more or less
                stats.drift_sampled_at = now
                first = inputs.get(stats.first_input)
                if first is not None:
                    stats.drift.observe(first)

    def on_error(self, served: ServedModel, kind: str) -> None:
        stats = self._stats_for(served)
        with self._lock:
            self._served += 1
            for counts in (stats.window, stats.life):
                counts.requests += 1
                counts.errors += 1

    def on_feedback(self, prediction: Prediction, label: int, target: float) -> None:
        with self._lock:
            stats = self._stats.get(prediction.key)
            if stats is None:
                return  # a model long gone from telemetry
            for counts in (stats.window, stats.life):
                if prediction.task == "classification" and prediction.top1 is not None:
                    counts.online.add_label(prediction.top1, label)
                elif prediction.value is not None:
                    counts.online.add_target(prediction.value, target)

    # -- golden set ---------------------------------------------------------------------------

    def evaluate_golden(self, force: bool = False) -> GoldenResult | None:
        """Evaluate the active model's golden set when due (or `force`); returns the new result, if any."""
        with self._lock:
            stats = self._stats.get(self._current) if self._current is not None else None
        if stats is None or self._golden is None or not (force or stats.golden.due()):
            return None
        if stats.golden.result is None and self._accepted is not None:  # the activation's: scored at acceptance
            try:
                figures = self._accepted(stats.served)
            except Exception as exc:  # noqa: BLE001 - fall back to scoring it here
                log.warning("acceptance figures of %s unavailable: %s", stats.key, exc)
                figures = None
            if figures is not None:
                result = GoldenResult(metric=float(figures[0]), count=int(figures[1]), at=self._clock())
                stats.golden.record(result)
                log.info("golden set of %s: %.4g on %d samples (the acceptance test's)", stats.key, result.metric, result.count)
                return result
        try:
            data = self._golden(stats.served)
            if data is None:
                stats.golden.record(None)
                return None
            x, y = data
            metric = stats.served.model.evaluate(x, y, stats.task)
        except Exception as exc:  # noqa: BLE001 - a model swapped out under us, or a broken golden file
            log.warning("golden-set evaluation of %s failed: %s", stats.key, exc)
            stats.golden.failed()
            return None
        result = GoldenResult(metric=float(metric), count=len(y), at=self._clock())
        stats.golden.record(result)
        log.info("golden set of %s: %s %.4g on %d samples", stats.key,
                 "accuracy" if stats.task == "classification" else "MAE", result.metric, result.count)
        return result

    # -- the trial ----------------------------------------------------------------------------

    def trial_figures(self, key: ModelKey) -> TrialFigures | None:
        """Figures of `key` since its activation; None when it was never activated here."""
        with self._lock:
            stats = self._stats.get(key)
            if stats is None:
                return None
            life = stats.life
            requests, errors = life.requests, life.errors
            online, online_count = life.online.metric, life.online.count
        golden = stats.golden.result
        pending = golden is None and self._golden is not None and not stats.golden.unavailable
        return TrialFigures(
            started_at=stats.activated_at, requests=requests, errors=errors,
            p95_ms=life.latency.percentile(95), latency_samples=life.latency.count,
            golden_metric=golden.metric if golden else None, golden_count=golden.count if golden else 0,
            golden_pending=pending, online_metric=online, online_count=online_count)

    # -- windows ------------------------------------------------------------------------------

    def collect(self) -> telemetry_pb2.Telemetry:
        """Close the current window and return its Telemetry (the next window starts now)."""
        now, now_wall = self._clock(), self._wall()
        with self._lock:
            started, started_wall = self._window_start, self._window_start_wall
            self._window_start, self._window_start_wall = now, now_wall
            windows = []
            for key, stats in list(self._stats.items()):
                window = stats.reset_window()
                if window.requests or key == self._current:
                    windows.append((stats, window))
                else:
                    del self._stats[key]  # replaced and quiet: nothing more to say about it
            self._sequence += 1
            sequence = self._sequence
        seconds = max(now - started, 1e-9)
        power = self._power.read() if self._power is not None else None
        message = telemetry_pb2.Telemetry(sequence=sequence)
        message.window_start.FromNanoseconds(int(started_wall * 1e9))
        message.window_end.FromNanoseconds(int(now_wall * 1e9))
        if self._system is not None:
            message.system.CopyFrom(self._system.sample())
        for stats, window in windows:
            message.models.append(self._model_telemetry(stats, window, seconds, power))
        _write_sequence(self._sequence_path, sequence)
        return message

    def _model_telemetry(self, stats: _ModelStats, window: _Counts, seconds: float, power) -> telemetry_pb2.ModelTelemetry:
        hist = window.latency
        ok = window.requests - window.errors
        out = telemetry_pb2.ModelTelemetry(
            model=stats.key.model, version=stats.key.version, variant_id=stats.key.variant_id,
            requests=window.requests, errors=window.errors, latency=hist.to_proto(),
            p50_ms=hist.percentile(50), p95_ms=hist.percentile(95), p99_ms=hist.percentile(99),
            inferences_per_s=ok / seconds,
        )
        if power is not None:
            out.power.source = power.source
            out.power.avg_watts = power.watts
            out.power.energy_per_inference_mj = power.watts * hist.mean_ms()  # W × ms = mJ
        else:
            out.power.source = NONE
        golden = stats.golden.result
        if golden is not None:
            out.accuracy.golden_metric = golden.metric
            out.accuracy.golden_count = golden.count
        if window.online.count:
            out.accuracy.online_metric = window.online.metric or 0.0
            out.accuracy.online_count = window.online.count
        if window.confidence.count:
            out.accuracy.mean_confidence = window.confidence.mean or 0.0
        if stats.drift is not None:
            out.drift.CopyFrom(stats.drift.figures(reset=True))
        return out

    # -- the loop -----------------------------------------------------------------------------

    def tick(self) -> telemetry_pb2.Telemetry | None:
        """Golden set when due; a Telemetry when the window is over (emitted, and returned)."""
        self.evaluate_golden()
        if self._clock() - self._window_start < self.interval_s:
            return None
        message = self.collect()
        if self._emit is not None:
            self._emit(message)
        return message

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="telemetry", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def release_if_idle(self) -> bool:
        """Called every `idle_trim_s` by the loop: True when it released memory now, i.e. requests came
        (or a model was activated) since the last release, and no request since the previous call."""
        served = self._served
        if served != self._served_seen:  # still serving (or just started): check again later
            self._served_seen = served
            self._release_pending = True
            return False
        if not self._release_pending or self._release_memory is None:
            return False
        self._release_pending = False
        try:
            self._release_memory()
        except Exception:  # noqa: BLE001 - memory housekeeping must not end telemetry
            log.exception("releasing idle memory failed")
        log.debug("idle after %d requests: freed heap returned to the system", served)
        return True

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.clear()
            try:
                self.tick()
            except Exception:  # noqa: BLE001 - one bad window must not end telemetry
                log.exception("telemetry window failed")
            self.release_if_idle()
            remaining = self.interval_s - (self._clock() - self._window_start)
            # Also every idle_trim_s, to see requests stop (a wake-up costs microseconds; a per-request
            # signal would cost every request).
            self._wake.wait(min(max(remaining, 0.05), self.interval_s, self._idle_trim_s))


def _read_sequence(path: Path | None) -> int:
    if path is None:
        return 0
    try:
        return max(0, int(path.read_text().strip()))
    except (OSError, ValueError):
        return 0


def _write_sequence(path: Path | None, value: int) -> None:
    if path is None:
        return
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_text(str(value))
        os.replace(tmp, path)  # no fsync: after a power cut a number may repeat, and the message id still differs
    except OSError as exc:
        log.debug("cannot persist telemetry sequence to %s: %s", path, exc)
