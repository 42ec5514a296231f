"""The variant plot: metric against latency and size, Pareto front marked."""
from __future__ import annotations

import pytest

from coordinator.optimize.plot import pareto_front, plot_variants


def test_pareto_front_for_higher_and_lower_is_better():
    points = [(1.0, 0.90), (2.0, 0.95), (2.0, 0.93), (0.5, 0.80), (3.0, 0.94)]
    assert pareto_front(points, higher_is_better=True) == [0, 1, 3]
    assert pareto_front(points, higher_is_better=False) == [3]


def test_plot_writes_a_png(digits_run, tmp_path):
    out = plot_variants(digits_run.variants, tmp_path / "plots" / "digits.png", title="digits")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 10_000
    out = plot_variants([v.to_dict() for v in digits_run.variants], tmp_path / "dicts.png")
    assert out.exists()


def test_plot_needs_a_measured_variant(tmp_path):
    with pytest.raises(ValueError, match="no measured variant"):
        plot_variants([{"id": "x", "error": "failed", "metric": None}], tmp_path / "x.png")
