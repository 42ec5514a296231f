"""What the pipeline reports: one row per variant and the run around them (plain dataclasses, no TensorFlow).

The coordinator reads these back from the worker's JSON lines with `PipelineResult.from_dict`.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any


@dataclass
class EdgeTpuFit:
    """Edge TPU verdict for one variant."""

    status: str = "not_applicable"  # compiled | compatible | incompatible | not_applicable
    detail: str = ""
    mapped_fraction: float = 0.0  # ops on the Edge TPU / all ops (from the compiler, else estimated)
    compiled_sha256: str | None = None  # artifact of the compiled model when edgetpu_compiler ran

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> EdgeTpuFit:
        return cls(**_known(cls, data or {}))


@dataclass
class VariantResult:
    """One candidate model, measured on its own `.tflite` artifact."""

    id: str
    technique: str
    params: dict[str, Any] = field(default_factory=dict)
    sha256: str | None = None
    path: str | None = None
    size_bytes: int | None = None
    gzip_bytes: int | None = None
    metric: float | None = None
    metric_name: str | None = None
    latency_p50_ms: float | None = None
    latency_p95_ms: float | None = None
    peak_memory_bytes: int | None = None
    ops: list[str] = field(default_factory=list)
    input_dtype: str | None = None
    output_dtype: str | None = None
    input_quant: dict[str, float] | None = None  # {"scale": s, "zero_point": z} when quantized
    output_quant: dict[str, float] | None = None
    input_shape: list[int] | None = None
    output_shape: list[int] | None = None
    edgetpu: EdgeTpuFit = field(default_factory=EdgeTpuFit)
    figures: dict[str, float] = field(default_factory=dict)
    error: str | None = None
    skipped: str | None = None
    input_features: list[int] | None = None  # RFE: indices of the original feature vector the model reads

    @property
    def ok(self) -> bool:
        return self.error is None and self.skipped is None and self.sha256 is not None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> VariantResult:
        values = _known(cls, data)
        values["edgetpu"] = EdgeTpuFit.from_dict(data.get("edgetpu"))
        return cls(**values)


@dataclass
class PipelineResult:
    """A whole optimization run: the upload, what was inferred about it, and every variant row."""

    model_sha256: str
    data_sha256: str
    source_format: str  # keras | h5 | savedmodel | tflite
    model_flavor: str  # tf_keras | keras3 | tensorflow | tflite
    task: str  # classification | regression
    metric_name: str  # accuracy | mae
    recipe: str
    baseline_id: str
    input_shape: list[int | None]
    n_outputs: int
    variants: list[VariantResult] = field(default_factory=list)
    reused: list[str] = field(default_factory=list)  # variant ids whose artifact came from the cache
    notes: list[str] = field(default_factory=list)
    elapsed_s: float = 0.0

    def variant(self, variant_id: str) -> VariantResult:
        for v in self.variants:
            if v.id == variant_id:
                return v
        raise KeyError(f"no variant {variant_id!r}; have {[v.id for v in self.variants]}")

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["variants"] = [v.to_dict() for v in self.variants]
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PipelineResult:
        values = _known(cls, data)
        values["variants"] = [VariantResult.from_dict(v) for v in data.get("variants", [])]
        return cls(**values)


def _known(cls: type, data: dict[str, Any]) -> dict[str, Any]:
    # Ignore keys a newer worker may add, so an older coordinator can still read its output.
    names = {f.name for f in fields(cls)}
    return {k: v for k, v in data.items() if k in names}
