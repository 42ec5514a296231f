"""The pipeline around the techniques: failures stay on their row, artifacts are reused, progress flows."""
from __future__ import annotations

import json

import pytest

from coordinator.optimize import recipes
from coordinator.optimize.results import PipelineResult


def explode(ctx, params):
    raise RuntimeError("boom: the technique broke")


def test_a_failing_technique_records_its_error_and_the_run_goes_on(digits_files, tmp_path, monkeypatch):
    from coordinator.optimize.pipeline import run_pipeline

    broken = recipes.Technique("clustering", recipes.ClusteringParams, f"{__name__}:explode", lambda p: "clustered16_int8")
    monkeypatch.setitem(recipes.TECHNIQUES, "clustering", broken)
    recipe = tmp_path / "r.toml"
    recipe.write_text('techniques = ["clustering", "fp16"]\n')
    result = run_pipeline(*digits_files, workdir=tmp_path / "w", recipe=recipe)
    assert [v.id for v in result.variants] == ["fp32", "clustered16_int8", "fp16"]
    failed = result.variant("clustered16_int8")
    assert "boom: the technique broke" in failed.error and failed.sha256 is None
    assert result.variant("fp16").ok


def test_second_run_reuses_cached_artifacts(digits_files, tmp_path):
    from coordinator.optimize.pipeline import run_pipeline

    recipe = tmp_path / "r.toml"
    recipe.write_text('techniques = ["int8", {technique = "pruning", sparsity = 0.5, epochs = 1}]\n')
    events = []
    first = run_pipeline(*digits_files, workdir=tmp_path / "w", recipe=recipe, progress=events.append)
    second = run_pipeline(*digits_files, workdir=tmp_path / "w", recipe=recipe)
    assert first.reused == [] and second.reused == ["fp32", "int8", "pruned50_int8"]
    assert [v.sha256 for v in first.variants] == [v.sha256 for v in second.variants]
    assert len(list((tmp_path / "w" / "artifacts").glob("*.tflite"))) == 3
    # Progress: one step event per recipe step with a rising count, one variant event per row.
    steps = [e for e in events if e["event"] == "progress" and e["step"] in ("fp32", "int8", "pruned50_int8")]
    assert [(e["done"], e["total"]) for e in steps] == [(0, 3), (1, 3), (2, 3)]
    assert [e["id"] for e in events if e["event"] == "variant"] == ["fp32", "int8", "pruned50_int8"]
    assert events[-1] == {"event": "progress", "step": "done", "done": 3, "total": 3}


def test_result_round_trips_through_json(digits_run):
    text = json.dumps(digits_run.to_dict())
    back = PipelineResult.from_dict(json.loads(text))
    assert back == digits_run
    row = back.to_dict()["variants"][0]
    for key in ("id", "technique", "size_bytes", "metric", "latency_p50_ms", "edgetpu", "figures", "input_features"):
        assert key in row
    assert set(row["edgetpu"]) >= {"status", "detail", "mapped_fraction"}


def test_default_recipe_rows(digits_run):
    assert [v.id for v in digits_run.variants] == [s.id for s in recipes.default_steps(tabular=False)]
    assert all(v.ok for v in digits_run.variants), [(v.id, v.error, v.skipped) for v in digits_run.variants]
    assert (digits_run.task, digits_run.metric_name, digits_run.model_flavor) == ("classification", "accuracy", "tf_keras")


def test_no_training_data_skips_training_techniques(digits_files, tmp_path):
    import numpy as np

    from coordinator.optimize.pipeline import run_pipeline
    from tests.unit.optimize.factories import load_npz

    data = load_npz(digits_files[1])
    np.savez(tmp_path / "val.npz", x_val=data["x_val"], y_val=data["y_val"])
    recipe = tmp_path / "r.toml"
    recipe.write_text('techniques = ["int8", "qat"]\n')
    result = run_pipeline(digits_files[0], tmp_path / "val.npz", workdir=tmp_path / "w", recipe=recipe)
    assert result.variant("int8").ok and "no x_train" in result.variant("qat_int8").skipped
    assert any("calibrates on x_val" in n for n in result.notes)


def test_bad_data_is_rejected_before_anything_is_built(digits_files, tmp_path, write_npz):
    from coordinator.optimize.errors import DataError
    from coordinator.optimize.pipeline import run_pipeline
    from tests.unit.optimize.factories import load_npz

    data = load_npz(digits_files[1])
    data["y_val"][0] = 42
    with pytest.raises(DataError, match="labels out of range: 42"):
        run_pipeline(digits_files[0], write_npz(**data), workdir=tmp_path / "w")
    assert not list((tmp_path / "w").glob("artifacts/*.tflite"))
