"""agent.install.acceptance.prepare: the installer imports the acceptance test's runtime at start (resume),
so the first install does not pay for the import; and the acceptance test (load, timing, golden-set score)
imports neither numpy.random nor numpy.ma, which an agent would otherwise carry for life (~8 MB resident).
In a fresh process each: these modules are lazy."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.unit.install import harness

REPO = Path(__file__).resolve().parents[3]

RESUME = """
import json, sys, tempfile
from pathlib import Path
from agent.install.machine import Installer
from tests.unit.install import harness

LAZY = ("ai_edge_litert.interpreter",)
before = [m for m in LAZY if m in sys.modules]
installer = Installer(Path(tempfile.mkdtemp()), harness.identity(harness.Signer()), lambda *a: None, lambda e: None)
middle = [m for m in LAZY if m in sys.modules]
installer.resume()
after = [m for m in LAZY if m in sys.modules]
print(json.dumps([before, middle, after]))
"""

ACCEPTANCE = """
import io, json, sys
import numpy as np
from agent.runtime.model import LoadedModel
from agent.runtime.plugins import select_backend

model = LoadedModel.load(sys.argv[1], select_backend(()), drop_pages=False)
figures = model.benchmark(runs=20, warmup=2)
with np.load(io.BytesIO(open(sys.argv[2], "rb").read())) as z:
    metric = model.evaluate(z["x"], z["y"], "classification")
print(json.dumps({"heavy": [m for m in ("numpy.random", "numpy.ma") if m in sys.modules],
                  "p50": figures["p50_ms"], "p95": figures["p95_ms"], "metric": metric}))
"""


def _run(script: str, *args: str) -> list | dict:
    result = subprocess.run([sys.executable, "-c", script, *args], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_resume_imports_the_runtime() -> None:
    before, middle, after = _run(RESUME)
    assert before == [] and middle == [], "imported before resume(): the test would prove nothing"
    assert after == ["ai_edge_litert.interpreter"]


def test_an_acceptance_test_leaves_numpy_random_and_ma_unimported(models: Path, tmp_path: Path) -> None:
    golden = tmp_path / "golden.npz"
    golden.write_bytes(harness.golden_npz(models))
    out = _run(ACCEPTANCE, str(models / "float32.tflite"), str(golden))
    assert out["heavy"] == []
    assert 0 < out["p50"] <= out["p95"]
    assert out["metric"] == 1.0  # the reference model labels its own golden set
