"""Model versions, variants and jobs in the store (SQLite and PostgreSQL through the `store` fixture)."""
from __future__ import annotations

import pytest

from coordinator.models.jobs import INTERRUPTED
from coordinator.models.records import BadRef, JobNotFound, ModelNotFound, VariantNotFound, VersionConflict, parse_ref
from coordinator.models.repository import next_integer_version
from tests.unit.models.conftest import stored_inputs


def variant(vid: str, technique: str, sha: str | None, metric: float | None = 0.9, **extra) -> dict:
    return {
        "id": vid, "technique": technique, "sha256": sha, "path": "/worker/only", "size_bytes": 100 if sha else None,
        "gzip_bytes": 60 if sha else None, "metric": metric if sha else None, "latency_p50_ms": 0.01 if sha else None,
        "latency_p95_ms": 0.02 if sha else None, "peak_memory_bytes": 2048 if sha else None,
        "ops": ["FULLY_CONNECTED"], "input_dtype": "int8", "output_dtype": "int8",
        "input_quant": {"scale": 0.25, "zero_point": -1}, "input_shape": [1, 20], "output_shape": [1, 3],
        "figures": {"macs": 640.0, "sparsity": 0.8}, "params": {"sparsity": 0.8}, "input_features": [0, 3, 7],
        "edgetpu": {"status": "compatible", "detail": "compatible, not compiled: compiler not installed", "mapped_fraction": 1.0, "compiled_sha256": None},
        "error": None, "skipped": None, **extra,
    }


def result(*variants: dict, task: str = "classification") -> dict:
    return {
        "model_sha256": "m", "data_sha256": "d", "source_format": "keras", "model_flavor": "tf_keras", "task": task,
        "metric_name": "accuracy", "recipe": "default", "baseline_id": "fp32", "input_shape": [None, 20],
        "n_outputs": 3, "variants": list(variants), "notes": ["no training data"],
    }


def test_push_numbers_versions_and_is_idempotent_for_the_same_inputs(repo, artifacts):
    a = repo.push("digits", None, stored_inputs(artifacts, model=b"A"), node="n1")
    assert (a.version.version, a.existing, a.queued, a.version.state) == ("1", False, True, "optimizing")
    b = repo.push("digits", None, stored_inputs(artifacts, model=b"B"), node="n1")
    assert b.version.version == "2"
    again = repo.push("digits", None, stored_inputs(artifacts, model=b"A"), node="n1")
    assert (again.version.version, again.existing, again.queued, again.job_id) == ("1", True, False, a.job_id)
    # The same bytes under an explicit version still find the version that holds them.
    assert repo.push("digits", "7", stored_inputs(artifacts, model=b"B"), node="n1").version.version == "2"
    # Another model name numbers from 1 on its own.
    assert repo.push("other", None, stored_inputs(artifacts, model=b"A"), node="n1").version.version == "1"


def test_inputs_that_change_the_build_change_the_digest(artifacts):
    base = stored_inputs(artifacts)
    assert base.digest == stored_inputs(artifacts, data_filename="renamed.npz").digest  # names do not count...
    assert base.digest != stored_inputs(artifacts, model_filename="digits.h5").digest  # ...but the format does
    for change in ({"task": "regression"}, {"recipe": "full"}, {"spec_sha256": "1" * 64}, {"data": b"other"}):
        assert stored_inputs(artifacts, **change).digest != base.digest, change


def test_explicit_version_with_other_bytes_is_a_conflict_and_the_old_one_stays(repo, jobs, artifacts):
    first = repo.push("digits", "1.0", stored_inputs(artifacts, model=b"A"), node="n1")
    jobs.claim(first.job_id)
    jobs.finish(first.job_id, result(variant("int8", "int8", "a" * 64)))
    with pytest.raises(VersionConflict, match=r"digits:1.0 already exists with different files.*immutable"):
        repo.push("digits", "1.0", stored_inputs(artifacts, model=b"B"), node="n1")
    kept = repo.get("digits:1.0")
    assert (kept.state, kept.model_sha256, [v.id for v in kept.variants]) == ("ready", first.version.model_sha256, ["int8"])
    assert [v.version for v in repo.list_versions("digits")] == ["1.0"]
    # Next integer skips non-numeric versions.
    assert repo.push("digits", None, stored_inputs(artifacts, model=b"C"), node="n1").version.version == "1"


def test_a_failed_version_is_built_again_under_its_number(repo, jobs, artifacts):
    first = repo.push("digits", None, stored_inputs(artifacts), node="n1")
    jobs.claim(first.job_id)
    jobs.add_variant(first.job_id, variant("fp32", "fp32", "f" * 64))
    assert jobs.fail(first.job_id, "digits.keras is not a Keras model")
    failed = repo.get("digits:1")
    assert (failed.state, failed.error) == ("failed", "digits.keras is not a Keras model")
    again = repo.push("digits", None, stored_inputs(artifacts), node="n1")
    assert (again.version.version, again.existing, again.queued) == ("1", False, True)
    assert again.job_id != first.job_id
    fresh = repo.get("digits:1")
    assert (fresh.state, fresh.error, fresh.variants, fresh.job_id) == ("optimizing", "", (), again.job_id)
    assert jobs.get(first.job_id).state == "failed"  # the old job's record stays as it was


def test_job_lifecycle_and_the_read_api(repo, jobs, artifacts):
    pushed = repo.push("tab", None, stored_inputs(artifacts, task="classification"), node="n1")
    claimed = jobs.claim(pushed.job_id)
    assert claimed is not None and claimed.inputs.task == "classification" and claimed.inputs.model_filename == "digits.keras"
    assert jobs.claim(pushed.job_id) is None  # claimed once only
    jobs.progress(pushed.job_id, "int8", 1, 3)
    job = jobs.get(pushed.job_id)
    assert (job.state, job.step, job.done, job.total, job.ref) == ("running", "int8", 1, 3, "tab:1")
    jobs.add_variant(pushed.job_id, variant("fp32", "fp32", "1" * 64))
    jobs.add_variant(pushed.job_id, variant("stale", "int8", "2" * 64))
    job, rows = jobs.snapshot(pushed.job_id)
    assert [r.id for r in rows] == ["fp32", "stale"]
    with pytest.raises(ModelNotFound, match="has no ready version"):
        repo.get_version("tab", ready_only=True)  # optimizing: not for rollouts yet
    with pytest.raises(ModelNotFound, match="not ready"):
        repo.get_variant("tab:1", "fp32")

    skipped = variant("pca_int8", "pca", None, skipped="pca applies to 1-D feature-vector inputs")
    failed = variant("qat_int8", "qat", None, error="ValueError: boom")
    jobs.finish(pushed.job_id, result(variant("fp32", "fp32", "1" * 64, metric=0.97), variant("pruned80_int8", "pruning", "3" * 64), skipped, failed))
    job = jobs.get(pushed.job_id)
    assert (job.state, job.message) == ("done", "tab:1 ready: 2 of 4 variant(s) built")

    v = repo.get_version("tab", ready_only=True)
    assert (v.ref, v.state, v.task, v.metric_name, v.source_format, v.baseline_id, v.notes, v.n_outputs) == (
        "tab:1", "ready", "classification", "accuracy", "keras", "fp32", ["no training data"], 3)
    # The result is authoritative: a row the worker reported but the result dropped is gone; order is the result's.
    assert [x.id for x in v.variants] == ["fp32", "pruned80_int8", "pca_int8", "qat_int8"]
    fp32 = repo.get_variant("tab:1", "fp32")
    assert (fp32.metric, fp32.size_bytes, fp32.gzip_bytes, fp32.latency_p95_ms, fp32.peak_memory_bytes) == (0.97, 100, 60, 0.02, 2048)
    assert (fp32.edgetpu.status, fp32.edgetpu.detail) == ("compatible", "compatible, not compiled: compiler not installed")
    assert (fp32.ops, fp32.figures, fp32.input_features, fp32.input_quant) == (
        ["FULLY_CONNECTED"], {"macs": 640.0, "sparsity": 0.8}, [0, 3, 7], {"scale": 0.25, "zero_point": -1})
    assert "path" not in fp32.detail and fp32.ok
    assert not v.variant("pca_int8").ok and v.variant("pca_int8").skipped.startswith("pca applies")
    assert v.variant("qat_int8").error == "ValueError: boom"
    with pytest.raises(VariantNotFound, match="tab:1 has no variant 'nope'"):
        repo.get_variant("tab", "nope")
    # A finished job keeps its verdict.
    assert not jobs.fail(pushed.job_id, "too late")
    assert repo.get("tab:1").state == "ready"


def test_latest_versions_and_not_found_messages(repo, jobs, artifacts):
    one = repo.push("m", None, stored_inputs(artifacts, model=b"1"), node="n1")
    jobs.claim(one.job_id)
    jobs.finish(one.job_id, result(variant("fp32", "fp32", "1" * 64)))
    repo.push("m", None, stored_inputs(artifacts, model=b"2"), node="n1")
    assert repo.get("m").version == "2"  # latest, any state
    assert repo.get("m", ready_only=True).version == "1"
    assert [v.version for v in repo.list_versions()] == ["1", "2"]
    with pytest.raises(ModelNotFound, match="no model named 'x'"):
        repo.get("x")
    with pytest.raises(ModelNotFound, match=r"model 'm' has no version '9' \(versions: 1, 2\)"):
        repo.get("m:9")
    with pytest.raises(JobNotFound):
        jobs.get("nope")


def test_artifact_path_of_a_variant(repo, artifacts):
    sha = artifacts.put_bytes(b"tflite bytes")
    assert repo.artifact_path(sha).read_bytes() == b"tflite bytes"


def test_recover_fails_running_jobs_of_this_node_and_returns_queued_ones(repo, jobs, artifacts):
    running = repo.push("a", None, stored_inputs(artifacts, model=b"1"), node="n1")
    queued = repo.push("b", None, stored_inputs(artifacts, model=b"2"), node="n1")
    elsewhere = repo.push("c", None, stored_inputs(artifacts, model=b"3"), node="n2")
    jobs.claim(running.job_id)
    jobs.claim(elsewhere.job_id)
    failed, still_queued = jobs.recover("n1")
    assert (failed, still_queued) == ([running.job_id], [queued.job_id])
    assert jobs.get(running.job_id).message == INTERRUPTED
    assert repo.get("a:1").state == "failed" and "interrupted" in repo.get("a:1").error
    assert jobs.get(elsewhere.job_id).state == "running"  # another coordinator's job is not ours to judge


@pytest.mark.parametrize("ref, expected", [("digits", ("digits", None)), ("digits:3", ("digits", "3")), ("a.b-c:1.0-rc1", ("a.b-c", "1.0-rc1"))])
def test_parse_ref(ref, expected):
    assert parse_ref(ref) == expected


@pytest.mark.parametrize("ref", ["", "digits:", ":3", "bad name", "digits:a/b", "-x"])
def test_parse_ref_rejects(ref):
    with pytest.raises(BadRef):
        parse_ref(ref)


def test_next_integer_version():
    assert next_integer_version([]) == "1"
    assert next_integer_version(["1", "2", "10", "2.0", "beta"]) == "11"


def test_non_finite_figures_are_stored_as_missing(repo, jobs, artifacts):
    pushed = repo.push("nan", None, stored_inputs(artifacts), node="n1")
    jobs.claim(pushed.job_id)
    broken = variant("fp32", "fp32", "1" * 64, metric=float("nan"), figures={"macs": float("inf"), "sparsity": 0.5})
    jobs.finish(pushed.job_id, result(broken))  # PostgreSQL's JSON would refuse NaN
    v = repo.get_variant("nan:1", "fp32")
    assert v.metric is None and v.figures == {"macs": None, "sparsity": 0.5}
