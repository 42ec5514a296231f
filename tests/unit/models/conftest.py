"""Fixtures for the models area: artifact stores, a fake optimizer worker, push streams, job waits."""
from __future__ import annotations

import io
import json
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from coordinator.models.artifacts import ArtifactStore
from coordinator.models.feed import ChangeFeed
from coordinator.models.jobs import JobStore
from coordinator.models.records import JobRecord
from coordinator.models.repository import Inputs, ModelRepository
from edgefleet.v1 import admin_pb2

FAKE_WORKER = [sys.executable, str(Path(__file__).with_name("fake_worker.py"))]


def npz_bytes(**arrays: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def digits_like(n_train: int = 20, n_val: int = 10) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "x_train": rng.random((n_train, 8, 8, 1), dtype=np.float32), "y_train": rng.integers(0, 10, n_train),
        "x_val": rng.random((n_val, 8, 8, 1), dtype=np.float32), "y_val": rng.integers(0, 10, n_val),
    }


def fake_model(mode: str = "ok", **extra) -> bytes:
    """A 'model' the fake worker reads as its instructions."""
    return json.dumps({"mode": mode, **extra}).encode()


def push_chunks(
    *,
    name: str = "digits",
    model: bytes = b'{"mode": "ok"}',
    data: bytes | None = None,
    filename: str = "digits.keras",
    version: str = "",
    task: str = "",
    recipe: str = "default",
    recipe_file: tuple[str, bytes] | None = None,
    spec_file: tuple[str, bytes] | None = None,
    chunk: int = 1000,
):
    """A PushModel request stream, as edgectl sends it."""
    data = npz_bytes(**digits_like()) if data is None else data
    header = admin_pb2.PushModelHeader(
        name=name, version=version, filename=filename, task=task, recipe="" if recipe_file else recipe,
        data_filename="digits.npz", recipe_filename=recipe_file[0] if recipe_file else "",
        spec_filename=spec_file[0] if spec_file else "",
    )
    yield admin_pb2.PushModelChunk(header=header)
    parts = [("model", model), ("data", data)]
    if recipe_file:
        parts.append(("recipe", recipe_file[1]))
    if spec_file:
        parts.append(("spec", spec_file[1]))
    for part, blob in parts:
        for i in range(0, len(blob), chunk):
            yield admin_pb2.PushModelChunk(**{part: admin_pb2.FileChunk(data=blob[i : i + chunk])})


@pytest.fixture
def artifacts(tmp_path) -> ArtifactStore:
    return ArtifactStore(tmp_path / "artifacts")


@pytest.fixture
def feed() -> ChangeFeed:
    return ChangeFeed()


@pytest.fixture
def repo(store, artifacts) -> ModelRepository:
    return ModelRepository(store, artifacts)


@pytest.fixture
def jobs(store, feed) -> JobStore:
    return JobStore(store, on_change=feed.notify)


def stored_inputs(artifacts: ArtifactStore, model: bytes = b'{"mode": "ok"}', data: bytes = b"data", **kw) -> Inputs:
    """Inputs whose files really are in the artifact store (what a push leaves behind)."""
    values = dict(
        model_filename="digits.keras", model_sha256=artifacts.put_bytes(model), model_bytes=len(model),
        data_filename="digits.npz", data_sha256=artifacts.put_bytes(data), data_bytes=len(data),
    )
    values.update(kw)
    return Inputs(**values)


def wait_finished(jobs: JobStore, feed: ChangeFeed, job_id: str, timeout: float = 30) -> JobRecord:
    """Wait on the change feed (no sleeping) until the job is done or failed."""
    deadline = time.monotonic() + timeout
    while True:
        generation = feed.generation()
        job = jobs.get(job_id)
        if job.finished:
            return job
        left = deadline - time.monotonic()
        assert left > 0, f"job {job_id} still {job.state} ({job.step}) after {timeout}s"
        feed.wait_past(generation, left)


def wait_step(jobs: JobStore, feed: ChangeFeed, job_id: str, step: str, timeout: float = 30) -> JobRecord:
    deadline = time.monotonic() + timeout
    while True:
        generation = feed.generation()
        job = jobs.get(job_id)
        if job.step == step or job.finished:
            return job
        left = deadline - time.monotonic()
        assert left > 0, f"job {job_id} never reached step {step!r} (at {job.step!r}, {job.state})"
        feed.wait_past(generation, left)
