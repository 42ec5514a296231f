"""A small real model for the demo, the benchmarks and the tests: a digits CNN (scikit-learn's 8x8 digits).

Run in a child process, so that the caller never imports TensorFlow:

    python -m coordinator.samples OUT_DIR [--bad]

writes OUT_DIR/digits.keras (tf-keras) and OUT_DIR/digits.npz (x_train, y_train, x_val, y_val); with --bad
also OUT_DIR/digits-bad.keras, the same network with each layer's weights shuffled: it loads and runs
like the good one and its accuracy collapses. The last stdout line is
`trained <val accuracy> <bad accuracy or nan> <n train> <n val>`.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path


def digits_split(out: Path):
    """scikit-learn's digits as (N, 8, 8, 1) floats in [0, 1], split 1400 / 397 with a fixed seed; writes
    OUT/digits.npz (x_train, y_train, x_val, y_val) and returns x, y and the train and validation indices."""
    import numpy as np
    from sklearn.datasets import load_digits

    out.mkdir(parents=True, exist_ok=True)
    d = load_digits()
    x = (d.images / 16.0).astype(np.float32)[..., None]
    y = d.target.astype(np.int64)
    idx = np.random.default_rng(0).permutation(len(x))
    tr, va = idx[:1400], idx[1400:]
    np.savez(out / "digits.npz", x_train=x[tr], y_train=y[tr], x_val=x[va], y_val=y[va])
    return x, y, tr, va


def train_digits(out: Path, *, bad: bool = False) -> tuple[float, float, int, int]:
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")  # tf-keras: what tfmot can optimize
    import numpy as np
    import tf_keras

    x, y, tr, va = digits_split(out)
    tf_keras.utils.set_random_seed(0)
    layers = tf_keras.layers
    model = tf_keras.Sequential([tf_keras.Input((8, 8, 1)), layers.Conv2D(8, 3, activation="relu"), layers.Flatten(),
                                 layers.Dense(32, activation="relu"), layers.Dense(10, activation="softmax")])
    model.compile(optimizer=tf_keras.optimizers.Adam(3e-3), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x[tr], y[tr], epochs=8, batch_size=32, verbose=0)
    acc = float(model.evaluate(x[va], y[va], verbose=0)[1])
    model.save(out / "digits.keras")
    bad_acc = float("nan")
    if bad:
        rng = np.random.default_rng(1)
        model.set_weights([rng.permutation(w.ravel()).reshape(w.shape) for w in model.get_weights()])
        bad_acc = float(model.evaluate(x[va], y[va], verbose=0)[1])
        model.save(out / "digits-bad.keras")
    return acc, bad_acc, len(tr), len(va)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args:
        sys.stderr.write("usage: python -m coordinator.samples OUT_DIR [--bad]\n")
        return 2
    acc, bad_acc, n_tr, n_va = train_digits(Path(args[0]), bad="--bad" in args[1:])
    print(f"trained {acc:.4f} {bad_acc:.4f} {n_tr} {n_va}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
