"""The worker subprocess: JSON lines on stdout, exit code 2 with an error event on bad input."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest


def _run(*args: str, timeout: float = 240) -> tuple[int, list[dict]]:
    proc = subprocess.run([sys.executable, "-m", "coordinator.optimize.worker", *args], capture_output=True, text=True, timeout=timeout)
    events = [json.loads(line) for line in proc.stdout.splitlines()]  # every stdout line must be JSON
    return proc.returncode, events


@pytest.mark.slow
def test_worker_streams_progress_variants_and_the_result(digits_files, tmp_path):
    recipe = tmp_path / "r.toml"
    recipe.write_text('techniques = ["int8"]\n')
    code, events = _run("--model", str(digits_files[0]), "--data", str(digits_files[1]), "--workdir", str(tmp_path / "w"), "--recipe", str(recipe))
    assert code == 0, events
    kinds = [e["event"] for e in events]
    assert kinds[-1] == "result" and kinds.count("variant") == 2 and "progress" in kinds
    progress = [e for e in events if e["event"] == "progress" and e["step"] == "int8"][0]
    assert (progress["done"], progress["total"]) == (1, 2)
    result = events[-1]
    assert [v["id"] for v in result["variants"]] == ["fp32", "int8"]
    assert result["variants"][1]["input_dtype"] == "int8" and result["task"] == "classification"


def test_worker_bad_input_exits_2_with_the_message(digits_files, tmp_path):
    import numpy as np

    np.savez(tmp_path / "bad.npz", x_val=np.zeros((3, 8, 8, 1), np.float32))
    code, events = _run("--model", str(digits_files[0]), "--data", str(tmp_path / "bad.npz"), "--workdir", str(tmp_path / "w"))
    assert code == 2
    assert events[-1]["event"] == "error" and events[-1]["kind"] == "input"
    assert "missing array(s) y_val" in events[-1]["message"]
