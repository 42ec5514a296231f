"""Model and data factories for the optimizer tests (also used by their conftest)."""
from __future__ import annotations

from pathlib import Path

import numpy as np


def digits_arrays() -> dict[str, np.ndarray]:
    from sklearn.datasets import load_digits

    d = load_digits()
    x = (d.images / 16.0).astype(np.float32)[..., None]
    y = d.target.astype(np.int64)
    idx = np.random.default_rng(0).permutation(len(x))
    tr, va = idx[:1400], idx[1400:]
    return {"x_train": x[tr], "y_train": y[tr], "x_val": x[va], "y_val": y[va]}


def tabular_arrays() -> dict[str, np.ndarray]:
    from sklearn.datasets import make_classification

    # 20 features of which 6 carry the signal: what RFE should find.
    x, y = make_classification(n_samples=1500, n_features=20, n_informative=6, n_redundant=2, n_classes=3,
                               n_clusters_per_class=1, class_sep=1.5, random_state=0)
    x = ((x - x.mean(0)) / x.std(0)).astype(np.float32)
    return {"x_train": x[:1100], "y_train": y[:1100], "x_val": x[1100:], "y_val": y[1100:]}


def digits_cnn():
    import tf_keras

    L = tf_keras.layers
    return tf_keras.Sequential([
        tf_keras.Input((8, 8, 1)), L.Conv2D(16, 3, activation="relu"), L.Flatten(),
        L.Dense(64, activation="relu"), L.Dense(10, activation="softmax"),
    ])


def tabular_mlp(n_features: int = 20, n_classes: int = 3):
    import tf_keras

    L = tf_keras.layers
    return tf_keras.Sequential([
        tf_keras.Input((n_features,)), L.Dense(64, activation="relu"), L.Dense(32, activation="relu"),
        L.Dense(n_classes, activation="softmax"),
    ])


def train(model, arrays: dict[str, np.ndarray], epochs: int, loss: str = "sparse_categorical_crossentropy"):
    import tf_keras

    tf_keras.utils.set_random_seed(0)
    model.compile(optimizer=tf_keras.optimizers.Adam(1e-3), loss=loss)
    model.fit(arrays["x_train"], arrays["y_train"], epochs=epochs, batch_size=32, verbose=0)
    return model


def load_npz(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as npz:
        return {k: npz[k] for k in npz.files}
