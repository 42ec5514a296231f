"""Magnitude pruning reaches its target sparsity on the artifact, even in a short fine-tune."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from coordinator.optimize.graph import read_graph


@pytest.mark.parametrize("variant_id,target", [("pruned50_int8", 0.5), ("pruned80_int8", 0.8)])
def test_measured_sparsity_is_near_the_target(digits_run, variant_id, target):
    v = digits_run.variant(variant_id)
    assert v.ok, v.error
    g = read_graph(Path(v.path).read_bytes())
    weights = [t.dequantized() for _, t in g.weights()]
    zeros = sum(int(np.count_nonzero(w == 0)) for w in weights) / sum(w.size for w in weights)
    assert zeros == pytest.approx(target, abs=0.02)
    assert v.figures["sparsity"] == pytest.approx(zeros)
    assert v.figures["target_sparsity"] == target
    assert v.input_dtype == "int8"
    # Zeros compress: the gzip size falls with sparsity while the raw size does not.
    int8 = digits_run.variant("int8")
    assert v.size_bytes == pytest.approx(int8.size_bytes, rel=0.02)
    assert v.gzip_bytes < int8.gzip_bytes * (1 - target / 2)
    assert v.metric >= digits_run.variant("fp32").metric - 0.05


@pytest.mark.parametrize("total_steps", [3, 10, 44, 132, 1000])
def test_schedule_reaches_the_target_before_the_fine_tune_ends(total_steps):
    from coordinator.optimize.pruning import schedule

    s = schedule(0.8, total_steps)
    reached = [step for step in range(total_steps) if bool(s(step)[0]) and float(s(step)[1]) == pytest.approx(0.8)]
    assert reached, "no pruning update at the target sparsity within the fine-tune"
    assert reached[0] < total_steps  # then the last steps fine-tune with the final mask
    # tfmot's own default (frequency=100) would not prune at all in a 44-step fine-tune after step 0.
    assert s.frequency <= max(1, total_steps // 10)
