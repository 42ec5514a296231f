"""Hyperparameter tuning: Pareto-optimal trials that meet the constraints become variants."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from coordinator.optimize.errors import RecipeError

SPEC = """
family = "mlp"
widths = [4, 8, 16]
depth = [1, 2]
dropout = [0.0, 0.1]
l2 = [1e-6, 1e-4]
learning_rate = [3e-3, 1e-2]
epochs = 3
keep = 2
[budget]
trials = 4
seconds = 120
[constraints]
min_metric = 0.5
max_size_bytes = 60000
"""


@pytest.mark.slow
def test_tuned_variants_meet_the_constraints_and_are_pareto_optimal(tabular_files, tmp_path):
    from coordinator.optimize.pipeline import run_pipeline

    spec = tmp_path / "space.toml"
    spec.write_text(SPEC)
    recipe = tmp_path / "recipe.toml"
    recipe.write_text('techniques = ["tuning"]\n')
    result = run_pipeline(*tabular_files, workdir=tmp_path / "w", recipe=recipe, spec_path=spec)
    tuned = [v for v in result.variants if v.technique == "tuning"]
    assert 1 <= len(tuned) <= 2 and all(v.ok for v in tuned), [v.error for v in tuned]
    for v in tuned:
        assert v.size_bytes <= 60000 and v.input_dtype == "int8"
        hp = v.params["hyperparameters"]
        assert 1 <= hp["depth"] <= 2 and all(hp[f"width_{i}"] in (4, 8, 16) for i in range(hp["depth"]))
        assert 3e-3 <= hp["learning_rate"] <= 1e-2
        assert v.figures["holdout_metric"] >= 0.5 and v.figures["trials_done"] <= 4
    assert [v.id for v in tuned] == [f"tuned_{i}" for i in range(1, len(tuned) + 1)]


@pytest.mark.slow
def test_unmeetable_constraints_give_an_error_row(tabular_files, tmp_path):
    from coordinator.optimize.pipeline import run_pipeline

    spec = tmp_path / "space.yaml"
    spec.write_text("widths: [4]\ndepth: [1, 1]\nepochs: 1\nbudget: {trials: 2}\nconstraints: {max_size_bytes: 100}\n")
    recipe = tmp_path / "recipe.toml"
    recipe.write_text('techniques = ["tuning"]\n')
    result = run_pipeline(*tabular_files, workdir=tmp_path / "w", recipe=recipe, spec_path=spec)
    row = result.variant("tuned")
    assert row.error and "none of 2 trial(s) met the constraints" in row.error
    assert result.variant("fp32").ok  # the rest of the run is unaffected


def test_spec_with_an_unknown_key_is_rejected_before_anything_runs(tmp_path):
    from coordinator.optimize.tuning import load_spec

    spec = tmp_path / "space.toml"
    spec.write_text('widths = [8]\nlayers = 3\n')
    with pytest.raises(RecipeError, match="layers: Extra inputs are not permitted"):
        load_spec(spec)
    spec.write_text('depth = [3, 1]\n')
    with pytest.raises(RecipeError, match="reversed"):
        load_spec(spec)


def test_pareto_keeps_only_undominated_trials():
    from coordinator.optimize.tuning import pareto

    trials = [SimpleNamespace(values=v) for v in [(0.9, 1.0, 100), (0.8, 0.5, 100), (0.8, 1.0, 100), (0.95, 2.0, 50)]]
    assert pareto(trials, higher_is_better=True) == [trials[0], trials[1], trials[3]]
    assert pareto(trials, higher_is_better=False) == [trials[1], trials[3]]
