"""Recipes: default and full contents, recipe files, and errors naming the bad technique or parameter."""
from __future__ import annotations

import pytest

from coordinator.optimize.errors import RecipeError
from coordinator.optimize.recipes import load_recipe


def _ids(recipe, tabular=False):
    return [s.id for s in load_recipe(recipe, tabular=tabular)[1]]


def test_default_recipe():
    assert _ids("default") == ["fp32", "fp16", "dynamic", "int8", "pruned50_int8", "pruned80_int8", "clustered16_int8", "qat_int8"]
    assert _ids("default", tabular=True)[-2:] == ["pca_int8", "rfe_int8"]


def test_full_recipe_adds_structured_regularization_and_tuning():
    extra = set(_ids("full", tabular=True)) - set(_ids("default", tabular=True))
    assert extra == {"int16x8", "structured50_int8", "l2_int8", "l1_pruned80_int8", "tuned"}


def test_recipe_file_toml_and_yaml(tmp_path):
    toml = tmp_path / "r.toml"
    toml.write_text('[[techniques]]\ntechnique = "pruning"\nsparsity = 0.9\n[[techniques]]\ntechnique = "int8"\nid = "mine"\n')
    assert _ids(toml) == ["fp32", "pruned90_int8", "mine"]  # the fp32 reference row is always first
    yaml_file = tmp_path / "r.yaml"
    yaml_file.write_text("techniques:\n  - fp16\n  - {technique: clustering, clusters: 8}\n  - fp32\n  - fp16\n")
    assert _ids(yaml_file) == ["fp32", "fp16", "clustered8_int8", "fp16_2"]


@pytest.mark.parametrize("text,message", [
    ('techniques = ["int8", "distillation"]\n', r"unknown technique 'distillation' \(step 2 of r.toml\)"),
    ('techniques = ["edgetpu"]\n', "runs by itself on every int8 variant"),
    ('[[techniques]]\ntechnique = "pruning"\nsparsity = 1.5\n', "sparsity: Input should be less than 1"),
    ('[[techniques]]\ntechnique = "int8"\nbits = 4\n', "bits: Extra inputs are not permitted"),
    ('[[techniques]]\ntechnique = "regularization"\n', "set l1 and/or l2 above 0"),
    ('techniques = []\n', "non-empty 'techniques' list"),
    ('techniques = [\n', "does not parse"),
])
def test_bad_recipe_files(tmp_path, text, message):
    path = tmp_path / "r.toml"
    path.write_text(text)
    with pytest.raises(RecipeError, match=message):
        load_recipe(path, tabular=False)


def test_unknown_recipe_name():
    with pytest.raises(RecipeError, match="unknown recipe 'fast'"):
        load_recipe("fast", tabular=False)
