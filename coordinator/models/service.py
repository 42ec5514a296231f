"""ModelService: the models area of a running coordinator, built from its config and store.

    service = ModelService(cfg, store)   # artifacts, repository, jobs, runner, feed
    service.start()                      # recovers jobs a previous run left behind, starts the runner threads
    outcome = service.push(chunks)       # a PushModel stream -> PushOutcome (job queued unless existing)
    for job, variant in service.watch(job_id, is_active): ...
    service.stop()

Paths: artifacts in `models.artifacts_dir` (default `<data_dir>/artifacts`), the optimizer's work directory
(its build cache) in `<data_dir>/optimize`, per-job inputs and worker logs in `<data_dir>/jobs/<job id>`.
Jobs run on the coordinator that received their upload (its `node` id is kept in `<data_dir>/node_id`);
several replicas can share one store, and must share `artifacts_dir` to serve each other's variants.
"""
from __future__ import annotations

import shlex
import tempfile
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from coordinator.config import CoordinatorConfig
from coordinator.models.artifacts import ArtifactStore
from coordinator.models.feed import ChangeFeed
from coordinator.models.jobs import JobStore
from coordinator.models.records import JobRecord, ModelError, VariantRecord, VersionRecord
from coordinator.models.repository import ModelRepository, PushOutcome
from coordinator.models.runner import DEFAULT_WORKER, JobRunner
from coordinator.models.upload import receive_push
from coordinator.store.db import Store

NODE_FILE = "node_id"
# pyplot keeps global state: one plot at a time.
_PLOT_LOCK = threading.Lock()


class NothingToPlot(ModelError):
    pass


class VariantUnavailable(ModelError):
    """The variant exists but has no artifact to export (it failed or was skipped)."""


def node_id(data_dir: Path) -> str:
    """A stable id for this coordinator's data directory: the owner of the jobs it receives."""
    path = Path(data_dir) / NODE_FILE
    try:
        value = path.read_text().strip()
        if value:
            return value
    except FileNotFoundError:
        pass
    value = uuid.uuid4().hex
    tmp = path.with_name(f".{NODE_FILE}.{uuid.uuid4().hex}")
    tmp.write_text(value + "\n")
    tmp.replace(path)
    return value


class ModelService:
    def __init__(
        self,
        cfg: CoordinatorConfig,
        store: Store,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
    ):
        m = cfg.models
        data = cfg.data_path
        data.mkdir(parents=True, exist_ok=True)
        self.cfg = m
        self.artifacts = ArtifactStore(Path(m.artifacts_dir).expanduser() if m.artifacts_dir else data / "artifacts")
        self.feed = ChangeFeed()
        self.repository = ModelRepository(store, self.artifacts, clock=clock)
        self.jobs = JobStore(store, clock=clock, on_change=self.feed.notify)
        self.node = node_id(data)
        command = shlex.split(m.worker_command) if m.worker_command else list(DEFAULT_WORKER)
        self.runner = JobRunner(
            self.jobs, self.artifacts, node=self.node, workdir=data / "optimize", jobs_dir=data / "jobs",
            worker_command=command, workers=m.workers, timeout_s=m.job_timeout_s,
        )

    def start(self) -> None:
        self.runner.start()

    def stop(self) -> None:
        self.feed.close()
        self.runner.stop()

    def push(self, chunks: Iterable[Any]) -> PushOutcome:
        upload = receive_push(chunks, self.artifacts, max_model_bytes=self.cfg.max_model_bytes, max_data_bytes=self.cfg.max_data_bytes)
        outcome = self.repository.push(upload.name, upload.version, upload.inputs, node=self.node)
        if outcome.queued:
            self.runner.submit(outcome.job_id)
        return outcome

    def watch(self, job_id: str, is_active: Callable[[], bool], poll_s: float = 1.0) -> Iterator[tuple[JobRecord, VariantRecord | None]]:
        """(job, None) whenever the job's progress changes and (job, variant) for each new variant row,
        until the job ends, the watcher goes away, or the service stops. The first items are the state now."""
        sent: dict[str, tuple[Any, ...]] = {}
        last: tuple[Any, ...] | None = None
        while True:
            generation = self.feed.generation()
            job, variants = self.jobs.snapshot(job_id)
            for v in variants:
                key = (v.sha256, v.metric, v.error, v.skipped)
                if sent.get(v.id) != key:
                    sent[v.id] = key
                    yield job, v
            state = (job.state, job.step, job.done, job.total, job.message)
            if state != last:
                last = state
                yield job, None
            if job.finished or self.feed.closed or not is_active():
                return
            self.feed.wait_past(generation, poll_s)

    def plot_png(self, ref: str) -> bytes:
        """Metric against latency and size, Pareto front marked, rendered by coordinator/optimize/plot.py."""
        version = self.repository.get(ref)
        rows = [dict(v.detail, metric_name=version.metric_name or v.detail.get("metric_name")) for v in version.variants if v.ok and v.metric is not None]
        if not rows:
            raise NothingToPlot(f"{version.ref} has no measured variant to plot (state {version.state})")
        from coordinator.optimize.plot import plot_variants

        with _PLOT_LOCK, tempfile.TemporaryDirectory(prefix="edgefleet-plot-") as tmp:
            out = plot_variants(rows, Path(tmp) / "plot.png", title=f"{version.ref} ({version.metric_name or 'metric'})")
            return out.read_bytes()

    def export(self, ref: str, variant_id: str) -> tuple[VersionRecord, VariantRecord]:
        """The version and the variant to export; its artifact exists (the bytes are checked as they stream)."""
        version = self.repository.get(ref)
        v = version.variant(variant_id)
        if not v.sha256 or v.error:
            why = v.error or v.skipped or "it has no artifact"
            raise VariantUnavailable(f"variant {variant_id} of {version.ref} cannot be exported: {why}")
        self.artifacts.existing_path(v.sha256)
        return version, v
