"""The job runner with a fake worker (tests/unit/models/fake_worker.py): JSON lines become job state."""
from __future__ import annotations

import json
import sys

import pytest

from coordinator.models.jobs import INTERRUPTED
from coordinator.models.runner import JobRunner, safe_filename
from tests.unit.models.conftest import FAKE_WORKER, fake_model, stored_inputs, wait_finished, wait_step


@pytest.fixture
def make_runner(jobs, artifacts, tmp_path):
    runners = []

    def make(node: str = "n1", timeout_s: float = 60, command=FAKE_WORKER, workers: int = 1) -> JobRunner:
        r = JobRunner(jobs, artifacts, node=node, workdir=tmp_path / "optimize", jobs_dir=tmp_path / "jobs",
                      worker_command=command, workers=workers, timeout_s=timeout_s)
        runners.append(r)
        return r

    yield make
    for r in runners:
        r.stop()


def push(repo, artifacts, mode: str = "ok", name: str = "digits", node: str = "n1", **kw):
    return repo.push(name, None, stored_inputs(artifacts, model=fake_model(mode), **kw), node=node)


def calls(tmp_path) -> list[dict]:
    path = tmp_path / "optimize" / "calls.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_a_job_runs_to_done_with_its_variants_and_artifacts(repo, jobs, feed, artifacts, make_runner, tmp_path):
    runner = make_runner()
    runner.start()
    pushed = push(repo, artifacts, task="classification", recipe="full")
    runner.submit(pushed.job_id)
    job = wait_finished(jobs, feed, pushed.job_id)
    assert (job.state, job.message) == ("done", "digits:1 ready: 2 of 4 variant(s) built")
    v = repo.get("digits:1")
    assert v.state == "ready" and v.notes == ["a note"]
    assert [(x.id, x.ok) for x in v.variants] == [("fp32", True), ("int8", True), ("pca_int8", False), ("qat_int8", False)]
    int8 = v.variant("int8")
    assert repo.artifact_path(int8.sha256).read_bytes() == b"int8 bytes"  # copied into the store, digest checked
    assert (int8.edgetpu.status, int8.input_quant) == ("compatible", {"scale": 0.5, "zero_point": -3})
    (call,) = calls(tmp_path)
    assert call["model_name"] == "digits.keras"  # the worker sees the upload's name (format, messages)
    assert (call["task"], call["recipe"], call["spec"]) == ("classification", "full", None)
    assert call["model_bytes"] == json.dumps({"mode": "ok"})
    assert not (tmp_path / "jobs" / pushed.job_id / "in").exists()  # input links removed, log kept
    assert (tmp_path / "jobs" / pushed.job_id / "worker.log").exists()


def test_recipe_and_spec_files_reach_the_worker_under_their_names(repo, jobs, feed, artifacts, make_runner, tmp_path):
    runner = make_runner()
    runner.start()
    recipe_sha = artifacts.put_bytes(b'techniques = ["int8"]\n')
    spec_sha = artifacts.put_bytes(b"family: mlp\n")
    pushed = push(repo, artifacts, recipe="fast.toml", recipe_sha256=recipe_sha, spec_filename="space.yaml", spec_sha256=spec_sha)
    runner.submit(pushed.job_id)
    assert wait_finished(jobs, feed, pushed.job_id).state == "done"
    (call,) = calls(tmp_path)
    assert call["recipe"].endswith("/fast.toml") and call["spec"].endswith("/space.yaml")
    assert call["task"] is None


def test_bad_input_fails_the_job_with_the_workers_message(repo, jobs, feed, artifacts, make_runner):
    runner = make_runner()
    runner.start()
    pushed = repo.push("digits", None, stored_inputs(artifacts, model=fake_model("input_error", message="x_val samples have shape (8, 8) but the model input expects (8, 8, 1)")), node="n1")
    runner.submit(pushed.job_id)
    job = wait_finished(jobs, feed, pushed.job_id)
    assert (job.state, job.message) == ("failed", "x_val samples have shape (8, 8) but the model input expects (8, 8, 1)")
    v = repo.get("digits:1")
    assert (v.state, v.error) == ("failed", job.message)


def test_internal_error_and_crash_name_what_happened(repo, jobs, feed, artifacts, make_runner):
    runner = make_runner()
    runner.start()
    internal = push(repo, artifacts, "internal_error", name="a")
    crash = push(repo, artifacts, "crash", name="b")
    runner.submit(internal.job_id)
    runner.submit(crash.job_id)
    msg = wait_finished(jobs, feed, internal.job_id).message
    assert msg.startswith("the optimizer failed: RuntimeError: boom (worker log: ") and msg.endswith("worker.log)")
    job = wait_finished(jobs, feed, crash.job_id)
    assert job.state == "failed"
    assert "exited with code 1 without a result; last output: MemoryError: out of memory in the fake worker" in job.message


def test_a_result_counts_even_if_the_worker_dies_after_it(repo, jobs, feed, artifacts, make_runner):
    runner = make_runner()
    runner.start()
    pushed = push(repo, artifacts, "result_then_die")
    runner.submit(pushed.job_id)
    assert wait_finished(jobs, feed, pushed.job_id).state == "done"


def test_a_corrupt_worker_artifact_fails_that_variant_only(repo, jobs, feed, artifacts, make_runner):
    runner = make_runner()
    runner.start()
    pushed = push(repo, artifacts, "bad_artifact")
    runner.submit(pushed.job_id)
    assert wait_finished(jobs, feed, pushed.job_id).state == "done"
    v = repo.get("digits:1")
    assert all("artifact not stored" in x.error for x in v.variants if x.sha256)
    assert not any(x.ok for x in v.variants)
    assert not any(artifacts.has(x.sha256) for x in v.variants if x.sha256)


def test_a_job_over_its_time_limit_is_killed_and_failed(repo, jobs, feed, artifacts, make_runner):
    runner = make_runner(timeout_s=0.5)
    runner.start()
    pushed = push(repo, artifacts, "hang")
    runner.submit(pushed.job_id)
    job = wait_finished(jobs, feed, pushed.job_id)
    assert job.state == "failed" and job.message.startswith("timed out: the optimizer ran longer than 0.5 s")
    assert runner.running == []


def test_stopping_the_runner_fails_running_jobs_and_keeps_queued_ones(repo, jobs, feed, artifacts, make_runner):
    runner = make_runner()
    runner.start()
    hanging = push(repo, artifacts, "hang", name="a")
    waiting = push(repo, artifacts, "ok", name="b")
    runner.submit(hanging.job_id)
    runner.submit(waiting.job_id)
    assert wait_step(jobs, feed, hanging.job_id, "load data").state == "running"  # the worker is up
    runner.stop()
    job = jobs.get(hanging.job_id)
    assert (job.state, job.message) == ("failed", INTERRUPTED)
    assert jobs.get(waiting.job_id).state == "queued"
    # The next start runs what was queued.
    again = make_runner()
    again.start()
    assert wait_finished(jobs, feed, waiting.job_id).state == "done"


def test_start_marks_jobs_left_running_by_a_dead_coordinator_failed(repo, jobs, feed, artifacts, make_runner):
    orphan = push(repo, artifacts, "ok", name="a")
    jobs.claim(orphan.job_id)  # as if the coordinator was killed while this ran
    other_node = push(repo, artifacts, "ok", name="c", node="n2")
    runner = make_runner(node="n1")
    runner.start()
    job = jobs.get(orphan.job_id)
    assert (job.state, job.message) == ("failed", INTERRUPTED)
    assert repo.get("a:1").state == "failed"
    assert jobs.get(other_node.job_id).state == "queued"  # n2's job waits for n2
    # Pushing the same files again builds the version anew under its number.
    again = push(repo, artifacts, "ok", name="a")
    assert (again.version.version, again.queued) == ("1", True)
    runner.submit(again.job_id)
    assert wait_finished(jobs, feed, again.job_id).state == "done"


def test_a_missing_worker_command_fails_the_job(repo, jobs, feed, artifacts, make_runner, tmp_path):
    runner = make_runner(command=[sys.executable, str(tmp_path / "no-such-worker.py")])
    runner.start()
    pushed = push(repo, artifacts)
    runner.submit(pushed.job_id)
    job = wait_finished(jobs, feed, pushed.job_id)
    assert job.state == "failed" and "exited with code 2 without a result" in job.message


def test_missing_input_artifact_fails_the_job(repo, jobs, feed, artifacts, make_runner):
    runner = make_runner()
    runner.start()
    pushed = push(repo, artifacts)
    artifacts.path(pushed.version.data_sha256).unlink()
    runner.submit(pushed.job_id)
    job = wait_finished(jobs, feed, pushed.job_id)
    assert job.state == "failed" and "could not run the optimizer" in job.message and "missing" in job.message


@pytest.mark.parametrize("name, expected", [("model.keras", "model.keras"), ("../../x.h5", "x.h5"), (".hidden", "model.hidden"), ("a b?.npz", "a_b_.npz"), ("", "model")])
def test_safe_filename(name, expected):
    assert safe_filename(name, "model") == expected
