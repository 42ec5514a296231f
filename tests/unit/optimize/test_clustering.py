"""Weight clustering: each kernel's output channel holds at most `clusters` distinct values."""
from __future__ import annotations

from pathlib import Path

from coordinator.optimize.graph import read_graph


def _max_unique(path: str) -> int:
    g = read_graph(Path(path).read_bytes())
    return max(n for op, t in g.weights() for n in g.unique_weights_per_channel(op, t))


def test_cluster_count_per_kernel_channel_is_at_most_the_clusters(digits_run):
    v = digits_run.variant("clustered16_int8")
    assert v.ok, v.error
    assert v.input_dtype == "int8"
    assert _max_unique(v.path) <= 16
    assert v.figures["clusters"] == 16 and v.figures["max_unique_per_channel"] <= 16
    # Without clustering the same layers hold many more values per channel, so the check can fail.
    assert _max_unique(digits_run.variant("int8").path) > 16
    assert v.gzip_bytes < digits_run.variant("int8").gzip_bytes
    assert v.metric >= digits_run.variant("fp32").metric - 0.05
