"""Optimization jobs in the store: queued -> running -> done | failed, with their version and variant rows.

A job belongs to the coordinator (`node`) whose artifact store received its inputs. A job whose
coordinator stopped while it ran is marked failed with the reason when that coordinator starts again
(`recover`); pushing the same files again builds the version anew under the same version number.
Queued jobs that never started are handed back to be run. Every committed change bumps the job's
`revision` and calls `on_change(job_id)`, which wakes the WatchJob streams.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from coordinator.models.records import JobNotFound, JobRecord, VariantRecord
from coordinator.models.repository import Inputs, utc, variant_record, variant_rows
from coordinator.store.db import Store
from coordinator.store.model_tables import ModelJobRow, ModelVariantRow, ModelVersionRow

INTERRUPTED = "interrupted: the coordinator stopped while this job ran; push the same files again to retry"


@dataclass(frozen=True)
class ClaimedJob:
    """A job this runner now owns: what the worker needs."""

    id: str
    name: str
    version: str
    inputs: Inputs


def job_record(job: ModelJobRow, version: ModelVersionRow) -> JobRecord:
    return JobRecord(
        id=job.id, name=version.name, version=version.version, state=job.state, node=job.node, step=job.step,
        done=job.done, total=job.total, message=job.message, revision=job.revision,
        created_at=utc(job.created_at), started_at=utc(job.started_at), finished_at=utc(job.finished_at),
    )


def finite(value: Any) -> Any:
    """The value with NaN and infinities replaced by None, all the way down: PostgreSQL's JSON refuses them,
    and a figure that is not a number is better shown as missing."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    return value


def _variant_values(d: dict[str, Any]) -> dict[str, Any]:
    d = finite(d)
    tpu = d.get("edgetpu") or {}
    detail = {k: v for k, v in d.items() if k != "path"}  # the worker's own file path means nothing here
    return dict(
        technique=str(d.get("technique") or ""), sha256=d.get("sha256"), size_bytes=d.get("size_bytes"),
        gzip_bytes=d.get("gzip_bytes"), metric=d.get("metric"), latency_p50_ms=d.get("latency_p50_ms"),
        latency_p95_ms=d.get("latency_p95_ms"), peak_memory_bytes=d.get("peak_memory_bytes"),
        input_dtype=d.get("input_dtype") or "", output_dtype=d.get("output_dtype") or "",
        edgetpu_status=tpu.get("status") or "not_applicable", edgetpu_detail=tpu.get("detail") or "",
        edgetpu_mapped_fraction=float(tpu.get("mapped_fraction") or 0.0), edgetpu_compiled_sha256=tpu.get("compiled_sha256"),
        error=d.get("error") or "", skipped=d.get("skipped") or "", detail=detail,
    )


class JobStore:
    def __init__(
        self,
        store: Store,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
        on_change: Callable[[str], None] | None = None,
    ):
        self.store = store
        self.clock = clock
        self.on_change = on_change or (lambda job_id: None)

    # ------------------------------------------------------------ reads

    def get(self, job_id: str) -> JobRecord:
        with self.store.session() as s:
            job, version = self._rows(s, job_id)
            return job_record(job, version)

    def snapshot(self, job_id: str) -> tuple[JobRecord, list[VariantRecord]]:
        """The job and the variant rows of its version so far (in build order)."""
        with self.store.session() as s:
            job, version = self._rows(s, job_id)
            return job_record(job, version), [variant_record(v) for v in variant_rows(s, version.id)]

    def queued(self, node: str) -> list[str]:
        with self.store.session() as s:
            query = select(ModelJobRow.id).where(ModelJobRow.state == "queued", ModelJobRow.node == node)
            return list(s.scalars(query.order_by(ModelJobRow.created_at)))

    # ------------------------------------------------------------ writes by the runner

    def claim(self, job_id: str) -> ClaimedJob | None:
        """queued -> running, atomically; None when the job is not queued any more."""
        now = self.clock()
        with self.store.session() as s:
            claimed = s.execute(
                update(ModelJobRow).where(ModelJobRow.id == job_id, ModelJobRow.state == "queued")
                .values(state="running", started_at=now, step="starting", revision=ModelJobRow.revision + 1)
            ).rowcount
            if claimed != 1:
                return None
            job, v = self._rows(s, job_id)
            inputs = Inputs(
                model_filename=v.model_filename, model_sha256=v.model_sha256, model_bytes=v.model_bytes,
                data_filename=v.data_filename, data_sha256=v.data_sha256, data_bytes=v.data_bytes,
                recipe=v.recipe, recipe_sha256=v.recipe_sha256, spec_filename=v.spec_filename,
                spec_sha256=v.spec_sha256, task=v.task,
            )
            out = ClaimedJob(job_id, v.name, v.version, inputs)
        self.on_change(job_id)
        return out

    def progress(self, job_id: str, step: str, done: int, total: int) -> None:
        with self.store.session() as s:
            s.execute(
                update(ModelJobRow).where(ModelJobRow.id == job_id, ModelJobRow.state == "running")
                .values(step=step[:128], done=max(0, int(done)), total=max(0, int(total)), revision=ModelJobRow.revision + 1)
            )
        self.on_change(job_id)

    def add_variant(self, job_id: str, variant: dict[str, Any]) -> None:
        """Record (or replace) one finished variant row while the job runs."""
        with self.store.session() as s:
            job, version = self._rows(s, job_id)
            self._upsert_variant(s, version.id, variant)
            job.revision += 1
        self.on_change(job_id)

    def finish(self, job_id: str, result: dict[str, Any]) -> None:
        """The worker's final result: the version becomes ready with exactly the result's variants."""
        now = self.clock()
        result = finite(result)
        with self.store.session() as s:
            job, version = self._rows(s, job_id)
            if job.state != "running":
                return  # failed meanwhile (timeout, shutdown): that verdict stands
            variants = list(result.get("variants") or [])
            wanted = {str(v.get("id")) for v in variants}
            for old in variant_rows(s, version.id):
                if old.variant_id not in wanted:
                    s.delete(old)
            s.flush()
            for position, v in enumerate(variants):
                self._upsert_variant(s, version.id, v, position)
            version.state = "ready"
            version.error = ""
            version.task = str(result.get("task") or version.task)
            version.metric_name = str(result.get("metric_name") or "")
            version.source_format = str(result.get("source_format") or "")
            version.model_flavor = str(result.get("model_flavor") or "")
            version.baseline_id = str(result.get("baseline_id") or "")
            version.notes = [str(n) for n in result.get("notes") or []]
            version.input_shape = list(result.get("input_shape") or [])
            version.n_outputs = int(result.get("n_outputs") or 0)
            version.finished_at = now
            ok = sum(1 for v in variants if v.get("sha256") and not v.get("error") and not v.get("skipped"))
            job.state, job.finished_at, job.step = "done", now, "done"
            job.done = job.total = max(job.total, job.done)
            job.message = f"{version.name}:{version.version} ready: {ok} of {len(variants)} variant(s) built"
            job.revision += 1
        self.on_change(job_id)

    def fail(self, job_id: str, message: str) -> bool:
        """Mark the job and its version failed; False when the job had already finished."""
        now = self.clock()
        message = " ".join(str(message).split())[:4000] or "failed"
        with self.store.session() as s:
            job, version = self._rows(s, job_id)
            if job.state in ("done", "failed"):
                return False
            job.state, job.finished_at, job.message = "failed", now, message
            job.revision += 1
            version.state, version.error, version.finished_at = "failed", message, now
        self.on_change(job_id)
        return True

    def recover(self, node: str) -> tuple[list[str], list[str]]:
        """At start: (ids of jobs that were running here, now failed; ids still queued here, to run)."""
        with self.store.session() as s:
            running = list(s.scalars(select(ModelJobRow.id).where(ModelJobRow.state == "running", ModelJobRow.node == node)))
        failed = [job_id for job_id in running if self.fail(job_id, INTERRUPTED)]
        return failed, self.queued(node)

    # ------------------------------------------------------------ internals

    def _rows(self, s: Session, job_id: str) -> tuple[ModelJobRow, ModelVersionRow]:
        job = s.get(ModelJobRow, job_id)
        if job is None:
            raise JobNotFound(f"no job {job_id!r}")
        version = s.get(ModelVersionRow, job.version_id)
        return job, version

    def _upsert_variant(self, s: Session, version_id: int, variant: dict[str, Any], position: int | None = None) -> None:
        variant_id = str(variant.get("id") or "")
        if not variant_id:
            raise ValueError("variant without an id")
        values = _variant_values(variant)
        row = s.scalars(select(ModelVariantRow).where(ModelVariantRow.version_id == version_id, ModelVariantRow.variant_id == variant_id)).first()
        if row is None:
            if position is None:
                position = len(variant_rows(s, version_id))
            s.add(ModelVariantRow(version_id=version_id, variant_id=variant_id, position=position, **values))
        else:
            for k, v in values.items():
                setattr(row, k, v)
            if position is not None:
                row.position = position
        s.flush()
