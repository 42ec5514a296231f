"""Model versions and their variants in the store; the read API the other areas of the coordinator use.

Read API (for rollouts, selection, telemetry):

    repo = ModelRepository(store, artifacts)        # or ModelService.repository on the running coordinator
    v = repo.get_version("digits", "3")              # VersionRecord with .variants (VariantRecord, in build order)
    v = repo.get_version("digits")                   # latest version, any state
    v = repo.get_version("digits", ready_only=True)  # latest ready version
    v = repo.get("digits:3")                         # the same by ref (NAME or NAME:VERSION)
    var = repo.get_variant("digits:3", "int8")       # VariantRecord; the version must be ready (ready_only=False to skip)
    path = repo.artifact_path(var.sha256)            # the .tflite on disk (raises ArtifactError when missing)
    repo.artifact_path(v.data_sha256)                # the uploaded .npz (x_train, y_train, x_val, y_val)
    repo.list_versions("digits")                     # oldest first

Every figure the worker measured is on the VariantRecord: columns for what queries need (size, metric,
latency, memory, Edge TPU fit) and `detail` for the rest (ops, figures, params, tensor shapes and
quantization, input features). Errors: ModelNotFound, VariantNotFound, BadRef (records.py).

Writes here are the ones a push makes: `push()` creates a version and its first job in one transaction,
or finds the version that already holds the same inputs. Job progress is written by jobs.JobStore.
"""
from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from coordinator.models.artifacts import ArtifactStore
from coordinator.models.records import (
    EdgeTpuRecord,
    ModelNotFound,
    VariantRecord,
    VersionConflict,
    VersionRecord,
    check_model_name,
    check_version,
    parse_ref,
)
from coordinator.store.db import Store
from coordinator.store.model_tables import ModelJobRow, ModelVariantRow, ModelVersionRow


def utc(dt: datetime | None) -> datetime | None:
    # SQLite hands back naive datetimes: everything stored is UTC.
    if dt is not None and dt.tzinfo is None:
        return dt.replace(tzinfo=timezone.utc)
    return dt


@dataclass(frozen=True)
class Inputs:
    """What a push stored in the artifact store; together they decide what the job builds."""

    model_filename: str
    model_sha256: str
    model_bytes: int
    data_filename: str
    data_sha256: str
    data_bytes: int
    recipe: str = "default"  # default | full | the recipe file's name
    recipe_sha256: str | None = None
    spec_filename: str = ""
    spec_sha256: str | None = None
    task: str = ""  # classification | regression | "" (inferred)

    @property
    def digest(self) -> str:
        # File names do not count (renaming a file does not change the model) except the model's extension,
        # which decides how the bytes are read; a recipe file counts by its bytes, a built-in one by name.
        ext = Path(self.model_filename).suffix.lower()
        parts = {
            "model": self.model_sha256, "format": ext, "data": self.data_sha256, "task": self.task,
            "recipe": self.recipe_sha256 or self.recipe, "spec": self.spec_sha256,
        }
        return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True)
class PushOutcome:
    version: VersionRecord
    job_id: str
    existing: bool  # the same inputs were pushed before and that version is kept: nothing new is built
    queued: bool  # a new job was queued: hand job_id to the runner


def variant_record(row: ModelVariantRow) -> VariantRecord:
    return VariantRecord(
        id=row.variant_id, technique=row.technique, sha256=row.sha256, size_bytes=row.size_bytes,
        gzip_bytes=row.gzip_bytes, metric=row.metric, latency_p50_ms=row.latency_p50_ms,
        latency_p95_ms=row.latency_p95_ms, peak_memory_bytes=row.peak_memory_bytes,
        input_dtype=row.input_dtype, output_dtype=row.output_dtype,
        edgetpu=EdgeTpuRecord(row.edgetpu_status, row.edgetpu_detail, row.edgetpu_mapped_fraction, row.edgetpu_compiled_sha256),
        error=row.error, skipped=row.skipped, detail=dict(row.detail or {}),
    )


def version_record(row: ModelVersionRow, variants: list[ModelVariantRow] | None = None) -> VersionRecord:
    return VersionRecord(
        name=row.name, version=row.version, state=row.state, error=row.error, digest=row.digest, task=row.task,
        metric_name=row.metric_name, source_format=row.source_format, model_flavor=row.model_flavor,
        model_filename=row.model_filename, model_sha256=row.model_sha256, model_bytes=row.model_bytes,
        data_filename=row.data_filename, data_sha256=row.data_sha256, data_bytes=row.data_bytes,
        recipe=row.recipe, recipe_sha256=row.recipe_sha256, spec_filename=row.spec_filename,
        spec_sha256=row.spec_sha256, baseline_id=row.baseline_id, notes=list(row.notes or []),
        input_shape=list(row.input_shape or []), n_outputs=row.n_outputs, job_id=row.job_id,
        created_at=utc(row.created_at), finished_at=utc(row.finished_at),
        variants=tuple(variant_record(v) for v in sorted(variants or [], key=lambda v: v.position)),
    )


def variant_rows(s: Session, version_id: int) -> list[ModelVariantRow]:
    return list(s.scalars(select(ModelVariantRow).where(ModelVariantRow.version_id == version_id).order_by(ModelVariantRow.position)))


def next_integer_version(existing: list[str]) -> str:
    numbers = [int(v) for v in existing if v.isdigit()]
    return str(max(numbers, default=0) + 1)


class ModelRepository:
    def __init__(self, store: Store, artifacts: ArtifactStore, *, clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc)):
        self.store = store
        self.artifacts = artifacts
        self.clock = clock

    # ------------------------------------------------------------ read API

    def get_version(self, name: str, version: str | None = None, *, ready_only: bool = False) -> VersionRecord:
        """One version with its variants; without `version`, the latest (the latest ready one with ready_only)."""
        with self.store.session() as s:
            row = self._version_row(s, name, version, ready_only=ready_only)
            return version_record(row, variant_rows(s, row.id))

    def get(self, ref: str, *, ready_only: bool = False) -> VersionRecord:
        name, version = parse_ref(ref)
        return self.get_version(name, version, ready_only=ready_only)

    def get_variant(self, ref: str, variant_id: str, *, ready_only: bool = True) -> VariantRecord:
        """A variant of NAME:VERSION (or of the latest ready version of NAME)."""
        return self.get(ref, ready_only=ready_only).variant(variant_id)

    def list_versions(self, name: str | None = None) -> list[VersionRecord]:
        """Every version (of one model, or of all), oldest first, with variants."""
        with self.store.session() as s:
            query = select(ModelVersionRow).order_by(ModelVersionRow.name, ModelVersionRow.id)
            if name:
                query = query.where(ModelVersionRow.name == name)
            rows = list(s.scalars(query))
            by_version: dict[int, list[ModelVariantRow]] = {}
            if rows:
                ids = [r.id for r in rows]
                for v in s.scalars(select(ModelVariantRow).where(ModelVariantRow.version_id.in_(ids))):
                    by_version.setdefault(v.version_id, []).append(v)
            return [version_record(r, by_version.get(r.id, [])) for r in rows]

    def artifact_path(self, sha256: str) -> Path:
        """Where an artifact (variant .tflite, uploaded model or data) is on disk; ArtifactError if missing."""
        return self.artifacts.existing_path(sha256)

    # ------------------------------------------------------------ push

    def push(self, name: str, version: str | None, inputs: Inputs, *, node: str) -> PushOutcome:
        """Create NAME:VERSION (next integer when None) with a queued job, or find the version with these inputs.

        - The same inputs pushed before: that version is returned (existing=True), whatever `version` says,
          unless it failed: then it is optimized again, under the same version, by a new job.
        - An explicit version that exists with other inputs: VersionConflict, and nothing changes.
        """
        check_model_name(name)
        if version is not None:
            check_version(version)
        for attempt in range(3):
            try:
                return self._push_once(name, version, inputs, node)
            except IntegrityError:
                # Another push of this name won the race for the version number or the digest: look again.
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def _push_once(self, name: str, version: str | None, inputs: Inputs, node: str) -> PushOutcome:
        now = self.clock()
        digest = inputs.digest
        with self.store.session() as s:
            same = s.scalars(select(ModelVersionRow).where(ModelVersionRow.name == name, ModelVersionRow.digest == digest)).first()
            if same is not None and same.state != "failed":
                return PushOutcome(version_record(same, variant_rows(s, same.id)), same.job_id, existing=True, queued=False)
            if same is not None:
                # A failed version never became usable: build it again instead of taking a new number.
                s.execute(delete(ModelVariantRow).where(ModelVariantRow.version_id == same.id))
                row = same
                row.state, row.error, row.finished_at = "optimizing", "", None
            else:
                if version is None:
                    taken = list(s.scalars(select(ModelVersionRow.version).where(ModelVersionRow.name == name)))
                    version = next_integer_version(taken)
                else:
                    clash = s.scalars(select(ModelVersionRow).where(ModelVersionRow.name == name, ModelVersionRow.version == version)).first()
                    if clash is not None:
                        raise VersionConflict(
                            f"{name}:{version} already exists with different files (model {clash.model_filename}, "
                            f"sha256 {clash.model_sha256[:12]}...); versions are immutable: push with another --version, "
                            "or without --version to get the next number"
                        )
                row = ModelVersionRow(
                    name=name, version=version, digest=digest, state="optimizing", error="", task=inputs.task,
                    model_filename=inputs.model_filename, model_sha256=inputs.model_sha256, model_bytes=inputs.model_bytes,
                    data_filename=inputs.data_filename, data_sha256=inputs.data_sha256, data_bytes=inputs.data_bytes,
                    recipe=inputs.recipe, recipe_sha256=inputs.recipe_sha256, spec_filename=inputs.spec_filename,
                    spec_sha256=inputs.spec_sha256, notes=[], input_shape=[], created_at=now,
                )
                s.add(row)
                s.flush()
            job_id = uuid.uuid4().hex
            s.add(ModelJobRow(id=job_id, version_id=row.id, state="queued", node=node, created_at=now, revision=1))
            row.job_id = job_id
            s.flush()
            return PushOutcome(version_record(row, []), job_id, existing=False, queued=True)

    # ------------------------------------------------------------ internals

    def _version_row(self, s: Session, name: str, version: str | None, *, ready_only: bool) -> ModelVersionRow:
        query = select(ModelVersionRow).where(ModelVersionRow.name == name)
        if version is not None:
            row = s.scalars(query.where(ModelVersionRow.version == version)).first()
            if row is None:
                known = list(s.scalars(select(ModelVersionRow.version).where(ModelVersionRow.name == name).order_by(ModelVersionRow.id)))
                if not known:
                    raise ModelNotFound(f"no model named {name!r}")
                raise ModelNotFound(f"model {name!r} has no version {version!r} (versions: {', '.join(known)})")
            if ready_only and row.state != "ready":
                reason = f": {row.error}" if row.error else ""
                raise ModelNotFound(f"{name}:{version} is not ready (state {row.state}{reason})")
            return row
        if ready_only:
            query = query.where(ModelVersionRow.state == "ready")
        row = s.scalars(query.order_by(ModelVersionRow.id.desc())).first()
        if row is None:
            exists = s.scalars(select(ModelVersionRow.id).where(ModelVersionRow.name == name)).first()
            if exists is None:
                raise ModelNotFound(f"no model named {name!r}")
            raise ModelNotFound(f"model {name!r} has no ready version yet")
        return row
