"""The tiny .tflite models of tests/unit/runtime_models.py, built once in a subprocess (no TensorFlow in
the test process) and cached under the pytest cache with the same key test_runtime.py uses."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

BUILDER = Path(__file__).resolve().parents[1] / "runtime_models.py"


def built_models(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    digest = hashlib.sha256(BUILDER.read_bytes()).hexdigest()[:16]
    cache = getattr(request.config, "cache", None)  # absent under -p no:cacheprovider
    root = Path(cache.mkdir("edgefleet-runtime-models")) if cache is not None else tmp_path_factory.mktemp("models")
    target = root / digest
    if (target / "reference.npz").is_file():
        return target
    staging = root / f"{digest}.tmp-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    result = subprocess.run([sys.executable, str(BUILDER), str(staging)], capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, f"building test models failed:\n{result.stderr[-4000:]}"
    try:
        staging.rename(target)  # atomic: a parallel run sees all models or none
    except OSError:
        shutil.rmtree(staging, ignore_errors=True)  # another run got there first
    return target
