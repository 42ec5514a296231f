"""The trial after an activation: watch the new model's live figures and decide continue | commit | rollback.

A rollout sets the trial in the manifest (TrialPolicy): it ends after `inferences` predictions or
`seconds` seconds, whichever comes first (neither set: commit at once). During the trial, and at its
end, these rules roll the model back (`Verdict.reason`, with the measured figures):

    error_rate_over_limit       errors / requests > thresholds.max_error_rate
    latency_over_budget         p95 since activation > thresholds.max_p95_ms
    golden_metric_below_floor   golden-set accuracy < thresholds.min_metric          (classification)
    golden_error_over_ceiling   golden-set MAE > thresholds.max_metric               (regression)
    online_metric_below_floor   online accuracy from Feedback < min_online_metric    (classification)
    online_error_over_ceiling   online MAE from Feedback > thresholds.max_metric     (regression)

A model that cannot be loaded for serving rolls back at once (`load_failed: <the runtime's message>`,
TrialSupervisor's `load_error`). A threshold of 0 is not set. A rule is judged only on enough samples: `min_samples` requests for error
rate and latency (or the trial's `inferences` when smaller), `min_online_samples` labels for online
accuracy; a rule without enough samples when the trial ends does not block the commit. When a golden
threshold is set, the commit waits for the golden-set figure (measured at activation) for at most
`golden_grace_s` past the end. An agent crash loop and a load failure are the install path's rules
(agent/deployer.py), not this module's.

`TrialMonitor` is the pure decision (injectable clock); `TrialSupervisor` polls it for the model on
trial and calls the install path's commit() / rollback(reason, figures).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Mapping, Protocol

from agent.serve.host import ModelKey
from edgefleet.v1 import manifest_pb2

log = logging.getLogger(__name__)

CONTINUE, COMMIT, ROLLBACK = "continue", "commit", "rollback"
DEFAULT_MIN_SAMPLES = 20
DEFAULT_MIN_ONLINE_SAMPLES = 20
DEFAULT_GOLDEN_GRACE_S = 60.0


@dataclass(frozen=True)
class TrialFigures:
    """A model's live figures since its activation (TelemetryCollector.trial_figures)."""

    started_at: float                 # activation time on the trial's clock
    requests: int = 0                 # predictions that reached the model (ok + failed)
    errors: int = 0
    p95_ms: float = 0.0               # from the since-activation latency histogram
    latency_samples: int = 0
    golden_metric: float | None = None
    golden_count: int = 0
    golden_pending: bool = False      # a golden set exists and has not been evaluated yet
    online_metric: float | None = None
    online_count: int = 0

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0


@dataclass(frozen=True)
class Verdict:
    kind: str                                   # continue | commit | rollback
    reason: str = ""
    figures: dict[str, float] = field(default_factory=dict)


class TrialMonitor:
    def __init__(
        self,
        policy: manifest_pb2.TrialPolicy,
        task: str,
        *,
        clock: Callable[[], float] = time.monotonic,
        started_at: float | None = None,
        min_samples: int = DEFAULT_MIN_SAMPLES,
        min_online_samples: int = DEFAULT_MIN_ONLINE_SAMPLES,
        golden_grace_s: float = DEFAULT_GOLDEN_GRACE_S,
    ) -> None:
        self.policy = policy
        self.task = task or "classification"
        self._clock = clock
        self.started_at = clock() if started_at is None else started_at
        need = max(1, min_samples)
        self.min_samples = min(need, policy.inferences) if policy.inferences else need
        self.min_online_samples = max(1, min_online_samples)
        self.golden_grace_s = golden_grace_s
        self._ended_at: float | None = None  # seconds into the trial when its window closed

    def elapsed(self) -> float:
        return self._clock() - self.started_at

    def ended(self, figures: TrialFigures) -> bool:
        p = self.policy
        if not p.inferences and not p.seconds:
            return True
        return bool((p.inferences and figures.requests >= p.inferences) or (p.seconds and self.elapsed() >= p.seconds))

    def check(self, figures: TrialFigures) -> Verdict:
        elapsed = self.elapsed()
        measured = self._figures(figures, elapsed)
        broken = self._broken_rule(figures, measured)
        if broken is not None:
            return Verdict(ROLLBACK, broken, measured)
        if not self.ended(figures):
            return Verdict(CONTINUE, figures=measured)
        if self._ended_at is None:
            self._ended_at = elapsed
        if figures.golden_pending and self._golden_threshold() and elapsed < self._ended_at + self.golden_grace_s:
            return Verdict(CONTINUE, "waiting for the golden-set figure", measured)
        return Verdict(COMMIT, figures=measured)

    def _golden_threshold(self) -> bool:
        t = self.policy.thresholds
        return (t.min_metric > 0) if self.task == "classification" else (t.max_metric > 0)

    def _figures(self, f: TrialFigures, elapsed: float) -> dict[str, float]:
        out = {"requests": float(f.requests), "errors": float(f.errors), "error_rate": f.error_rate,
               "elapsed_s": elapsed}
        if f.latency_samples:
            out["p95_ms"] = f.p95_ms
        if f.golden_metric is not None:
            out["metric"] = f.golden_metric
            out["golden_count"] = float(f.golden_count)
        if f.online_metric is not None:
            out["online_metric"] = f.online_metric
            out["online_count"] = float(f.online_count)
        return out

    def _broken_rule(self, f: TrialFigures, measured: dict[str, float]) -> str | None:
        t = self.policy.thresholds
        if t.max_error_rate > 0 and f.requests >= self.min_samples and f.error_rate > t.max_error_rate:
            measured["max_error_rate"] = t.max_error_rate
            return "error_rate_over_limit"
        if t.max_p95_ms > 0 and f.latency_samples >= self.min_samples and f.p95_ms > t.max_p95_ms:
            measured["max_p95_ms"] = t.max_p95_ms
            return "latency_over_budget"
        classification = self.task == "classification"
        if f.golden_metric is not None:
            if classification and t.min_metric > 0 and f.golden_metric < t.min_metric:
                measured["min_metric"] = t.min_metric
                return "golden_metric_below_floor"
            if not classification and t.max_metric > 0 and f.golden_metric > t.max_metric:
                measured["max_metric"] = t.max_metric
                return "golden_error_over_ceiling"
        if f.online_metric is not None and f.online_count >= self.min_online_samples:
            if classification and self.policy.min_online_metric > 0 and f.online_metric < self.policy.min_online_metric:
                measured["min_online_metric"] = self.policy.min_online_metric
                return "online_metric_below_floor"
            if not classification and t.max_metric > 0 and f.online_metric > t.max_metric:
                measured["max_metric"] = t.max_metric
                return "online_error_over_ceiling"
        return None


# -- wiring to the install path -----------------------------------------------------------------


class TrialDeployer(Protocol):
    """What the supervisor needs of agent/deployer.py."""

    def trial_active(self) -> bool: ...

    def active_manifest(self) -> manifest_pb2.ModelManifest | None: ...

    def commit(self) -> object: ...

    def rollback(self, reason: str, figures: Mapping[str, float]) -> object: ...


def key_of(manifest: manifest_pb2.ModelManifest) -> ModelKey:
    return ModelKey(manifest.model, manifest.version, manifest.variant_id)


class TrialSupervisor:
    """Poll the trial of the model on trial (deployer.trial_active()) and act on the verdict.

    `figures(key)` returns the model's TrialFigures since activation, or None before it was activated
    (TelemetryCollector.trial_figures). `load_error(key)` says why the model on trial could not be
    loaded for serving (ModelHost.load_error): that rolls back at once with reason "load_failed: ...".
    `after_rollback()` / `after_commit()` run after the deployer's call returned.
    """

    def __init__(
        self,
        deployer: TrialDeployer,
        figures: Callable[[ModelKey], TrialFigures | None],
        *,
        clock: Callable[[], float] = time.monotonic,
        interval_s: float = 1.0,
        after_rollback: Callable[[], None] | None = None,
        after_commit: Callable[[], None] | None = None,
        load_error: Callable[[ModelKey], str | None] | None = None,
        min_samples: int = DEFAULT_MIN_SAMPLES,
        min_online_samples: int = DEFAULT_MIN_ONLINE_SAMPLES,
        golden_grace_s: float = DEFAULT_GOLDEN_GRACE_S,
    ) -> None:
        self.deployer = deployer
        self._figures = figures
        self._clock = clock
        self.interval_s = interval_s
        self._after_rollback = after_rollback
        self._after_commit = after_commit
        self._load_error = load_error
        self._options = dict(min_samples=min_samples, min_online_samples=min_online_samples, golden_grace_s=golden_grace_s)
        self._monitor: TrialMonitor | None = None
        self._monitor_for: tuple[ModelKey, int] | None = None
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self.last_verdict: Verdict | None = None

    def poll(self) -> Verdict | None:
        """One look at the trial; None when no trial runs."""
        if not self.deployer.trial_active():
            self._monitor = self._monitor_for = None
            return None
        manifest = self.deployer.active_manifest()
        if manifest is None:
            return None
        key = key_of(manifest)
        figures = self._figures(key)
        if self._monitor is None or self._monitor_for != (key, manifest.sequence):
            started = figures.started_at if figures is not None else self._clock()
            self._monitor = TrialMonitor(manifest.trial, manifest.task, clock=self._clock, started_at=started, **self._options)
            self._monitor_for = (key, manifest.sequence)
            log.info("trial of %s started: %s", key, _describe(manifest.trial))
        if figures is None:  # not activated in the host yet: only the clock runs
            figures = TrialFigures(started_at=self._monitor.started_at)
        failed = self._load_error(key) if self._load_error is not None else None
        if failed:
            verdict = Verdict(ROLLBACK, f"load_failed: {failed}", {"elapsed_s": self._monitor.elapsed()})
        else:
            verdict = self._monitor.check(figures)
        self.last_verdict = verdict
        if verdict.kind == COMMIT:
            log.info("trial of %s passed: committing (%s)", key, _brief(verdict.figures))
            self.deployer.commit()
            self._monitor = self._monitor_for = None
            if self._after_commit is not None:
                self._after_commit()
        elif verdict.kind == ROLLBACK:
            log.warning("trial of %s failed (%s): rolling back (%s)", key, verdict.reason, _brief(verdict.figures))
            self.deployer.rollback(verdict.reason, verdict.figures)
            self._monitor = self._monitor_for = None
            if self._after_rollback is not None:
                self._after_rollback()
        return verdict

    def wake(self) -> None:
        """Poll now (after an activation) rather than at the next interval."""
        self._wake.set()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="trial-supervisor", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.clear()
            try:
                self.poll()
            except Exception:  # noqa: BLE001 - a failed commit/rollback is retried at the next poll
                log.exception("trial supervision failed; retrying")
            self._wake.wait(self.interval_s)


def _describe(policy: manifest_pb2.TrialPolicy) -> str:
    parts = []
    if policy.inferences:
        parts.append(f"{policy.inferences} inferences")
    if policy.seconds:
        parts.append(f"{policy.seconds} s")
    return " or ".join(parts) or "no window (commit at once)"


def _brief(figures: Mapping[str, float]) -> str:
    return ", ".join(f"{k}={v:.4g}" for k, v in figures.items())
