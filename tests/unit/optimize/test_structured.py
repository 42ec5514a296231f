"""Structured pruning: whole units and filters go, the rebuilt model has fewer MACs on the artifact."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from coordinator.optimize.graph import read_graph
from tests.unit.optimize.factories import load_npz


def test_removing_dead_units_keeps_the_function(digits_files):
    """Zero half the filters and half the hidden units: shrinking by half must remove exactly those and
    leave the outputs unchanged, which checks the channel bookkeeping through Flatten."""
    import tf_keras

    from coordinator.optimize.structured import shrink

    model = tf_keras.models.load_model(digits_files[0])
    conv, dense = model.layers[0], model.layers[2]
    k, b = conv.get_weights()
    k[..., ::2] = 0
    b[::2] = 0
    conv.set_weights([k, b])
    k, b = dense.get_weights()
    k[:, 1::2] = 0
    b[1::2] = 0
    dense.set_weights([k, b])
    smaller, figures = shrink(model, 0.5)
    assert [l.filters for l in smaller.layers if isinstance(l, tf_keras.layers.Conv2D)] == [8]
    assert [l.units for l in smaller.layers if isinstance(l, tf_keras.layers.Dense)] == [32, 10]
    assert figures == {"units_before": 80.0, "units_after": 40.0}
    x = load_npz(digits_files[1])["x_val"][:64]
    np.testing.assert_allclose(smaller.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-4, atol=1e-6)


def test_structured_variant_has_fewer_macs_on_the_artifact(digits_files, tmp_path):
    from coordinator.optimize.pipeline import run_pipeline

    recipe = tmp_path / "recipe.toml"
    recipe.write_text('[[techniques]]\ntechnique = "structured_pruning"\nratio = 0.5\n')
    result = run_pipeline(*digits_files, workdir=tmp_path / "w", recipe=recipe)
    v, fp32 = result.variant("structured50_int8"), result.variant("fp32")
    assert v.ok, v.error
    before = read_graph(Path(fp32.path).read_bytes()).macs()
    after = read_graph(Path(v.path).read_bytes()).macs()
    assert after <= 0.6 * before
    assert (v.figures["macs_before"], v.figures["macs_after"]) == (before, after)
    assert v.figures["macs_reduction"] == pytest.approx(1 - after / before)
    shapes = [t.shape for _, t in read_graph(Path(v.path).read_bytes()).weights()]
    assert shapes[0][0] == 8 and shapes[1][0] == 32  # 16 -> 8 filters, 64 -> 32 units
    assert v.metric >= fp32.metric - 0.05


def test_branching_models_are_skipped_with_the_reason(tmp_path, write_npz):
    import tf_keras

    from coordinator.optimize.pipeline import run_pipeline

    inp = tf_keras.Input((6,))
    a = tf_keras.layers.Dense(8, activation="relu")(inp)
    b = tf_keras.layers.Dense(8, activation="relu")(inp)
    out = tf_keras.layers.Dense(2, activation="softmax")(tf_keras.layers.Add()([a, b]))
    tf_keras.Model(inp, out).save(tmp_path / "branch.keras")
    rng = np.random.default_rng(0)
    data = write_npz(x_train=rng.random((64, 6), np.float32), y_train=rng.integers(0, 2, 64),
                     x_val=rng.random((32, 6), np.float32), y_val=rng.integers(0, 2, 32))
    recipe = tmp_path / "r.yaml"
    recipe.write_text("techniques: [structured_pruning]\n")
    row = run_pipeline(tmp_path / "branch.keras", data, workdir=tmp_path / "w", recipe=recipe).variant("structured50_int8")
    assert row.skipped and "chains of layers" in row.skipped and row.sha256 is None
