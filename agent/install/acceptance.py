"""The acceptance test a staged model must pass before it is activated.

Load it with the runtime this device would use (a load failure, e.g. an op the runtime does not know,
raises ModelLoadError), score it on the golden set shipped with the manifest (accuracy or MAE, as
`LoadedModel.evaluate` computes it) against `acceptance.min_metric` / `max_metric`, and time a short
benchmark against `acceptance.max_p95_ms`. On a simulated device the latency is scaled by the
profile's latency factor, as every latency that device reports is.

Golden set file: an .npz with `y` and either `x` (one input) or `x:<input name>` arrays (several).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from agent.runtime.backend import Backend
from agent.runtime.model import LoadedModel
from edgefleet.v1 import manifest_pb2


@dataclass
class AcceptanceResult:
    ok: bool
    reason: str = ""
    figures: dict[str, float] = field(default_factory=dict)


class GoldenSetError(ValueError):
    """The golden set file cannot be used; the message says what is wrong with it."""


def prepare() -> None:
    """Import the runtime an acceptance test needs at agent start: otherwise the first install pays for
    it, and every other installer of the process (the simulator, the bench's driver) waits behind the
    import lock. (The test itself imports neither numpy.random nor numpy.ma: 8 MB an agent would carry for
    life.) A runtime that cannot be imported is reported by the test itself."""
    from agent.runtime.loader import RuntimeUnavailable, runtime

    try:
        runtime()
    except RuntimeUnavailable:
        pass


def read_golden(path: Path) -> tuple[np.ndarray | dict[str, np.ndarray], np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {name: data[name] for name in data.files}
    except (OSError, ValueError) as exc:
        raise GoldenSetError(f"golden set {path.name} is not a readable .npz: {exc}") from None
    if "y" not in arrays:
        raise GoldenSetError(f"golden set {path.name} has no 'y' array (has {', '.join(sorted(arrays)) or 'nothing'})")
    if "x" in arrays:
        return arrays["x"], arrays["y"]
    named = {name[2:]: value for name, value in arrays.items() if name.startswith("x:")}
    if not named:
        raise GoldenSetError(f"golden set {path.name} has no 'x' (or 'x:<input>') arrays")
    return named, arrays["y"]


def run_acceptance(
    model_path: Path,
    golden_path: Path | None,
    manifest: manifest_pb2.ModelManifest,
    backend: Backend,
    *,
    latency_factor: float = 1.0,
    runs: int = 30,
    warmup: int = 3,
) -> AcceptanceResult:
    """Raises ModelLoadError when the runtime refuses the model; otherwise says whether it passed."""
    # Closed below: unmapping the file's pages after the load (~1 ms: /proc/self/maps) would buy nothing.
    model = LoadedModel.load(model_path, backend, drop_pages=False)
    try:
        figures: dict[str, float] = {"load_ms": model.load_ms}
        acc = manifest.acceptance
        failures: list[str] = []
        # Timed before scoring: scoring resizes a dynamic-batch input to the whole golden set, and the
        # budget is for one inference (timing the batch also cost ~100 ms per install here).
        bench = model.benchmark(runs=runs, warmup=warmup)
        figures["p50_ms"] = bench["p50_ms"] * latency_factor
        figures["p95_ms"] = bench["p95_ms"] * latency_factor
        if latency_factor != 1.0:
            figures["latency_factor"] = latency_factor
        if golden_path is not None:
            try:
                x, y = read_golden(golden_path)
                metric = model.evaluate(x, y, manifest.task or "classification")
            except (GoldenSetError, ValueError) as exc:  # InvalidInput is a ValueError too
                return AcceptanceResult(False, f"golden set evaluation failed: {exc}", figures)
            figures["metric"] = metric
            figures["golden_count"] = float(len(y))
            if acc.min_metric and metric < acc.min_metric:
                failures.append(f"metric {metric:.4f} below the floor {acc.min_metric:.4f} on {len(y)} golden samples")
            if acc.max_metric and metric > acc.max_metric:
                failures.append(f"metric {metric:.4f} above the ceiling {acc.max_metric:.4f} on {len(y)} golden samples")
        if acc.max_p95_ms and figures["p95_ms"] > acc.max_p95_ms:
            failures.append(f"p95 latency {figures['p95_ms']:.3f} ms above the budget {acc.max_p95_ms:.3f} ms")
        if failures:
            return AcceptanceResult(False, "acceptance test failed: " + "; ".join(failures), figures)
        return AcceptanceResult(True, "", figures)
    finally:
        model.close()
