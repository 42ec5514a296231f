"""Plot variants: metric against latency and against size, Pareto-optimal variants marked."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Sequence

import matplotlib

matplotlib.use("Agg")  # no display on a server
import matplotlib.pyplot as plt  # noqa: E402

from coordinator.optimize.results import VariantResult  # noqa: E402


def pareto_front(points: Sequence[tuple[float, float]], higher_is_better: bool = True) -> list[int]:
    """Indices of points not dominated by another: lower cost (x) and a better metric (y)."""
    front = []
    for i, (xi, yi) in enumerate(points):
        dominated = False
        for j, (xj, yj) in enumerate(points):
            if i == j:
                continue
            better_y = yj >= yi if higher_is_better else yj <= yi
            strictly = xj < xi or (yj > yi if higher_is_better else yj < yi)
            if xj <= xi and better_y and strictly:
                dominated = True
                break
        if not dominated:
            front.append(i)
    return front


def _rows(variants: Iterable[VariantResult | dict[str, Any]]) -> list[dict[str, Any]]:
    rows = [v.to_dict() if isinstance(v, VariantResult) else dict(v) for v in variants]
    return [r for r in rows if not r.get("error") and not r.get("skipped") and r.get("metric") is not None]


def plot_variants(variants: Iterable[VariantResult | dict[str, Any]], out_png: Path, title: str | None = None) -> Path:
    """Two panels (latency p50, size in bytes) against the metric; Pareto front in red."""
    rows = _rows(variants)
    if not rows:
        raise ValueError("no measured variant to plot (every row failed, was skipped or has no metric)")
    metric_name = rows[0].get("metric_name") or "metric"
    higher = metric_name != "mae"
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
    for ax, key, label in ((axes[0], "latency_p50_ms", "latency p50 (ms, 1 thread)"), (axes[1], "size_bytes", "size (bytes)")):
        pts = [(float(r[key]), float(r["metric"])) for r in rows]
        front = set(pareto_front(pts, higher))
        for i, (r, (x, y)) in enumerate(zip(rows, pts)):
            on = i in front
            ax.scatter([x], [y], s=60 if on else 30, color="tab:red" if on else "tab:blue", zorder=3)
            ax.annotate(r["id"], (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
        ordered = sorted((pts[i] for i in front), key=lambda p: p[0])
        if len(ordered) > 1:
            ax.plot([p[0] for p in ordered], [p[1] for p in ordered], color="tab:red", linewidth=1, label="Pareto front", zorder=2)
            ax.legend(loc="best", fontsize=8)
        ax.set_xlabel(label)
        ax.set_ylabel(metric_name + ("" if higher else " (lower is better)"))
        ax.grid(True, alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=110)
    plt.close(fig)
    return out_png
