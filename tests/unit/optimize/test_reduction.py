"""PCA and RFE on tabular inputs: fewer features for the model (PCA) or for the device to send (RFE)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from coordinator.optimize.graph import read_graph


def test_rfe_variant_reads_fewer_input_features(tabular_run):
    v = tabular_run.variant("rfe_int8")
    assert v.ok, v.error
    features = v.input_features
    assert features == sorted(set(features)) and 0 <= min(features) and max(features) < 20
    assert len(features) <= 10 and v.figures["n_features"] == len(features)
    assert v.input_shape == [1, len(features)]  # the artifact itself takes only those columns
    g = read_graph(Path(v.path).read_bytes())
    assert g.tensors[g.inputs[0]].shape == (1, len(features))
    assert v.metric >= tabular_run.variant("fp32").metric - 0.05


def test_pca_projection_is_baked_into_the_model(tabular_run):
    v = tabular_run.variant("pca_int8")
    assert v.ok, v.error
    k = int(v.figures["n_components"])
    assert 1 <= k < 20 and v.figures["explained_variance"] >= 0.95
    assert v.input_shape == [1, 20] and v.input_features is None  # the device still sends every feature
    first_weight = read_graph(Path(v.path).read_bytes()).weights()[0][1]
    assert first_weight.shape == (k, 20)  # FULLY_CONNECTED weights are [units, inputs]
    assert v.metric >= tabular_run.variant("fp32").metric - 0.08


def test_pca_and_rfe_are_skipped_for_image_inputs(digits_files, tmp_path):
    from coordinator.optimize.pipeline import run_pipeline

    recipe = tmp_path / "recipe.toml"
    recipe.write_text('techniques = ["pca", "rfe"]\n')
    result = run_pipeline(*digits_files, workdir=tmp_path / "w", recipe=recipe)
    for vid in ("pca_int8", "rfe_int8"):
        row = result.variant(vid)
        assert row.skipped and "1-D feature-vector" in row.skipped


def test_rfe_picks_the_informative_features():
    from coordinator.optimize.reduction import select_features

    rng = np.random.default_rng(0)
    x = rng.normal(size=(600, 12))
    y = (x[:, 3] + 0.8 * x[:, 7] - 0.6 * x[:, 10] > 0).astype(np.int64)  # only columns 3, 7, 10 matter
    assert select_features(x, y, "classification", 3) == [3, 7, 10]
    target = 2 * x[:, 1] - x[:, 5] + rng.normal(scale=0.1, size=600)
    assert select_features(x, target.reshape(-1, 1), "regression", 2) == [1, 5]
