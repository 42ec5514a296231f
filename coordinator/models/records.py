"""Plain records of model versions, variants and jobs, detached from the database session, and refs.

A ref is `NAME` (the latest version) or `NAME:VERSION`. Names are 1-128 characters and versions 1-64, of
letters, digits, `.`, `_` and `-`, starting with a letter or digit (the device-name grammar).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_VERSION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")

VERSION_STATES = ("optimizing", "ready", "failed")
JOB_STATES = ("queued", "running", "done", "failed")
TERMINAL_JOB_STATES = ("done", "failed")


class ModelError(ValueError):
    """Base of the model repository's errors; the message is safe to show to an operator."""


class BadRef(ModelError):
    pass


class ModelNotFound(ModelError):
    pass


class VariantNotFound(ModelError):
    pass


class JobNotFound(ModelError):
    pass


class VersionConflict(ModelError):
    """An explicit version already exists with other inputs: versions are immutable."""


def check_model_name(name: str) -> str:
    if not _NAME.match(name or ""):
        raise BadRef(f"bad model name {name!r}: use 1-128 letters, digits, '.', '_' or '-', starting with a letter or digit")
    return name


def check_version(version: str) -> str:
    if not _VERSION.match(version):
        raise BadRef(f"bad version {version!r}: use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit")
    return version


def parse_ref(ref: str) -> tuple[str, str | None]:
    """`NAME` -> (NAME, None); `NAME:VERSION` -> (NAME, VERSION)."""
    ref = (ref or "").strip()
    if not ref:
        raise BadRef("empty model reference; expected NAME or NAME:VERSION")
    name, sep, version = ref.partition(":")
    check_model_name(name)
    if sep:
        if not version:
            raise BadRef(f"model reference {ref!r} has an empty version; expected NAME:VERSION")
        check_version(version)
        return name, version
    return name, None


@dataclass(frozen=True)
class EdgeTpuRecord:
    status: str = "not_applicable"  # compiled | compatible | incompatible | not_applicable
    detail: str = ""
    mapped_fraction: float = 0.0
    compiled_sha256: str | None = None


@dataclass(frozen=True)
class VariantRecord:
    """One measured variant. `detail` is the worker's full VariantResult dict (see coordinator/optimize/results.py)."""

    id: str
    technique: str
    sha256: str | None
    size_bytes: int | None
    gzip_bytes: int | None
    metric: float | None
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    peak_memory_bytes: int | None
    input_dtype: str
    output_dtype: str
    edgetpu: EdgeTpuRecord
    error: str
    skipped: str
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """Built and measured: it has an artifact and no error or skip reason."""
        return bool(self.sha256) and not self.error and not self.skipped

    @property
    def ops(self) -> list[str]:
        return list(self.detail.get("ops") or [])

    @property
    def figures(self) -> dict[str, float]:
        return dict(self.detail.get("figures") or {})

    @property
    def params(self) -> dict[str, Any]:
        return dict(self.detail.get("params") or {})

    @property
    def input_features(self) -> list[int] | None:
        feats = self.detail.get("input_features")
        return None if feats is None else [int(f) for f in feats]

    @property
    def input_quant(self) -> dict[str, float] | None:
        return self.detail.get("input_quant")

    @property
    def output_quant(self) -> dict[str, float] | None:
        return self.detail.get("output_quant")

    @property
    def input_shape(self) -> list[int] | None:
        return self.detail.get("input_shape")

    @property
    def output_shape(self) -> list[int] | None:
        return self.detail.get("output_shape")


@dataclass(frozen=True)
class VersionRecord:
    name: str
    version: str
    state: str  # optimizing | ready | failed
    error: str
    digest: str
    task: str
    metric_name: str
    source_format: str
    model_flavor: str
    model_filename: str
    model_sha256: str
    model_bytes: int
    data_filename: str
    data_sha256: str
    data_bytes: int
    recipe: str
    recipe_sha256: str | None
    spec_filename: str
    spec_sha256: str | None
    baseline_id: str
    notes: list[str]
    input_shape: list[int | None]
    n_outputs: int
    job_id: str
    created_at: datetime
    finished_at: datetime | None
    variants: tuple[VariantRecord, ...] = ()

    @property
    def ref(self) -> str:
        return f"{self.name}:{self.version}"

    def variant(self, variant_id: str) -> VariantRecord:
        for v in self.variants:
            if v.id == variant_id:
                return v
        known = ", ".join(v.id for v in self.variants) or "none"
        raise VariantNotFound(f"{self.ref} has no variant {variant_id!r} (variants: {known})")


@dataclass(frozen=True)
class JobRecord:
    id: str
    name: str
    version: str
    state: str  # queued | running | done | failed
    node: str
    step: str
    done: int
    total: int
    message: str
    revision: int
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None

    @property
    def finished(self) -> bool:
        return self.state in TERMINAL_JOB_STATES

    @property
    def ref(self) -> str:
        return f"{self.name}:{self.version}"
