"""Which variant of a model each device gets, and why (the policy is described in docs/selection.md).

Pure functions over plain dataclasses: the caller turns model-store rows, registry rows and measured
latencies into `Candidate`, `DeviceFacts` and a `MeasuredLatency`, and gets back a `Choice` whose
reason names the figures behind it.

Order: hard constraints (delegate, runtime, failures measured on the class, memory, storage), then the
rollout's constraints (metric bound, p95 budget), then the Edge TPU preference, then the objective
(lowest p95: measured on the class, else host latency scaled; else the smallest variant).
"""
from __future__ import annotations

import math
import re
import statistics
from dataclasses import dataclass, field
from typing import Iterable, Mapping, Protocol, Sequence

EDGETPU = "edgetpu"
EDGETPU_STATUSES = ("compiled", "compatible", "incompatible", "not_applicable")
LOWER_IS_BETTER = frozenset({"mae", "mse", "rmse", "loss"})
# A runtime with no version requirement known to load today's converter output. tflite_runtime is
# not among them: its last release (2.14) refuses op versions TF 2.21 writes (FACTS), so a variant must
# declare tflite_runtime support in Candidate.min_runtime_versions to go to such a device.
RUNTIMES_LOADING_CURRENT_OPS = frozenset({"ai-edge-litert", "tensorflow.lite"})
NO_RUNTIME = frozenset({"", "none"})


@dataclass(frozen=True)
class Candidate:
    """One variant of a model version, as measured on the coordinator's host."""

    variant_id: str
    technique: str
    sha256: str
    size_bytes: int
    arena_bytes: int = 0  # tensor arena (peak activations) on top of the model bytes
    ops: tuple[str, ...] = ()
    input_dtype: str = "float32"
    output_dtype: str = "float32"
    metric: float | None = None
    metric_name: str = "accuracy"  # accuracy: higher is better; mae: lower is better
    host_p50_ms: float | None = None
    host_p95_ms: float | None = None
    edgetpu: str = "not_applicable"  # compiled | compatible | incompatible | not_applicable
    requires_delegate: str = ""  # "edgetpu" for an artifact compiled for the Edge TPU
    # Oldest runtime version known to load this artifact, per runtime name ("tflite_runtime": "2.16").
    min_runtime_versions: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.edgetpu not in EDGETPU_STATUSES:
            raise ValueError(f"variant {self.variant_id}: edgetpu status {self.edgetpu!r} is not one of {', '.join(EDGETPU_STATUSES)}")
        if self.size_bytes < 0 or self.arena_bytes < 0:
            raise ValueError(f"variant {self.variant_id}: negative size or arena")

    @property
    def higher_is_better(self) -> bool:
        return self.metric_name not in LOWER_IS_BETTER

    @property
    def for_edgetpu(self) -> bool:
        return self.edgetpu in ("compiled", "compatible")


@dataclass(frozen=True)
class DeviceFacts:
    """What selection needs to know about one device (from its last hello)."""

    device_id: str
    name: str = ""
    hardware_class: str = ""
    accelerators: tuple[str, ...] = ()  # kinds: edgetpu, gpu
    delegates: tuple[str, ...] = ()  # delegates its runtime can load: xnnpack, edgetpu, gpu
    memory_available_bytes: int = 0
    storage_free_bytes: int = 0
    runtime_name: str = ""  # ai-edge-litert | tflite_runtime | tensorflow.lite | none
    runtime_version: str = ""
    latency_factor: float = 1.0  # the profile's slowdown against the host; 1.0 for real hardware
    simulated: bool = False
    reported: bool = True  # False until the device has sent a hardware profile

    @property
    def has_edgetpu(self) -> bool:
        return EDGETPU in self.accelerators

    @classmethod
    def from_hardware(cls, device_id: str, name: str, hardware) -> DeviceFacts:
        """From a HardwareProfile message (None when the device never said hello)."""
        if hardware is None:
            return cls(device_id=device_id, name=name, reported=False)
        return cls(
            device_id=device_id,
            name=name,
            hardware_class=hardware.hardware_class,
            accelerators=tuple(a.kind for a in hardware.accelerators),
            delegates=tuple(hardware.runtime.delegates),
            memory_available_bytes=int(hardware.memory.available_bytes),
            storage_free_bytes=int(hardware.storage.free_bytes),
            runtime_name=hardware.runtime.name,
            runtime_version=hardware.runtime.version,
            latency_factor=hardware.latency_factor or 1.0,  # 0 = not set
            simulated=hardware.simulated,
        )


@dataclass(frozen=True)
class Constraints:
    """The rollout's bounds and the policy's knobs."""

    min_metric: float | None = None  # accuracy floor
    max_metric: float | None = None  # MAE ceiling
    max_p95_ms: float | None = None
    memory_fraction: float = 0.5  # model bytes + arena must fit in this share of available memory
    storage_margin_bytes: int = 16 * 1024 * 1024  # left free after the new slot is written
    edgetpu_cpu_fallback: bool = True  # Edge TPU device with no usable Edge TPU variant: take a CPU one

    def __post_init__(self) -> None:
        if not 0 < self.memory_fraction <= 1:
            raise ValueError(f"memory_fraction must be in (0, 1], got {self.memory_fraction}")
        if self.storage_margin_bytes < 0:
            raise ValueError(f"storage_margin_bytes must be >= 0, got {self.storage_margin_bytes}")
        if self.max_p95_ms is not None and self.max_p95_ms <= 0:
            raise ValueError(f"max_p95_ms must be > 0, got {self.max_p95_ms}")


@dataclass(frozen=True)
class Measurement:
    """Latest on-device figures of one artifact on one hardware class."""

    p50_ms: float | None
    p95_ms: float | None
    count: int = 1  # successful results
    simulated: bool = False
    host_p50_ms: float | None = None
    host_p95_ms: float | None = None
    load_ms: float | None = None
    peak_rss_bytes: int | None = None
    error_count: int = 0
    last_error: str = ""

    @property
    def ok(self) -> bool:
        return self.count > 0 and self.p95_ms is not None

    @property
    def failed_only(self) -> bool:
        return self.count == 0 and self.error_count > 0


@dataclass(frozen=True)
class SpeedFactor:
    """measured p95 / host p95 on one class, the median over `variants` measured artifacts."""

    factor: float
    variants: int
    simulated: bool = False


class MeasuredLatency(Protocol):
    def lookup(self, hardware_class: str, sha256: str) -> Measurement | None: ...

    def class_speed_factor(self, hardware_class: str) -> SpeedFactor | None: ...


class MeasuredTable:
    """In-memory MeasuredLatency: the profiling store hands one out (a snapshot), tests build their own."""

    def __init__(self, rows: Iterable[tuple[str, str, Measurement]] = ()):
        self._rows: dict[tuple[str, str], Measurement] = {}
        for hardware_class, sha256, m in rows:
            self.add(hardware_class, sha256, m)

    def add(self, hardware_class: str, sha256: str, m: Measurement) -> None:
        self._rows[(hardware_class, sha256)] = m

    def lookup(self, hardware_class: str, sha256: str) -> Measurement | None:
        return self._rows.get((hardware_class, sha256))

    def class_speed_factor(self, hardware_class: str) -> SpeedFactor | None:
        ratios, simulated = [], False
        for (cls, _), m in self._rows.items():
            if cls == hardware_class and m.ok and m.host_p95_ms and m.host_p95_ms > 0:
                ratios.append(m.p95_ms / m.host_p95_ms)
                simulated = simulated or m.simulated
        if not ratios:
            return None
        return SpeedFactor(statistics.median(ratios), len(ratios), simulated)

    def __len__(self) -> int:
        return len(self._rows)


NOTHING_MEASURED = MeasuredTable()


@dataclass(frozen=True)
class LatencyEstimate:
    p50_ms: float | None
    p95_ms: float
    source: str  # measured | class_factor | profile_factor
    basis: str  # where the figure comes from: "measured on raspberry-pi-4, 2 results"

    @property
    def figure(self) -> str:
        return f"p95 {'' if self.source == 'measured' else '~'}{fmt_ms(self.p95_ms)}"

    @property
    def detail(self) -> str:
        return f"{self.figure} ({self.basis})"


@dataclass(frozen=True)
class Choice:
    variant: Candidate | None
    reason: str
    excluded: list[tuple[str, str]] = field(default_factory=list)  # (variant id, reason), in candidate order
    latency: LatencyEstimate | None = None

    @property
    def variant_id(self) -> str | None:
        return self.variant.variant_id if self.variant else None


@dataclass(frozen=True)
class DevicePlan:
    device: DeviceFacts
    choice: Choice

    @property
    def device_id(self) -> str:
        return self.device.device_id

    @property
    def variant_id(self) -> str | None:
        return self.choice.variant_id

    @property
    def excluded(self) -> bool:
        return self.choice.variant is None

    @property
    def reason(self) -> str:
        return self.choice.reason

    def to_proto(self, wave: int = 0):
        from edgefleet.v1 import admin_pb2

        return admin_pb2.DevicePlan(
            device_id=self.device.device_id,
            device_name=self.device.name,
            hardware_class=self.device.hardware_class,
            variant_id=self.variant_id or "",
            reason=self.reason,
            excluded=self.excluded,
            wave=wave,
        )


# --- figures in reasons ------------------------------------------------------------------------------

def fmt_bytes(n: int | float) -> str:
    """13923320 -> '13.9 MB', 6000000 -> '6 MB', 42864 -> '42.9 kB' (decimal units, as sizes are quoted)."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if abs(n) >= scale:
            return f"{_num(n / scale)} {unit}"
    return f"{int(n)} B"


def fmt_ms(ms: float) -> str:
    return f"{_num(ms, 3)} ms"


def _num(x: float, sig: int = 3) -> str:
    text = f"{x:.{sig}g}" if abs(x) < 10 ** sig else f"{x:.0f}"
    if "e" in text:
        text = f"{x:.1f}"
    return text


def fmt_percent(fraction: float) -> str:
    return f"{_num(fraction * 100)}%"


# --- runtime versions --------------------------------------------------------------------------------

def version_tuple(version: str) -> tuple[int, ...]:
    """'2.14.0' -> (2, 14, 0); '2.16.0rc1' -> (2, 16, 0); '' -> ()."""
    parts = []
    for piece in version.split("."):
        m = re.match(r"\d+", piece)
        if m is None:
            break
        parts.append(int(m.group()))
    return tuple(parts)


def _at_least(version: str, minimum: str) -> bool:
    have, need = version_tuple(version), version_tuple(minimum)
    width = max(len(have), len(need))
    return have + (0,) * (width - len(have)) >= need + (0,) * (width - len(need))


# --- the rules ---------------------------------------------------------------------------------------

def device_exclusion(device: DeviceFacts) -> str | None:
    """A reason no variant at all can go to this device, or None."""
    if not device.reported:
        return "the device has not reported its hardware yet (no hello since enrollment)"
    if device.runtime_name in NO_RUNTIME:
        return "the device has no inference runtime (runtime: none): install ai-edge-litert on it"
    return None


def hard_exclusion(device: DeviceFacts, c: Candidate, constraints: Constraints, measured: MeasuredLatency = NOTHING_MEASURED) -> str | None:
    """Why this variant cannot run on this device at all (delegate, runtime, failures, memory, storage), or None."""
    vid = c.variant_id
    if c.requires_delegate:
        if c.requires_delegate == EDGETPU and not device.has_edgetpu:
            return f"{vid}: compiled for the Edge TPU; the device has none"
        if c.requires_delegate not in device.delegates:
            have = ", ".join(device.delegates) or "none"
            return f"{vid}: needs the {c.requires_delegate} delegate; the device's runtime loads {have}"
    runtime, version = device.runtime_name, device.runtime_version
    minimum = c.min_runtime_versions.get(runtime)
    if minimum is not None:
        if not _at_least(version, minimum):
            return f"{vid}: needs {runtime} >= {minimum}; the device has {version or 'an unknown version'}"
    elif runtime not in RUNTIMES_LOADING_CURRENT_OPS:
        named = f"{runtime} {version}" if version else runtime
        return f"{vid}: {named} cannot load the op versions today's converter writes (the variant declares no {runtime} support)"
    m = measured.lookup(device.hardware_class, c.sha256) if device.hardware_class else None
    if m is not None and m.failed_only:
        return f"{vid}: failed on {device.hardware_class} devices ({m.error_count}x): {m.last_error or 'no reason given'}"
    need = c.size_bytes + c.arena_bytes
    limit = constraints.memory_fraction * device.memory_available_bytes
    if need > limit:
        return (
            f"{vid}: {fmt_bytes(c.size_bytes)} + {fmt_bytes(c.arena_bytes)} arena > "
            f"{fmt_percent(constraints.memory_fraction)} of {fmt_bytes(device.memory_available_bytes)} available"
        )
    room = device.storage_free_bytes - constraints.storage_margin_bytes
    if c.size_bytes > room:
        return (
            f"{vid}: {fmt_bytes(c.size_bytes)} > {fmt_bytes(device.storage_free_bytes)} free storage "
            f"less a {fmt_bytes(constraints.storage_margin_bytes)} margin"
        )
    return None


def estimate_latency(device: DeviceFacts, c: Candidate, measured: MeasuredLatency = NOTHING_MEASURED) -> LatencyEstimate | None:
    """The best p95 figure for this variant on this device: measured on its class, else the host's scaled."""
    cls = device.hardware_class
    m = measured.lookup(cls, c.sha256) if cls else None
    if m is not None and m.ok:
        sim = ", simulated" if m.simulated else ""
        results = "result" if m.count == 1 else "results"
        return LatencyEstimate(m.p50_ms, m.p95_ms, "measured", f"measured on {cls}, {m.count} {results}{sim}")
    if c.host_p95_ms is None:
        return None
    sf = measured.class_speed_factor(cls) if cls else None
    if sf is not None:
        sim = ", simulated" if sf.simulated else ""
        n = "variant" if sf.variants == 1 else "variants"
        factor, why, source = sf.factor, f"{cls} speed factor from {sf.variants} measured {n}{sim}", "class_factor"
    else:
        factor = device.latency_factor if device.latency_factor > 0 else 1.0
        why, source = f"profile latency factor; nothing measured on {cls or 'its class'}", "profile_factor"
    p95 = c.host_p95_ms * factor
    p50 = c.host_p50_ms * factor if c.host_p50_ms is not None else None
    return LatencyEstimate(p50, p95, source, f"host {fmt_ms(c.host_p95_ms)} x {_num(factor)}, {why}")


def rollout_exclusion(c: Candidate, constraints: Constraints, estimate: LatencyEstimate | None) -> str | None:
    """Why the variant misses the rollout's bounds (metric, p95 budget), or None."""
    vid = c.variant_id
    name = c.metric_name
    if constraints.min_metric is not None:
        if c.metric is None:
            return f"{vid}: no {name} measured to check the {_num(constraints.min_metric, 4)} floor"
        if c.metric < constraints.min_metric:
            return f"{vid}: {name} {_num(c.metric, 4)} < {_num(constraints.min_metric, 4)} required"
    if constraints.max_metric is not None:
        if c.metric is None:
            return f"{vid}: no {name} measured to check the {_num(constraints.max_metric, 4)} ceiling"
        if c.metric > constraints.max_metric:
            return f"{vid}: {name} {_num(c.metric, 4)} > {_num(constraints.max_metric, 4)} allowed"
    # No figure at all (an artifact compiled for the Edge TPU cannot run on the host): the budget is
    # left to the trial on the device, which rolls back a model over it, rather than excluding it.
    if constraints.max_p95_ms is not None and estimate is not None:
        if estimate.p95_ms > constraints.max_p95_ms:
            return f"{vid}: {estimate.figure} > {fmt_ms(constraints.max_p95_ms)} budget ({estimate.basis})"
    return None


def select(
    device: DeviceFacts,
    candidates: Sequence[Candidate],
    constraints: Constraints = Constraints(),
    measured: MeasuredLatency = NOTHING_MEASURED,
) -> Choice:
    """The variant this device should run, with the reason, and every variant left out with its own."""
    if not candidates:
        return Choice(None, "the model version has no usable variant")
    ids = [c.variant_id for c in candidates]
    if len(set(ids)) != len(ids):
        raise ValueError(f"variant ids must be unique among candidates: {', '.join(sorted({i for i in ids if ids.count(i) > 1}))}")
    blocked = device_exclusion(device)
    if blocked is not None:
        return Choice(None, blocked, [(c.variant_id, blocked) for c in candidates])

    excluded: dict[str, str] = {}
    estimates: dict[str, LatencyEstimate | None] = {}
    eligible: list[Candidate] = []
    for c in candidates:
        why = hard_exclusion(device, c, constraints, measured)
        if why is None:
            estimates[c.variant_id] = estimate_latency(device, c, measured)
            why = rollout_exclusion(c, constraints, estimates[c.variant_id])
        if why is None:
            eligible.append(c)
        else:
            excluded[c.variant_id] = why

    prefix = ""
    if device.has_edgetpu:
        pool, prefix, refusal = _edgetpu_pool(eligible, candidates, excluded, constraints)
        if refusal is not None:
            return Choice(None, refusal, _in_order(candidates, excluded))
        eligible = pool

    if not eligible:
        reasons = "; ".join(excluded[c.variant_id] for c in candidates)
        return Choice(None, f"no variant fits: {reasons}", _in_order(candidates, excluded))

    best, reason = _objective(eligible, estimates)
    if constraints.max_p95_ms is not None and estimates.get(best.variant_id) is None:
        reason += f"; the {fmt_ms(constraints.max_p95_ms)} p95 budget is left to the trial on the device"
    return Choice(best, prefix + reason, _in_order(candidates, excluded), estimates.get(best.variant_id))


def _edgetpu_pool(
    eligible: list[Candidate], candidates: Sequence[Candidate], excluded: dict[str, str], constraints: Constraints
) -> tuple[list[Candidate], str, str | None]:
    """(variants to choose from, reason prefix, refusal). Compiled beats compatible beats the CPU fallback."""
    compiled = [c for c in eligible if c.edgetpu == "compiled"]
    compatible = [c for c in eligible if c.edgetpu == "compatible"]
    if compiled:
        for c in eligible:
            if c.edgetpu != "compiled":
                excluded[c.variant_id] = f"{c.variant_id}: not compiled for the Edge TPU; a compiled variant fits"
        return compiled, "Edge TPU, compiled: ", None
    if compatible:
        for c in eligible:
            if not c.for_edgetpu:
                excluded[c.variant_id] = f"{c.variant_id}: not Edge TPU-compatible ({c.edgetpu}); an Edge TPU int8 variant fits"
        note = "Edge TPU-compatible, not compiled: " if not any(c.edgetpu == "compiled" for c in candidates) else "Edge TPU-compatible (the compiled variant does not fit): "
        return compatible, note, None
    tpu_any = [c for c in candidates if c.for_edgetpu]
    why_none = "no variant is Edge TPU-compatible" if not tpu_any else "no Edge TPU variant fits (" + "; ".join(excluded[c.variant_id] for c in tpu_any) + ")"
    if not constraints.edgetpu_cpu_fallback:
        return [], "", f"the device has an Edge TPU and {why_none}; CPU fallback is off"
    return eligible, f"{why_none}; on the CPU: ", None


def _objective(eligible: list[Candidate], estimates: Mapping[str, LatencyEstimate | None]) -> tuple[Candidate, str]:
    def key(c: Candidate):
        e = estimates.get(c.variant_id)
        return (e.p95_ms if e else math.inf, c.size_bytes, c.variant_id)

    ranked = sorted(eligible, key=key)
    best = ranked[0]
    est = estimates.get(best.variant_id)
    n = len(eligible)
    if est is None:
        if n == 1:
            return best, f"{best.variant_id}: the only variant that fits ({fmt_bytes(best.size_bytes)}; no latency figures)"
        return best, f"{best.variant_id}: smallest of {n} that fit, {fmt_bytes(best.size_bytes)} (no latency figures)"
    if n == 1:
        return best, f"{best.variant_id}: the only variant that fits; {est.detail}"
    runner = ranked[1]
    other = estimates.get(runner.variant_id)
    versus = f"{runner.variant_id} {fmt_ms(other.p95_ms)}" if other else f"{runner.variant_id} has no latency figure"
    return best, f"{best.variant_id}: lowest p95 of {n} that fit; {est.detail}; next {versus}"


def _in_order(candidates: Sequence[Candidate], excluded: Mapping[str, str]) -> list[tuple[str, str]]:
    return [(c.variant_id, excluded[c.variant_id]) for c in candidates if c.variant_id in excluded]


def plan(
    devices: Iterable[DeviceFacts],
    candidates: Sequence[Candidate],
    constraints: Constraints = Constraints(),
    measured: MeasuredLatency = NOTHING_MEASURED,
) -> list[DevicePlan]:
    """select() for every device, in the order given."""
    return [DevicePlan(d, select(d, candidates, constraints, measured)) for d in devices]


def candidate_from_variant(variant, metric_name: str, *, requires_delegate: str = "", min_runtime_versions: Mapping[str, str] | None = None) -> Candidate:
    """From an admin Variant message (or anything with its field names).

    The optimizer's peak_memory_bytes is the model bytes plus peak activations (optimize/measure.py),
    so the arena is what is left after the model bytes.
    """
    edgetpu = variant.edgetpu.status if variant.edgetpu.status else "not_applicable"
    size = int(variant.size_bytes)
    return Candidate(
        variant_id=variant.id,
        technique=variant.technique,
        sha256=variant.sha256,
        size_bytes=size,
        arena_bytes=max(0, int(variant.peak_memory_bytes) - size),
        ops=tuple(variant.ops),
        input_dtype=variant.input_dtype or "float32",
        output_dtype=variant.output_dtype or "float32",
        metric=None if getattr(variant, "error", "") else float(variant.metric),
        metric_name=metric_name,
        host_p50_ms=variant.latency_p50_ms or None,
        host_p95_ms=variant.latency_p95_ms or None,
        edgetpu=edgetpu,
        requires_delegate=requires_delegate,
        min_runtime_versions=dict(min_runtime_versions or {}),
    )
