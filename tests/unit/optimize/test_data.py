"""The uploaded .npz: every bad input gives a DataError that names what is wrong."""
from __future__ import annotations

import numpy as np
import pytest

from coordinator.optimize.data import check_against_model, load_dataset, representative_rows
from coordinator.optimize.errors import DataError

DIGITS_INPUT = (None, 8, 8, 1)


def _good(n_train: int = 40, n_val: int = 20) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "x_train": rng.random((n_train, 8, 8, 1), dtype=np.float32), "y_train": rng.integers(0, 10, n_train),
        "x_val": rng.random((n_val, 8, 8, 1), dtype=np.float32), "y_val": rng.integers(0, 10, n_val),
    }


def test_good_data_loads_and_is_classification(write_npz):
    ds = load_dataset(write_npz(**_good()))
    info = check_against_model(ds, DIGITS_INPUT, 10)
    assert (info.task, info.metric_name, info.n_classes) == ("classification", "accuracy", 10)
    assert ds.has_train and not ds.is_tabular and len(ds.sha256) == 64


@pytest.mark.parametrize("missing", ["x_val", "y_val", "y_train", "x_train"])
def test_missing_array_is_named(write_npz, missing):
    arrays = _good()
    del arrays[missing]
    with pytest.raises(DataError, match=f"missing array.*{missing}"):
        load_dataset(write_npz(**arrays))


def test_train_split_may_be_left_out_as_a_pair(write_npz):
    arrays = _good()
    del arrays["x_train"], arrays["y_train"]
    ds = load_dataset(write_npz(**arrays))
    assert not ds.has_train
    assert len(representative_rows(ds)) == 20  # calibration falls back on the (small) validation split


def test_shape_that_does_not_fit_the_model_input(write_npz):
    arrays = _good()
    arrays["x_train"] = arrays["x_train"][..., 0]
    arrays["x_val"] = arrays["x_val"][..., 0]
    ds = load_dataset(write_npz(**arrays))
    with pytest.raises(DataError, match=r"x_train samples have shape \(8, 8\).*expects \(8, 8, 1\)"):
        check_against_model(ds, DIGITS_INPUT, 10)


def test_train_and_val_samples_must_agree(write_npz):
    arrays = _good()
    arrays["x_val"] = np.zeros((20, 4, 4, 1), np.float32)
    with pytest.raises(DataError, match="x_train samples have shape"):
        load_dataset(write_npz(**arrays))


@pytest.mark.parametrize("bad_label", [10, -1])
def test_labels_out_of_range(write_npz, bad_label):
    arrays = _good()
    arrays["y_val"][3] = bad_label
    ds = load_dataset(write_npz(**arrays))
    with pytest.raises(DataError, match=rf"y_val has labels out of range: {bad_label}.*0\.\.9"):
        check_against_model(ds, DIGITS_INPUT, 10)


@pytest.mark.parametrize("value,word", [(np.nan, "NaN"), (np.inf, "inf"), (-np.inf, "inf")])
def test_non_finite_values(write_npz, value, word):
    arrays = _good()
    arrays["x_train"][0, 0, 0, 0] = value
    with pytest.raises(DataError, match=f"x_train contains 1 {word}"):
        load_dataset(write_npz(**arrays))


def test_nan_in_regression_targets(write_npz):
    arrays = _good()
    arrays["y_val"] = np.linspace(0, 1, 20)
    arrays["y_val"][5] = np.nan
    with pytest.raises(DataError, match="y_val contains 1 NaN"):
        load_dataset(write_npz(**arrays))


def test_empty_split(write_npz):
    arrays = _good()
    arrays["x_val"] = arrays["x_val"][:0]
    arrays["y_val"] = arrays["y_val"][:0]
    with pytest.raises(DataError, match="x_val is empty"):
        load_dataset(write_npz(**arrays))


def test_x_and_y_lengths_differ(write_npz):
    arrays = _good()
    arrays["y_train"] = arrays["y_train"][:-1]
    with pytest.raises(DataError, match="x_train has 40 samples but y_train has 39"):
        load_dataset(write_npz(**arrays))


def test_not_an_npz(tmp_path):
    path = tmp_path / "data.npz"
    path.write_text("x_train,y_train\n1,2\n")
    with pytest.raises(DataError, match="not a readable .npz"):
        load_dataset(path)


def test_pickled_objects_are_refused(write_npz):
    arrays = _good()
    arrays["x_val"] = np.array([{"a": 1}] * 20, dtype=object)
    with pytest.raises(DataError, match="x_val"):
        load_dataset(write_npz(**arrays))


def test_one_hot_labels_become_class_ids(write_npz):
    arrays = _good()
    arrays["y_train"] = np.eye(10)[arrays["y_train"]]
    arrays["y_val"] = np.eye(10)[arrays["y_val"]]
    ds = load_dataset(write_npz(**arrays))
    info = check_against_model(ds, DIGITS_INPUT, 10)
    assert info.task == "classification" and ds.y_val.ndim == 1 and ds.y_val.max() < 10


def test_real_valued_targets_are_regression(write_npz):
    rng = np.random.default_rng(1)
    ds = load_dataset(write_npz(x_train=rng.random((30, 5)), y_train=rng.random(30), x_val=rng.random((10, 5)), y_val=rng.random(10)))
    info = check_against_model(ds, (None, 5), 1)
    assert (info.task, info.metric_name) == ("regression", "mae")
    assert ds.is_tabular and ds.y_val.shape == (10, 1)


def test_integer_labels_with_one_output_need_an_explicit_task(write_npz):
    rng = np.random.default_rng(2)
    arrays = dict(x_train=rng.random((30, 5)), y_train=rng.integers(0, 2, 30), x_val=rng.random((10, 5)), y_val=rng.integers(0, 2, 10))
    with pytest.raises(DataError, match="cannot infer the task"):
        check_against_model(load_dataset(write_npz(**arrays)), (None, 5), 1)
    info = check_against_model(load_dataset(write_npz(**arrays)), (None, 5), 1, task="classification")
    assert info.n_classes == 2


def test_regression_targets_must_match_the_outputs(write_npz):
    rng = np.random.default_rng(3)
    ds = load_dataset(write_npz(x_train=rng.random((30, 5)), y_train=rng.random((30, 2)), x_val=rng.random((10, 5)), y_val=rng.random((10, 2))))
    with pytest.raises(DataError, match="2 target"):
        check_against_model(ds, (None, 5), 3, task="regression")


def test_unknown_task(write_npz):
    with pytest.raises(DataError, match="unknown task 'ranking'"):
        check_against_model(load_dataset(write_npz(**_good())), DIGITS_INPUT, 10, task="ranking")


def test_representative_rows_are_100_to_500_training_rows(write_npz):
    ds = load_dataset(write_npz(**_good(n_train=900)))
    rows = representative_rows(ds, 300)
    assert rows.shape == (300, 8, 8, 1)
    train = {r.tobytes() for r in ds.x_train}
    assert all(r.tobytes() in train for r in rows)
    assert len(representative_rows(ds, 50)) == 100 and len(representative_rows(ds, 5000)) == 500
