"""Tables for models (imported by store/db.py so that create_all sees them).

A model version is immutable once ready: its inputs are content-addressed artifacts (model, data, recipe,
spec), `digest` identifies them together, and its variants are rows measured on their own `.tflite`.
Jobs are the optimizer runs that build the variants; their state survives a coordinator restart.
"""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, BigInteger, DateTime, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from coordinator.store.schema import Base

SHA = String(64)


class ModelVersionRow(Base):
    __tablename__ = "model_versions"

    # Autoincrement id: the order versions were pushed in ("latest" means the highest id).
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(128), nullable=False)
    version: Mapped[str] = mapped_column(String(64), nullable=False)
    digest: Mapped[str] = mapped_column(SHA, nullable=False)  # model + data + recipe + spec + task
    state: Mapped[str] = mapped_column(String(16), nullable=False)  # optimizing | ready | failed
    error: Mapped[str] = mapped_column(Text, default="", nullable=False)
    task: Mapped[str] = mapped_column(String(32), default="", nullable=False)  # as asked; the inferred one once done
    metric_name: Mapped[str] = mapped_column(String(32), default="", nullable=False)
    source_format: Mapped[str] = mapped_column(String(32), default="", nullable=False)
    model_flavor: Mapped[str] = mapped_column(String(32), default="", nullable=False)
    model_filename: Mapped[str] = mapped_column(String(255), nullable=False)
    model_sha256: Mapped[str] = mapped_column(SHA, nullable=False)
    model_bytes: Mapped[int] = mapped_column(BigInteger, nullable=False)
    data_filename: Mapped[str] = mapped_column(String(255), nullable=False)
    data_sha256: Mapped[str] = mapped_column(SHA, nullable=False)
    data_bytes: Mapped[int] = mapped_column(BigInteger, nullable=False)
    recipe: Mapped[str] = mapped_column(String(255), nullable=False)  # default | full | the recipe file's name
    recipe_sha256: Mapped[str | None] = mapped_column(SHA)
    spec_filename: Mapped[str] = mapped_column(String(255), default="", nullable=False)
    spec_sha256: Mapped[str | None] = mapped_column(SHA)
    baseline_id: Mapped[str] = mapped_column(String(128), default="", nullable=False)
    notes: Mapped[list] = mapped_column(JSON, default=list, nullable=False)
    input_shape: Mapped[list] = mapped_column(JSON, default=list, nullable=False)
    n_outputs: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    job_id: Mapped[str] = mapped_column(String(32), default="", nullable=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        UniqueConstraint("name", "version", name="uq_model_versions_name_version"),
        # One version per set of inputs: pushing the same bytes again finds it instead of building twice.
        UniqueConstraint("name", "digest", name="uq_model_versions_name_digest"),
    )


class ModelJobRow(Base):
    __tablename__ = "model_jobs"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id", ondelete="CASCADE"), nullable=False)
    state: Mapped[str] = mapped_column(String(16), nullable=False)  # queued | running | done | failed
    # The coordinator whose data directory holds the job's inputs; only it runs or resumes the job.
    node: Mapped[str] = mapped_column(String(64), nullable=False)
    step: Mapped[str] = mapped_column(String(128), default="", nullable=False)
    done: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    total: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    message: Mapped[str] = mapped_column(Text, default="", nullable=False)  # failed: why
    revision: Mapped[int] = mapped_column(Integer, default=0, nullable=False)  # bumped on every change, for watchers
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (Index("ix_model_jobs_state_node", "state", "node"),)


class ModelVariantRow(Base):
    __tablename__ = "model_variants"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id", ondelete="CASCADE"), nullable=False)
    variant_id: Mapped[str] = mapped_column(String(128), nullable=False)
    position: Mapped[int] = mapped_column(Integer, nullable=False)  # order the pipeline produced them in
    technique: Mapped[str] = mapped_column(String(64), nullable=False)
    sha256: Mapped[str | None] = mapped_column(SHA)
    size_bytes: Mapped[int | None] = mapped_column(BigInteger)
    gzip_bytes: Mapped[int | None] = mapped_column(BigInteger)
    metric: Mapped[float | None] = mapped_column(Float)
    latency_p50_ms: Mapped[float | None] = mapped_column(Float)
    latency_p95_ms: Mapped[float | None] = mapped_column(Float)
    peak_memory_bytes: Mapped[int | None] = mapped_column(BigInteger)
    input_dtype: Mapped[str] = mapped_column(String(32), default="", nullable=False)
    output_dtype: Mapped[str] = mapped_column(String(32), default="", nullable=False)
    edgetpu_status: Mapped[str] = mapped_column(String(32), default="not_applicable", nullable=False)
    edgetpu_detail: Mapped[str] = mapped_column(Text, default="", nullable=False)
    edgetpu_mapped_fraction: Mapped[float] = mapped_column(Float, default=0.0, nullable=False)
    edgetpu_compiled_sha256: Mapped[str | None] = mapped_column(SHA)
    error: Mapped[str] = mapped_column(Text, default="", nullable=False)
    skipped: Mapped[str] = mapped_column(Text, default="", nullable=False)
    # Everything else the worker measured (ops, figures, params, tensor shapes and quantization,
    # input features), as the worker's VariantResult dict.
    detail: Mapped[dict] = mapped_column(JSON, default=dict, nullable=False)

    __table_args__ = (UniqueConstraint("version_id", "variant_id", name="uq_model_variants_version_variant"),)
