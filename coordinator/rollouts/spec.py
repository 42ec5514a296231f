"""A rollout's parameters: the RolloutSpec an operator sent, with the coordinator's defaults applied.

proto3 cannot tell 0 from unset, so 0 means "the config's default" for every knob that has one
(canary, waves, rate, timeouts, failure limit, observation window, trial length, memory fraction),
and "no bound" for the thresholds (min/max metric, p95 budget, error rate). The result is stored
with the rollout as JSON, so a rollout keeps the defaults it started with when the config changes.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

from coordinator.config import RolloutsConfig
from coordinator.selection import Constraints
from edgefleet.v1 import admin_pb2, manifest_pb2


class BadRolloutSpec(ValueError):
    """The spec cannot be used as given; the message names the option and what is wrong."""


@dataclass(frozen=True)
class RolloutParams:
    canary_percent: float = 10.0
    canary_count: int = 0  # wins over canary_percent when set
    waves: int = 1  # after the canary
    min_metric: float | None = None
    max_metric: float | None = None
    max_p95_ms: float | None = None
    max_error_rate: float | None = None
    min_online_metric: float | None = None  # trial only: not a selection filter
    memory_fraction: float = 0.5
    storage_margin_bytes: int = 16 * 1024 * 1024
    rate_per_minute: int = 0
    device_timeout_s: float = 900.0
    rollback_timeout_s: float = 300.0
    resend_s: float = 120.0
    max_failure_percent: float = 20.0
    min_devices_for_abort: int = 3
    observe_s: float = 0.0
    trial_inferences: int = 0
    trial_seconds: int = 60
    chunk_size: int = 128 * 1024
    golden_samples: int = 256

    def constraints(self) -> Constraints:
        return Constraints(
            min_metric=self.min_metric,
            max_metric=self.max_metric,
            max_p95_ms=self.max_p95_ms,
            memory_fraction=self.memory_fraction,
            storage_margin_bytes=self.storage_margin_bytes,
        )

    @property
    def has_telemetry_thresholds(self) -> bool:
        return any(v is not None for v in (self.min_metric, self.max_metric, self.max_p95_ms, self.max_error_rate))

    def acceptance(self) -> manifest_pb2.AcceptanceThresholds:
        """What the agent checks on the golden set before activation, and during the trial."""
        return manifest_pb2.AcceptanceThresholds(
            min_metric=self.min_metric or 0.0,
            max_metric=self.max_metric or 0.0,
            max_p95_ms=self.max_p95_ms or 0.0,
            max_error_rate=self.max_error_rate or 0.0,
        )

    def trial(self) -> manifest_pb2.TrialPolicy:
        return manifest_pb2.TrialPolicy(
            inferences=self.trial_inferences,
            seconds=self.trial_seconds,
            thresholds=self.acceptance(),
            min_online_metric=self.min_online_metric or 0.0,
        )

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> RolloutParams:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def to_proto(self, ref: str, selector: str, reason: str = "") -> admin_pb2.RolloutSpec:
        return admin_pb2.RolloutSpec(
            ref=ref,
            selector=selector,
            canary_percent=self.canary_percent,
            canary_count=self.canary_count,
            waves=self.waves,
            min_metric=self.min_metric or 0.0,
            max_metric=self.max_metric or 0.0,
            max_p95_ms=self.max_p95_ms or 0.0,
            max_error_rate=self.max_error_rate or 0.0,
            min_online_metric=self.min_online_metric or 0.0,
            memory_fraction=self.memory_fraction,
            rate_per_minute=self.rate_per_minute,
            device_timeout_s=int(math.ceil(self.device_timeout_s)),
            max_failure_percent=self.max_failure_percent,
            min_devices_for_abort=self.min_devices_for_abort,
            observe_s=int(math.ceil(self.observe_s)),
            trial_inferences=self.trial_inferences,
            trial_seconds=self.trial_seconds,
            reason=reason,
        )


def _bound(value: float) -> float | None:
    return float(value) if value else None


def params_from_spec(spec: admin_pb2.RolloutSpec, cfg: RolloutsConfig) -> RolloutParams:
    """Defaults from `cfg` where the spec says 0; raises BadRolloutSpec naming what is out of range."""
    problems = []
    for name in ("canary_percent", "min_metric", "max_metric", "max_p95_ms", "max_failure_percent", "max_error_rate", "memory_fraction", "min_online_metric"):
        value = getattr(spec, name)
        if math.isnan(value) or value < 0:
            problems.append(f"{name} must be >= 0, got {value}")
    if spec.canary_percent > 100:
        problems.append(f"canary_percent must be at most 100, got {spec.canary_percent:g}")
    if spec.max_failure_percent > 100:
        problems.append(f"max_failure_percent must be at most 100, got {spec.max_failure_percent:g}")
    if spec.max_error_rate > 1:
        problems.append(f"max_error_rate is a fraction (0.01 = 1%), got {spec.max_error_rate:g}")
    if spec.memory_fraction > 1:
        problems.append(f"memory_fraction must be in (0, 1], got {spec.memory_fraction:g}")
    if spec.waves > 100:
        problems.append(f"waves must be at most 100, got {spec.waves}")
    if spec.min_metric and spec.max_metric and spec.min_metric > spec.max_metric:
        problems.append(f"min_metric {spec.min_metric:g} is above max_metric {spec.max_metric:g}")
    if problems:
        raise BadRolloutSpec("; ".join(problems))
    canary_count = int(spec.canary_count)
    return RolloutParams(
        canary_percent=0.0 if canary_count else (spec.canary_percent or cfg.canary_percent),
        canary_count=canary_count,
        waves=spec.waves or cfg.waves,
        min_metric=_bound(spec.min_metric),
        max_metric=_bound(spec.max_metric),
        max_p95_ms=_bound(spec.max_p95_ms),
        max_error_rate=_bound(spec.max_error_rate),
        min_online_metric=_bound(spec.min_online_metric),
        memory_fraction=spec.memory_fraction or cfg.memory_fraction,
        storage_margin_bytes=cfg.storage_margin_bytes,
        rate_per_minute=spec.rate_per_minute or cfg.rate_per_minute,
        device_timeout_s=float(spec.device_timeout_s or cfg.device_timeout_s),
        rollback_timeout_s=cfg.rollback_timeout_s,
        resend_s=cfg.resend_s,
        max_failure_percent=spec.max_failure_percent or cfg.max_failure_percent,
        min_devices_for_abort=spec.min_devices_for_abort or cfg.min_devices_for_abort,
        observe_s=float(spec.observe_s or cfg.observe_s),
        trial_inferences=spec.trial_inferences or cfg.trial_inferences,
        trial_seconds=spec.trial_seconds or cfg.trial_seconds,
        chunk_size=cfg.chunk_size,
        golden_samples=cfg.golden_samples,
    )
