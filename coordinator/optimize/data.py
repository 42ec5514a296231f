"""The uploaded data: an `.npz` with `x_train`, `y_train`, `x_val`, `y_val`.

Format (also in docs): `x_*` hold one sample per row in the model's input shape (without the batch axis);
`y_*` hold, for classification, integer class ids `0..n_classes-1` (shape `(n,)` or `(n, 1)`) or one-hot rows
`(n, n_classes)`; for regression, targets of shape `(n,)` or `(n, n_outputs)`. The validation split is used
whole to measure every variant; the training split feeds fine-tuning and int8 calibration. `x_train` and
`y_train` may both be left out (e.g. with a `.tflite` upload): techniques that train are then skipped and
int8 calibration draws from `x_val`.

No TensorFlow here: the coordinator may validate data before it starts a worker.
"""
from __future__ import annotations

import hashlib
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from coordinator.optimize.errors import DataError

SPLITS = ("x_train", "y_train", "x_val", "y_val")
TASKS = ("classification", "regression")


@dataclass
class Dataset:
    x_val: np.ndarray
    y_val: np.ndarray
    x_train: np.ndarray | None
    y_train: np.ndarray | None
    sha256: str

    @property
    def has_train(self) -> bool:
        return self.x_train is not None

    @property
    def is_tabular(self) -> bool:
        """One feature vector per sample: what PCA and RFE apply to."""
        return self.x_val.ndim == 2


@dataclass(frozen=True)
class TaskInfo:
    task: str  # classification | regression
    metric_name: str  # accuracy | mae
    n_outputs: int  # last dimension of the model output
    n_classes: int | None  # classification only; 2 for a single sigmoid output

    @property
    def higher_is_better(self) -> bool:
        return self.metric_name == "accuracy"


def load_dataset(path: Path) -> Dataset:
    """Read and check the arrays on their own (shapes against the model come in `check_against_model`)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"data file {path} does not exist")
    raw = path.read_bytes()
    try:
        npz = np.load(path, allow_pickle=False)  # never unpickle an upload
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as exc:
        raise DataError(f"{path.name} is not a readable .npz file ({exc})") from exc
    if not isinstance(npz, np.lib.npyio.NpzFile):
        raise DataError(f"{path.name} holds a single array, not an .npz archive of named arrays")
    arrays = {}
    with npz:
        for k in npz.files:
            try:
                arrays[k] = npz[k]
            except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
                raise DataError(f"array {k} in {path.name} cannot be read ({exc})") from exc
    present = set(arrays)
    missing = [k for k in ("x_val", "y_val") if k not in present]
    if ("x_train" in present) != ("y_train" in present):
        missing.append("y_train" if "x_train" in present else "x_train")
    if missing:
        raise DataError(
            f"{path.name} is missing array(s) {', '.join(missing)}; expected x_train, y_train, x_val, y_val "
            f"(found: {', '.join(sorted(present)) or 'none'})"
        )
    for name in SPLITS:
        if name in arrays:
            _check_array(name, arrays[name])
    for split in ("train", "val"):
        x, y = arrays.get(f"x_{split}"), arrays.get(f"y_{split}")
        if x is not None and len(x) != len(y):
            raise DataError(f"x_{split} has {len(x)} samples but y_{split} has {len(y)}")
    if arrays["x_val"].shape[1:] != arrays.get("x_train", arrays["x_val"]).shape[1:]:
        raise DataError(
            f"x_train samples have shape {arrays['x_train'].shape[1:]} but x_val samples have "
            f"{arrays['x_val'].shape[1:]}"
        )
    return Dataset(
        x_val=arrays["x_val"],
        y_val=arrays["y_val"],
        x_train=arrays.get("x_train"),
        y_train=arrays.get("y_train"),
        sha256=hashlib.sha256(raw).hexdigest(),
    )


def _check_array(name: str, a: np.ndarray) -> None:
    if a.ndim == 0:
        raise DataError(f"{name} is a scalar; expected one row per sample")
    if len(a) == 0:
        raise DataError(f"{name} is empty (0 samples)")
    if not (np.issubdtype(a.dtype, np.number) or a.dtype == np.bool_):
        raise DataError(f"{name} has dtype {a.dtype}; expected numbers")
    if np.issubdtype(a.dtype, np.floating) or np.issubdtype(a.dtype, np.complexfloating):
        n_nan = int(np.isnan(a).sum())
        n_inf = int(np.isinf(a).sum())
        if n_nan or n_inf:
            parts = [f"{n_nan} NaN" if n_nan else "", f"{n_inf} inf" if n_inf else ""]
            raise DataError(f"{name} contains {' and '.join(p for p in parts if p)} value(s)")


def check_against_model(
    ds: Dataset, input_shape: Sequence[int | None], n_outputs: int, task: str | None = None
) -> TaskInfo:
    """Check the data fits the model and settle the task; labels are normalized in place to class ids.

    Inference rule: one-hot rows or integer labels with a multi-output model mean classification;
    non-integer labels mean regression; integer labels with a single output are ambiguous (binary
    classifier or count regression) and need an explicit task.
    """
    if task is not None and task not in TASKS:
        raise DataError(f"unknown task {task!r}; expected one of {', '.join(TASKS)}")
    want = tuple(input_shape[1:])
    for name in ("x_train", "x_val"):
        x = getattr(ds, name)
        if x is None:
            continue
        got = x.shape[1:]
        if len(got) != len(want) or any(w is not None and w != g for w, g in zip(want, got)):
            shown = tuple("?" if w is None else w for w in want)
            raise DataError(f"{name} samples have shape {got} but the model input expects {shown}")
    if task is None:
        task = _infer_task(ds, n_outputs)
    if task == "classification":
        n_classes = n_outputs if n_outputs > 1 else 2
        for split in ("train", "val"):
            y = getattr(ds, f"y_{split}")
            if y is not None:
                setattr(ds, f"y_{split}", _class_ids(f"y_{split}", y, n_classes, n_outputs))
        return TaskInfo("classification", "accuracy", n_outputs, n_classes)
    for split in ("train", "val"):
        y = getattr(ds, f"y_{split}")
        if y is None:
            continue
        y = y.astype(np.float32).reshape(len(y), -1)
        if y.shape[1] != n_outputs:
            raise DataError(f"y_{split} has {y.shape[1]} target(s) per sample but the model has {n_outputs} output(s)")
        setattr(ds, f"y_{split}", y)
    return TaskInfo("regression", "mae", n_outputs, None)


def _integer_valued(y: np.ndarray) -> bool:
    if np.issubdtype(y.dtype, np.integer) or y.dtype == np.bool_:
        return True
    return bool(np.all(np.equal(np.mod(y, 1), 0)))


def _is_one_hot(y: np.ndarray, n_outputs: int) -> bool:
    return (
        y.ndim == 2 and n_outputs > 1 and y.shape[1] == n_outputs
        and bool(np.all((y == 0) | (y == 1))) and bool(np.all(y.sum(axis=1) == 1))
    )


def _infer_task(ds: Dataset, n_outputs: int) -> str:
    ys = [y for y in (ds.y_train, ds.y_val) if y is not None]
    if all(_is_one_hot(y, n_outputs) for y in ys):
        return "classification"
    flat = all(y.ndim == 1 or (y.ndim == 2 and y.shape[1] == 1) for y in ys)
    if all(_integer_valued(y) for y in ys) and flat:
        if n_outputs > 1:
            return "classification"
        raise DataError(
            "cannot infer the task: the labels are integers and the model has a single output "
            "(binary classifier or regression?); set the task explicitly (--task classification|regression)"
        )
    return "regression"


def _class_ids(name: str, y: np.ndarray, n_classes: int, n_outputs: int) -> np.ndarray:
    if _is_one_hot(y, n_outputs):
        return y.argmax(axis=1).astype(np.int64)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise DataError(f"{name} has shape {y.shape}; classification labels must be class ids (n,) or one-hot (n, {n_outputs})")
    if not _integer_valued(y):
        raise DataError(f"{name} holds non-integer values; classification labels must be class ids 0..{n_classes - 1}")
    ids = y.astype(np.int64)
    bad = ids[(ids < 0) | (ids >= n_classes)]
    if bad.size:
        shown = ", ".join(str(v) for v in np.unique(bad)[:5])
        raise DataError(
            f"{name} has labels out of range: {shown} ({bad.size} sample(s)); the model has {n_outputs} output(s), "
            f"so labels must be in 0..{n_classes - 1}"
        )
    return ids


def representative_rows(ds: Dataset, count: int = 300, seed: int = 0) -> np.ndarray:
    """Rows for int8 calibration: a seeded sample of 100-500 training rows (validation rows without train)."""
    source = ds.x_train if ds.x_train is not None else ds.x_val
    count = int(min(max(count, 100), 500, len(source)))
    idx = np.random.default_rng(seed).choice(len(source), size=count, replace=False)
    return np.asarray(source[np.sort(idx)])
