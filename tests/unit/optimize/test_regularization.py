"""L1/L2-regularized fine-tuning: smaller weights on the artifact; as a step before pruning, the target
sparsity on the artifact."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from coordinator.optimize.graph import read_graph


def _mean_abs(path: str) -> float:
    return float(np.concatenate([np.abs(t.dequantized()).ravel() for _, t in read_graph(Path(path).read_bytes()).weights()]).mean())


def test_regularized_fine_tune_alone_and_before_pruning(tabular_files, tmp_path):
    from coordinator.optimize.pipeline import run_pipeline

    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        "techniques:\n"
        "  - {technique: regularization, l1: 0.001, epochs: 3}\n"
        "  - {technique: regularization, l1: 0.0001, prune: 0.7, epochs: 2, prune_epochs: 3}\n"
    )
    result = run_pipeline(*tabular_files, workdir=tmp_path / "w", recipe=recipe)
    fp32 = result.variant("fp32")
    alone, pruned = result.variant("l1_int8"), result.variant("l1_pruned70_int8")
    assert alone.ok and pruned.ok, (alone.error, pruned.error)
    assert _mean_abs(alone.path) < 0.95 * _mean_abs(fp32.path)  # the L1 penalty shrinks the kernels
    assert alone.figures["weight_abs_mean_after"] == pytest.approx(_mean_abs(alone.path))
    assert pruned.figures["sparsity"] == pytest.approx(0.7, abs=0.02)
    for v in (alone, pruned):
        assert v.metric >= fp32.metric - 0.05


def test_with_regularizers_adds_penalties_and_keeps_weights(tabular_files):
    import tf_keras

    from coordinator.optimize.regularization import with_regularizers

    model = tf_keras.models.load_model(tabular_files[0])
    copy = with_regularizers(model, l1=1e-4, l2=0.0)
    assert len(copy.losses) == 3 and not model.losses
    for a, b in zip(copy.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(a, b)
