"""Telemetry thresholds over a wave's observation window: p95 latency, metric, error rate.

The engine asks an `Observe` callable for the figures of the devices that committed so far, running
the rollout's model version, since the current wave started:

    observe(device_ids, model, version, since) -> Figures | None     (None: nothing reported yet)

`TelemetryObserver` answers from the telemetry area's store (coordinator/telemetry/): one summary
query per call, merged over the devices as the fleet view merges them (latency from the merged
histograms). Tests pass their own callable.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Callable, Protocol, Sequence

from coordinator.rollouts.spec import RolloutParams
from coordinator.selection import fmt_ms, fmt_percent

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Figures:
    devices: int  # devices that reported
    requests: int
    errors: int = 0
    p95_ms: float | None = None
    metric: float | None = None  # golden-set metric where measured, else the online metric
    metric_source: str = ""  # golden | online

    @property
    def error_rate(self) -> float | None:
        return self.errors / self.requests if self.requests else None


class Observe(Protocol):
    def __call__(self, device_ids: Sequence[str], model: str, version: str, since: datetime) -> Figures | None: ...


def no_telemetry(device_ids: Sequence[str], model: str, version: str, since: datetime) -> Figures | None:
    return None


def threshold_breach(fig: Figures | None, params: RolloutParams, metric_name: str = "metric") -> str | None:
    """Why the figures break the rollout's thresholds, or None (no figures never break anything)."""
    if fig is None:
        return None
    where = f"over {fig.devices} device{'s' if fig.devices != 1 else ''}"
    if params.max_p95_ms is not None and fig.p95_ms is not None and fig.requests and fig.p95_ms > params.max_p95_ms:
        return f"telemetry p95 {fmt_ms(fig.p95_ms)} > {fmt_ms(params.max_p95_ms)} budget ({fig.requests} requests {where})"
    rate = fig.error_rate
    if params.max_error_rate is not None and rate is not None and rate > params.max_error_rate:
        return f"telemetry error rate {fmt_percent(rate)} > {fmt_percent(params.max_error_rate)} ({fig.errors} of {fig.requests} requests {where})"
    if fig.metric is not None:
        src = f"{fig.metric_source} " if fig.metric_source else ""
        if params.min_metric is not None and fig.metric < params.min_metric:
            return f"telemetry {src}{metric_name} {fig.metric:.4g} < {params.min_metric:.4g} required ({where})"
        if params.max_metric is not None and fig.metric > params.max_metric:
            return f"telemetry {src}{metric_name} {fig.metric:.4g} > {params.max_metric:.4g} allowed ({where})"
    return None


class TelemetryObserver:
    """Figures from the telemetry area; `service()` returns its TelemetryService (None until it exists)."""

    def __init__(self, service: Callable[[], object | None]):
        self.service = service

    def __call__(self, device_ids: Sequence[str], model: str, version: str, since: datetime) -> Figures | None:
        svc = self.service()
        if svc is None or not device_ids:
            return None
        from coordinator.telemetry.aggregate import fleet
        from coordinator.telemetry.queries import TelemetryFilter

        wanted = set(device_ids)
        rows, _ = svc.query(TelemetryFilter(view="summary", model=f"{model}:{version}", since=since))
        rows = [r for r in rows if r.device_id in wanted]
        figures = [f for f in fleet(rows) if f.model == model and f.version == version]
        if not figures:
            return None
        f = figures[0]
        if f.golden_count:
            metric, source = f.golden_accuracy, "golden"
        elif f.online_count:
            metric, source = f.online_accuracy, "online"
        else:
            metric, source = None, ""
        return Figures(devices=f.devices, requests=f.requests, errors=f.errors, p95_ms=f.p95_ms if f.requests else None, metric=metric, metric_source=source)
