"""The contract between the pipeline and the technique modules: what a builder gets and returns."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from coordinator.optimize.artifacts import ArtifactStore
from coordinator.optimize.data import Dataset, TaskInfo
from coordinator.optimize.errors import TechniqueSkipped
from coordinator.optimize.models import LoadedModel


@dataclass
class Built:
    """One artifact a technique produced, with what the technique knows about it."""

    tflite: bytes
    figures: dict[str, float] = field(default_factory=dict)
    input_features: list[int] | None = None
    params: dict[str, Any] = field(default_factory=dict)  # extra parameters chosen while building (tuning)
    suffix: str | None = None  # distinguishes several artifacts of one step (tuning's Pareto front)


@dataclass
class BuildContext:
    model: LoadedModel
    data: Dataset
    info: TaskInfo
    representative: np.ndarray  # 100-500 calibration rows drawn from x_train
    workdir: Path
    store: ArtifactStore
    baseline: bytes | None = None  # the fp32 artifact, once built
    spec_path: Path | None = None
    seed: int = 0

    def keras_model(self) -> Any:
        """The tf-keras model, or skip the technique with the reason it cannot run on this upload."""
        reason = self.model.keras_reason
        if reason is not None:
            raise TechniqueSkipped(reason)
        return self.model.keras_model

    def require_train(self) -> None:
        if not self.data.has_train:
            raise TechniqueSkipped("the data has no x_train/y_train: nothing to fine-tune on")

    def conversion_source(self) -> Any:
        if self.model.flavor == "tflite":
            raise TechniqueSkipped(self.model.keras_reason)
        return self.model.keras_model if self.model.keras_model is not None else self.model.saved_model_dir
