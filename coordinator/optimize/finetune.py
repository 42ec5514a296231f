"""Short fine-tunes shared by the techniques: cloning, loss choice, fitting."""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import tf_keras

from coordinator.optimize.data import Dataset, TaskInfo
from coordinator.optimize.errors import TechniqueSkipped

BATCH_SIZE = 32


def clone(model: Any) -> Any:
    """A copy with the same weights: tfmot wrappers train the layers they wrap, and the upload must stay intact."""
    try:
        copy = tf_keras.models.clone_model(model)
    except Exception as exc:  # subclassed models cannot be cloned from config
        raise TechniqueSkipped(f"the model cannot be cloned for fine-tuning ({exc})") from exc
    copy.set_weights(model.get_weights())
    return copy


def outputs_probabilities(model: Any, x: np.ndarray) -> bool:
    """Whether the model ends in softmax/sigmoid (probabilities) rather than logits: decides the loss."""
    out = np.asarray(model(np.asarray(x[:64], dtype=np.float32), training=False)).reshape(min(64, len(x)), -1)
    in_range = bool(np.all(out >= 0) and np.all(out <= 1))
    if out.shape[1] == 1:
        return in_range
    return in_range and bool(np.allclose(out.sum(axis=1), 1.0, atol=1e-3))


def loss_for(info: TaskInfo, probabilities: bool) -> Any:
    if info.task == "regression":
        return tf_keras.losses.MeanSquaredError()
    if info.n_outputs == 1:
        return tf_keras.losses.BinaryCrossentropy(from_logits=not probabilities)
    return tf_keras.losses.SparseCategoricalCrossentropy(from_logits=not probabilities)


def compile_for(model: Any, info: TaskInfo, learning_rate: float, probabilities: bool) -> None:
    model.compile(optimizer=tf_keras.optimizers.Adam(learning_rate), loss=loss_for(info, probabilities))


def train_arrays(ds: Dataset, features: Sequence[int] | None = None) -> tuple[np.ndarray, np.ndarray]:
    if ds.x_train is None:
        raise TechniqueSkipped("the data has no x_train/y_train: nothing to fine-tune on")
    x = np.asarray(ds.x_train, dtype=np.float32)
    if features is not None:
        x = x[:, list(features)]
    y = np.asarray(ds.y_train)
    return x, y.astype(np.float32) if y.dtype.kind == "f" else y


def fit(model: Any, x: np.ndarray, y: np.ndarray, *, epochs: int, seed: int = 0, callbacks: Sequence[Any] = ()) -> None:
    tf_keras.utils.set_random_seed(seed)
    model.fit(x, y, epochs=epochs, batch_size=BATCH_SIZE, verbose=0, shuffle=True, callbacks=list(callbacks))


def steps_per_epoch(n_rows: int) -> int:
    return max(1, -(-n_rows // BATCH_SIZE))
