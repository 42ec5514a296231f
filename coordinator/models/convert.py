"""Model records -> admin.proto messages (ModelVersion, Variant, JobProgress)."""
from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from coordinator.models.records import JobRecord, VariantRecord, VersionRecord
from edgefleet.v1 import admin_pb2, manifest_pb2


def _ts(msg: Any, dt: datetime | None) -> None:
    if dt is not None:
        msg.FromDatetime(dt)


def _tensor(shape: list[int] | None, dtype: str, quant: dict[str, float] | None) -> manifest_pb2.TensorSpec:
    spec = manifest_pb2.TensorSpec(shape=[int(d) if d is not None else -1 for d in shape or []], dtype=dtype or "")
    if quant:
        spec.scale = float(quant.get("scale") or 0.0)
        spec.zero_point = int(quant.get("zero_point") or 0)
    return spec


def variant(v: VariantRecord) -> admin_pb2.Variant:
    msg = admin_pb2.Variant(
        id=v.id, technique=v.technique, sha256=v.sha256 or "", size_bytes=v.size_bytes or 0,
        gzip_bytes=v.gzip_bytes or 0, metric=v.metric or 0.0, latency_p50_ms=v.latency_p50_ms or 0.0,
        latency_p95_ms=v.latency_p95_ms or 0.0, peak_memory_bytes=v.peak_memory_bytes or 0, ops=v.ops,
        input_dtype=v.input_dtype, output_dtype=v.output_dtype,
        edgetpu=admin_pb2.EdgeTpuFit(
            status=v.edgetpu.status, detail=v.edgetpu.detail, mapped_fraction=v.edgetpu.mapped_fraction,
            compiled_sha256=v.edgetpu.compiled_sha256 or "",
        ),
        error=v.error, skipped=v.skipped, input_features=v.input_features or [],
    )
    for key, value in v.figures.items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            msg.figures[key] = float(value)
    for key, value in v.params.items():
        msg.params[key] = json.dumps(value)
    if v.sha256:
        msg.inputs.append(_tensor(v.input_shape, v.input_dtype, v.input_quant))
        msg.outputs.append(_tensor(v.output_shape, v.output_dtype, v.output_quant))
    return msg


def model_version(r: VersionRecord, *, with_variants: bool = True) -> admin_pb2.ModelVersion:
    msg = admin_pb2.ModelVersion(
        name=r.name, version=r.version, sha256=r.model_sha256, task=r.task, metric_name=r.metric_name,
        state=r.state, source_format=r.source_format, job_id=r.job_id, error=r.error, recipe=r.recipe,
        data_sha256=r.data_sha256, baseline_id=r.baseline_id, notes=r.notes, model_bytes=r.model_bytes,
        model_flavor=r.model_flavor, model_filename=r.model_filename,
    )
    _ts(msg.created_at, r.created_at)
    if with_variants:
        msg.variants.extend(variant(v) for v in r.variants)
    return msg


def job_progress(job: JobRecord, v: VariantRecord | None = None) -> admin_pb2.JobProgress:
    msg = admin_pb2.JobProgress(
        job_id=job.id, state=job.state, step=job.step, done=job.done, total=job.total, message=job.message,
    )
    if v is not None:
        msg.variant.CopyFrom(variant(v))
    return msg
