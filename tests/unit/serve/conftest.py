from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.unit.serve.models import built_models


@pytest.fixture(scope="session")
def models(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return built_models(request, tmp_path_factory)


@pytest.fixture(scope="session")
def reference(models: Path) -> tuple[np.ndarray, np.ndarray]:
    data = np.load(models / "reference.npz")
    return data["w"], data["b"]
