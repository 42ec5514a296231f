"""The acceptance test times one inference, not the golden set's batch."""
from __future__ import annotations

from pathlib import Path

from agent.install.acceptance import run_acceptance
from agent.runtime.model import LoadedModel
from agent.runtime.plugins import select_backend
from edgefleet.v1 import manifest_pb2
from tests.unit.install.harness import golden_npz


def test_latency_is_timed_on_one_sample_after_a_dynamic_batch_golden_set(models: Path, tmp_path: Path, monkeypatch) -> None:
    # float32.tflite has a dynamic batch: scoring the golden set resizes its input to all 200 rows.
    golden = tmp_path / "golden.npz"
    golden.write_bytes(golden_npz(models, count=200))
    timed_batches: list[int] = []
    real_invoke = LoadedModel.invoke_raw

    def invoke_raw(self: LoadedModel) -> None:
        timed_batches.append(self._shapes[self._inputs[0].index][0])
        real_invoke(self)

    monkeypatch.setattr(LoadedModel, "invoke_raw", invoke_raw)  # a spy: the real interpreter still runs
    manifest = manifest_pb2.ModelManifest(task="classification")
    manifest.acceptance.min_metric = 0.99
    result = run_acceptance(models / "float32.tflite", golden, manifest, select_backend([]), runs=4, warmup=1)

    assert result.ok, result.reason
    assert result.figures["golden_count"] == 200 and result.figures["metric"] >= 0.99
    assert timed_batches == [1] * 5, f"benchmark invoked on batches {timed_batches}"
    assert result.figures["p95_ms"] > 0
