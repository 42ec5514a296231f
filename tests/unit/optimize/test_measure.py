"""Measurement on the artifact: an independent re-evaluation gets the reported metric, and the other
figures are what the file says."""
from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
from ai_edge_litert.interpreter import Interpreter

from tests.unit.optimize.factories import load_npz


def independent_outputs(path: str, x: np.ndarray) -> np.ndarray:
    """Run a .tflite one row at a time, quantizing and dequantizing by hand from the tensor details."""
    interpreter = Interpreter(model_path=path, num_threads=1)
    interpreter.allocate_tensors()
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    rows = []
    for row in x:
        value = row[None].astype(np.float64)
        if inp["dtype"] == np.int8:
            scale, zero = inp["quantization"]
            value = np.clip(np.round(value / scale) + zero, -128, 127)
        interpreter.set_tensor(inp["index"], value.astype(inp["dtype"]))
        interpreter.invoke()
        y = interpreter.get_tensor(out["index"]).astype(np.float64)
        if out["dtype"] == np.int8:
            scale, zero = out["quantization"]
            y = (y - zero) * scale
        rows.append(y.reshape(-1))
    return np.array(rows)


@pytest.mark.parametrize("variant_id", ["fp32", "int8", "pruned80_int8", "qat_int8"])
def test_reevaluating_the_artifact_gives_the_reported_accuracy(digits_run, digits_files, variant_id):
    v = digits_run.variant(variant_id)
    data = load_npz(digits_files[1])
    accuracy = float(np.mean(independent_outputs(v.path, data["x_val"]).argmax(axis=1) == data["y_val"]))
    assert accuracy == pytest.approx(v.metric, abs=1e-12)
    assert len(data["y_val"]) == 397  # the whole validation split, not a sample


def test_reevaluating_an_rfe_variant_uses_only_its_features(tabular_run, tabular_files):
    v = tabular_run.variant("rfe_int8")
    data = load_npz(tabular_files[1])
    x = data["x_val"][:, v.input_features]
    accuracy = float(np.mean(independent_outputs(v.path, x).argmax(axis=1) == data["y_val"]))
    assert accuracy == pytest.approx(v.metric, abs=1e-12)


def test_size_latency_memory_and_ops_come_from_the_artifact(digits_run):
    for v in digits_run.variants:
        data = Path(v.path).read_bytes()
        assert v.gzip_bytes == len(gzip.compress(data, compresslevel=9, mtime=0)) < v.size_bytes
        assert 0 < v.latency_p50_ms <= v.latency_p95_ms
        assert v.peak_memory_bytes > v.size_bytes  # file + at least the input and output tensors
        assert {"CONV_2D", "FULLY_CONNECTED", "SOFTMAX"} <= set(v.ops)
        assert v.metric_name == "accuracy"
        assert v.figures["macs"] == 6 * 6 * 16 * 9 + 576 * 64 + 64 * 10


def test_regression_metric_is_mae_on_dequantized_outputs(tmp_path):
    import tf_keras
    from sklearn.datasets import load_diabetes

    from coordinator.optimize.pipeline import run_pipeline

    x, y = load_diabetes(return_X_y=True)
    x = ((x - x.mean(0)) / x.std(0)).astype(np.float32)
    y = ((y - y.mean()) / y.std()).astype(np.float32)
    np.savez(tmp_path / "d.npz", x_train=x[:350], y_train=y[:350], x_val=x[350:], y_val=y[350:])
    tf_keras.utils.set_random_seed(0)
    model = tf_keras.Sequential([tf_keras.Input((10,)), tf_keras.layers.Dense(16, activation="relu"), tf_keras.layers.Dense(1)])
    model.compile(optimizer=tf_keras.optimizers.Adam(1e-2), loss="mse")
    model.fit(x[:350], y[:350], epochs=30, verbose=0)
    model.save(tmp_path / "reg.keras")
    recipe = tmp_path / "r.toml"
    recipe.write_text('techniques = ["int8"]\n')
    result = run_pipeline(tmp_path / "reg.keras", tmp_path / "d.npz", workdir=tmp_path / "w", recipe=recipe)
    assert (result.task, result.metric_name) == ("regression", "mae")
    for v in result.variants:
        mae = float(np.mean(np.abs(independent_outputs(v.path, x[350:])[:, 0] - y[350:])))
        assert mae == pytest.approx(v.metric, rel=1e-9)
        assert 0 < v.metric < 0.7  # predicting the training mean scores about 0.92 here
    assert result.variant("int8").output_dtype == "int8"
