"""Model uploads: every format loads, and each bad one is refused with a clear error."""
from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest

from coordinator.optimize.errors import ModelError, RecipeError
from coordinator.optimize.models import load_model


def _recipe(tmp_path: Path, *names: str) -> Path:
    path = tmp_path / "recipe.toml"
    path.write_text("techniques = [" + ", ".join(f'"{n}"' for n in names) + "]\n")
    return path


@pytest.mark.parametrize("name,content,message", [
    ("model.keras", b"definitely not a zip", "not a Keras model: a .keras file is a zip archive"),
    ("model.tflite", b"hello, this is text", "not a TFLite model"),
    ("model.h5", b"\x00\x01 not hdf5", "not a Keras model: not an HDF5 file"),
    ("model.pkl", b"\x80\x04", "unsupported model format '.pkl'"),
    ("model.zip", b"PK not really", "not a zip archive"),
])
def test_a_file_that_is_not_a_model(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ModelError, match=message):
        load_model(path, workdir=tmp_path / "w")


def test_a_zip_without_config_or_savedmodel(tmp_path):
    path = tmp_path / "model.keras"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("notes.txt", "hi")
    with pytest.raises(ModelError, match="no config.json"):
        load_model(path, workdir=tmp_path / "w")
    shutil.copy(path, tmp_path / "model.zip")
    with pytest.raises(ModelError, match="no SavedModel"):
        load_model(tmp_path / "model.zip", workdir=tmp_path / "w")
    (tmp_path / "dir").mkdir()
    with pytest.raises(ModelError, match="not a SavedModel directory"):
        load_model(tmp_path / "dir", workdir=tmp_path / "w")


def test_model_over_the_size_limit(digits_files, tmp_path):
    from coordinator.optimize.pipeline import run_pipeline

    size = digits_files[0].stat().st_size
    with pytest.raises(ModelError, match=f"{size:,} bytes, over the configured size limit of 1,000 bytes"):
        run_pipeline(*digits_files, workdir=tmp_path, size_limit_bytes=1000)
    assert not (tmp_path / "artifacts").exists() or not any((tmp_path / "artifacts").iterdir())


def _determinant_savedmodel(path: Path) -> Path:
    import tensorflow as tf

    class Det(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32)])
        def serve(self, x):
            return {"det": tf.reshape(tf.linalg.det(tf.reshape(x, (-1, 2, 2))), (-1, 1))}

    module = Det()
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.serve})
    return path


def test_ops_that_need_select_tf_ops_are_named(tmp_path, write_npz):
    from coordinator.optimize.pipeline import run_pipeline

    saved = _determinant_savedmodel(tmp_path / "det")
    rng = np.random.default_rng(0)
    data = write_npz(x_train=rng.random((20, 4)), y_train=rng.random(20), x_val=rng.random((10, 4)), y_val=rng.random(10))
    with pytest.raises(ModelError, match="SELECT_TF_OPS.*MatrixDeterminant"):
        run_pipeline(saved, data, workdir=tmp_path / "w", recipe=_recipe(tmp_path, "int8"))


def test_a_tflite_with_flex_ops_is_refused_naming_the_op(tmp_path):
    import tensorflow as tf

    saved = _determinant_savedmodel(tmp_path / "det")
    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved))
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS, tf.lite.OpsSet.SELECT_TF_OPS]
    (tmp_path / "flex.tflite").write_bytes(converter.convert())
    with pytest.raises(ModelError, match="SELECT_TF_OPS.*MatrixDeterminant"):
        load_model(tmp_path / "flex.tflite", workdir=tmp_path / "w")


def test_unknown_technique_is_named_before_the_model_loads(digits_files, tmp_path):
    from coordinator.optimize.pipeline import run_pipeline

    with pytest.raises(RecipeError, match="unknown technique 'distillation'"):
        run_pipeline(digits_files[0], digits_files[1], workdir=tmp_path, recipe=_recipe(tmp_path, "int8", "distillation"))


def test_tflite_upload_is_measured_and_offered_as_is(digits_run, digits_files, tmp_path):
    from coordinator.optimize.pipeline import run_pipeline

    upload = tmp_path / "digits.tflite"
    shutil.copy(digits_run.variant("int8").path, upload)
    result = run_pipeline(upload, digits_files[1], workdir=tmp_path / "w", recipe=_recipe(tmp_path, "int8", "pruning"))
    assert (result.source_format, result.model_flavor, result.baseline_id) == ("tflite", "tflite", "uploaded")
    uploaded = result.variant("uploaded")
    assert uploaded.technique == "as_is" and uploaded.sha256 == digits_run.variant("int8").sha256
    assert uploaded.metric == pytest.approx(digits_run.variant("int8").metric)
    for vid in ("int8", "pruned80_int8"):
        assert "measured and offered as is" in result.variant(vid).skipped


def test_keras3_model_gets_conversion_and_ptq_only(tmp_path, digits_files):
    import keras

    from coordinator.optimize.pipeline import run_pipeline

    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(), keras.layers.Dense(10, activation="softmax")])
    from tests.unit.optimize.factories import load_npz

    data = load_npz(digits_files[1])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.fit(data["x_train"], data["y_train"], epochs=8, verbose=0)
    model.save(tmp_path / "k3.keras")
    result = run_pipeline(tmp_path / "k3.keras", digits_files[1], workdir=tmp_path / "w",
                          recipe=_recipe(tmp_path, "int8", "pruning", "qat", "clustering"))
    assert result.model_flavor == "keras3"
    assert result.variant("fp32").ok and result.variant("int8").ok
    fp32, int8 = result.variant("fp32"), result.variant("int8")
    assert fp32.metric > 0.5 and int8.metric >= fp32.metric - 0.03 and int8.input_dtype == "int8"
    for vid in ("pruned80_int8", "qat_int8", "clustered16_int8"):
        assert "Keras 3" in result.variant(vid).skipped


def test_h5_and_zipped_savedmodel_load_as_tf_keras(digits_files, tmp_path):
    import tf_keras

    model = tf_keras.models.load_model(digits_files[0])
    model.save(tmp_path / "m.h5")
    loaded = load_model(tmp_path / "m.h5", workdir=tmp_path / "w")
    assert (loaded.flavor, loaded.source_format, loaded.input_shape) == ("tf_keras", "h5", (None, 8, 8, 1))
    model.save(tmp_path / "sm", save_format="tf")
    shutil.make_archive(str(tmp_path / "sm"), "zip", tmp_path, "sm")
    loaded = load_model(tmp_path / "sm.zip", workdir=tmp_path / "w")
    assert (loaded.flavor, loaded.source_format, loaded.n_outputs) == ("tf_keras", "savedmodel", 10)
    assert loaded.keras_reason is None


def test_zip_slip_is_refused(tmp_path):
    path = tmp_path / "evil.zip"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("../escaped/saved_model.pb", b"x")
    with pytest.raises(ModelError, match="outside the archive root"):
        load_model(path, workdir=tmp_path / "w")
    assert not (tmp_path / "w" / "escaped").exists()
