"""Small real models trained in seconds, cached in the pytest cache between runs, and pipeline runs on them."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

import coordinator.optimize  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow loads)
from tests.unit.optimize.factories import digits_arrays, digits_cnn, tabular_arrays, tabular_mlp, train

# Bump when the factories below change, so a stale cached model is not reused.
MODELS_VERSION = "v1"


def _cache_dir(config: pytest.Config) -> Path:
    name = f"edgefleet-optimize-models-{MODELS_VERSION}"
    if getattr(config, "cache", None) is None:  # -p no:cacheprovider: train into a temporary folder
        return Path(config._tmp_path_factory.mktemp(name))  # type: ignore[attr-defined]
    return Path(config.cache.mkdir(name))


def _save_atomic(model, path: Path) -> None:
    tmp = path.with_name(f"tmp-{os.getpid()}-{path.name}")
    model.save(tmp)
    os.replace(tmp, path)


def _files(config: pytest.Config, name: str, arrays_fn, model_fn, epochs: int) -> tuple[Path, Path]:
    root = _cache_dir(config)
    model_path, data_path = root / f"{name}.keras", root / f"{name}.npz"
    if not data_path.exists():
        arrays = arrays_fn()
        tmp = root / f"tmp-{os.getpid()}-{name}.npz"
        np.savez(tmp, **arrays)
        os.replace(tmp, data_path)
    if not model_path.exists():
        with np.load(data_path) as npz:
            arrays = {k: npz[k] for k in npz.files}
        _save_atomic(train(model_fn(), arrays, epochs), model_path)
    return model_path, data_path


@pytest.fixture(scope="session")
def digits_files(pytestconfig: pytest.Config) -> tuple[Path, Path]:
    """(digits.keras, digits.npz): Conv16 + Dense64 on sklearn's 8x8 digits, about 97 % accuracy."""
    return _files(pytestconfig, "digits", digits_arrays, digits_cnn, epochs=12)


@pytest.fixture(scope="session")
def tabular_files(pytestconfig: pytest.Config) -> tuple[Path, Path]:
    """(tabular.keras, tabular.npz): a 20-feature, 3-class MLP."""
    return _files(pytestconfig, "tabular", tabular_arrays, tabular_mlp, epochs=15)


@pytest.fixture(scope="session")
def digits_run(digits_files, tmp_path_factory):
    """The default recipe on the digits CNN (fp32, fp16, dynamic, int8, pruned 50/80, clustered, QAT)."""
    from coordinator.optimize.pipeline import run_pipeline

    model, data = digits_files
    return run_pipeline(model, data, workdir=tmp_path_factory.mktemp("digits-run"))


@pytest.fixture(scope="session")
def tabular_run(tabular_files, tmp_path_factory):
    """A recipe on the tabular MLP: fp32, int8, PCA and RFE."""
    from coordinator.optimize.pipeline import run_pipeline

    model, data = tabular_files
    recipe = tmp_path_factory.mktemp("tabular-recipe") / "recipe.toml"
    recipe.write_text('techniques = ["fp32", "int8", "pca", "rfe"]\n')
    return run_pipeline(model, data, workdir=tmp_path_factory.mktemp("tabular-run"), recipe=recipe)


@pytest.fixture
def write_npz(tmp_path):
    """Write arrays to an .npz in tmp_path and return its path."""
    def write(name: str = "data.npz", **arrays: np.ndarray) -> Path:
        path = tmp_path / name
        np.savez(path, **arrays)
        return path

    return write
