"""Load an uploaded model: `.keras`, `.h5`, a SavedModel directory (or `.zip` of one), or a `.tflite`.

Which Keras wrote a file decides what can be done with it: tf-keras (Keras 2) models take every technique;
Keras 3 models and plain TensorFlow SavedModels are converted from a SavedModel export (conversion and
post-training quantization only, since tfmot needs tf-keras); a `.tflite` is measured and offered as is.
"""
from __future__ import annotations

import hashlib
import json
import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from coordinator.optimize.errors import ModelError
from coordinator.optimize.graph import NotTfliteError, read_graph

FORMATS = ".keras, .h5, .tflite, a SavedModel directory, or a .zip of a SavedModel directory"


@dataclass
class LoadedModel:
    path: Path
    sha256: str
    source_format: str  # keras | h5 | savedmodel | tflite
    flavor: str  # tf_keras | keras3 | tensorflow | tflite
    input_shape: tuple[int | None, ...]
    input_dtype: str
    n_outputs: int
    keras_model: Any | None = None  # tf-keras model: every technique
    saved_model_dir: Path | None = None  # conversion source for keras3 / plain SavedModel
    tflite_bytes: bytes | None = None

    @property
    def keras_reason(self) -> str | None:
        """Why techniques that train or rebuild the model (tfmot and the rest) cannot run, if they cannot."""
        if self.flavor == "tf_keras":
            return None
        if self.flavor == "keras3":
            return ("Keras 3 model: tensorflow-model-optimization and the rebuilding techniques need a tf-keras "
                    "(Keras 2) model; only conversion and post-training quantization apply")
        if self.flavor == "tensorflow":
            return "SavedModel without Keras metadata: only conversion and post-training quantization apply"
        return "the upload is a .tflite: it is measured and offered as is"


def file_sha256(path: Path) -> str:
    """SHA-256 of a file, or of a directory's relative paths and contents in a stable order."""
    h = hashlib.sha256()
    if path.is_dir():
        for p in sorted(q for q in path.rglob("*") if q.is_file()):
            h.update(str(p.relative_to(path)).encode() + b"\0")
            h.update(p.read_bytes())
    else:
        with path.open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def upload_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else path.stat().st_size


def load_model(path: Path, *, workdir: Path, size_limit_bytes: int | None = None) -> LoadedModel:
    path = Path(path)
    if not path.exists():
        raise ModelError(f"model {path} does not exist")
    size = upload_size(path)
    if size_limit_bytes is not None and size > size_limit_bytes:
        raise ModelError(f"model {path.name} is {size:,} bytes, over the configured size limit of {size_limit_bytes:,} bytes")
    sha = file_sha256(path)
    suffix = path.suffix.lower()
    if path.is_dir():
        return _load_savedmodel(path, path, sha, workdir)
    if suffix == ".tflite":
        return _load_tflite(path, sha)
    if suffix == ".keras":
        return _load_keras_file(path, sha, workdir)
    if suffix in (".h5", ".hdf5"):
        return _load_h5(path, sha, workdir)
    if suffix == ".zip":
        return _load_savedmodel(_unzip(path, workdir / "uploads" / sha), path, sha, workdir)
    raise ModelError(f"{path.name}: unsupported model format {suffix or '(no extension)'!r}; expected {FORMATS}")


def _load_tflite(path: Path, sha: str) -> LoadedModel:
    data = path.read_bytes()
    try:
        graph = read_graph(data)
    except NotTfliteError as exc:
        raise ModelError(f"{path.name} is not a TFLite model: {exc}") from exc
    flex = [op.name for op in graph.ops if op.custom and op.name.startswith("Flex")]
    if flex:
        names = ", ".join(dict.fromkeys(n[len("Flex"):] for n in flex))
        raise ModelError(f"{path.name} needs TensorFlow ops through SELECT_TF_OPS (Flex), which devices cannot run: {names}")
    custom = [op.name for op in graph.ops if op.custom]
    if custom:
        raise ModelError(f"{path.name} uses custom op(s) the device runtime does not have: {', '.join(dict.fromkeys(custom))}")
    from coordinator.optimize.measure import make_interpreter

    try:
        interpreter = make_interpreter(data)
    except Exception as exc:  # LiteRT raises RuntimeError/ValueError with its own message
        raise ModelError(f"{path.name} does not load in the LiteRT interpreter: {exc}") from exc
    inputs, outputs = interpreter.get_input_details(), interpreter.get_output_details()
    _single_io(path, len(inputs), len(outputs))
    sig = inputs[0].get("shape_signature")
    shape = tuple(None if d < 0 else int(d) for d in (sig if sig is not None and len(sig) else inputs[0]["shape"]))
    return LoadedModel(
        path=path, sha256=sha, source_format="tflite", flavor="tflite", input_shape=shape,
        input_dtype=np.dtype(inputs[0]["dtype"]).name, n_outputs=int(outputs[0]["shape"][-1]) if len(outputs[0]["shape"]) > 1 else 1,
        tflite_bytes=data,
    )


def _keras_major(version: str | None) -> int:
    try:
        return int(str(version).split(".")[0])
    except ValueError:
        return 2


def _load_keras_file(path: Path, sha: str, workdir: Path) -> LoadedModel:
    if not zipfile.is_zipfile(path):
        raise ModelError(f"{path.name} is not a Keras model: a .keras file is a zip archive and this is not one")
    with zipfile.ZipFile(path) as z:
        names = set(z.namelist())
        if "config.json" not in names:
            raise ModelError(f"{path.name} is not a Keras model: the archive has no config.json")
        meta = json.loads(z.read("metadata.json")) if "metadata.json" in names else {}
    if _keras_major(meta.get("keras_version")) >= 3:
        return _load_keras3(path, sha, workdir, "keras")
    import tf_keras

    try:
        model = tf_keras.models.load_model(path, compile=False)  # safe_mode stays on: no lambda bytecode
    except Exception as exc:
        raise ModelError(f"{path.name} could not be loaded as a tf-keras model: {exc}") from exc
    return _from_tf_keras(model, path, sha, "keras")


def _load_h5(path: Path, sha: str, workdir: Path) -> LoadedModel:
    import h5py

    try:
        with h5py.File(path, "r") as f:
            version = f.attrs.get("keras_version")
            has_config = "model_config" in f.attrs
    except OSError as exc:
        raise ModelError(f"{path.name} is not a Keras model: not an HDF5 file") from exc
    if not has_config:
        raise ModelError(f"{path.name} is not a Keras model: the HDF5 file holds no model_config (weights only?)")
    if isinstance(version, bytes):
        version = version.decode()
    if _keras_major(version) >= 3:
        return _load_keras3(path, sha, workdir, "h5")
    import tf_keras

    try:
        model = tf_keras.models.load_model(path, compile=False)
    except Exception as exc:
        raise ModelError(f"{path.name} could not be loaded as a tf-keras model: {exc}") from exc
    return _from_tf_keras(model, path, sha, "h5")


def _from_tf_keras(model: Any, path: Path, sha: str, fmt: str) -> LoadedModel:
    _single_io(path, len(model.inputs), len(model.outputs))
    out_shape = tuple(model.outputs[0].shape)
    return LoadedModel(
        path=path, sha256=sha, source_format=fmt, flavor="tf_keras",
        input_shape=tuple(model.inputs[0].shape), input_dtype=model.inputs[0].dtype.name,
        n_outputs=int(out_shape[-1]) if len(out_shape) > 1 else 1, keras_model=model,
    )


def _load_keras3(path: Path, sha: str, workdir: Path, fmt: str) -> LoadedModel:
    import keras
    import tensorflow as tf

    try:
        model = keras.saving.load_model(path, compile=False)
    except Exception as exc:
        raise ModelError(f"{path.name} could not be loaded as a Keras 3 model: {exc}") from exc
    _single_io(path, len(model.inputs), len(model.outputs))
    shape = tuple(model.inputs[0].shape)
    export_dir = workdir / "uploads" / f"{sha}-savedmodel"
    if not (export_dir / "saved_model.pb").exists():
        shutil.rmtree(export_dir, ignore_errors=True)
        # A batch-1 signature gives the converter static shapes (what devices and the Edge TPU need).
        spec = tf.TensorSpec([1, *shape[1:]], model.inputs[0].dtype)
        try:
            model.export(str(export_dir), format="tf_saved_model", input_signature=[spec], verbose=False)
        except Exception as exc:
            raise ModelError(f"{path.name}: the Keras 3 model could not be exported for conversion: {exc}") from exc
    out_shape = tuple(model.outputs[0].shape)
    return LoadedModel(
        path=path, sha256=sha, source_format=fmt, flavor="keras3", input_shape=shape,
        input_dtype=str(model.inputs[0].dtype), n_outputs=int(out_shape[-1]) if len(out_shape) > 1 else 1,
        saved_model_dir=export_dir,
    )


def _unzip(path: Path, dest: Path) -> Path:
    if not zipfile.is_zipfile(path):
        raise ModelError(f"{path.name} is not a zip archive")
    if not dest.exists():
        tmp = dest.with_name(dest.name + ".partial")
        shutil.rmtree(tmp, ignore_errors=True)
        with zipfile.ZipFile(path) as z:
            for info in z.infolist():
                target = (tmp / info.filename).resolve()
                if not target.is_relative_to(tmp.resolve()):  # zip-slip: an entry escaping the folder
                    raise ModelError(f"{path.name} has an entry outside the archive root: {info.filename}")
            z.extractall(tmp)
        tmp.rename(dest)
    found = sorted(p.parent for p in dest.rglob("saved_model.pb"))
    if not found:
        raise ModelError(f"{path.name} holds no SavedModel (no saved_model.pb inside)")
    return found[0]


def _load_savedmodel(directory: Path, shown: Path, sha: str, workdir: Path) -> LoadedModel:
    if not (directory / "saved_model.pb").exists():
        raise ModelError(f"{shown.name} is not a SavedModel directory (no saved_model.pb)")
    if (directory / "keras_metadata.pb").exists():
        import tf_keras

        try:
            model = tf_keras.models.load_model(directory, compile=False)
        except Exception as exc:
            raise ModelError(f"{shown.name}: the tf-keras SavedModel could not be loaded: {exc}") from exc
        return _from_tf_keras(model, shown, sha, "savedmodel")
    import tensorflow as tf

    try:
        loaded = tf.saved_model.load(str(directory))
        sig = loaded.signatures["serving_default"]
    except KeyError as exc:
        raise ModelError(f"{shown.name}: the SavedModel has no serving_default signature") from exc
    except Exception as exc:
        raise ModelError(f"{shown.name} could not be loaded as a SavedModel: {exc}") from exc
    inputs = sig.structured_input_signature[1]
    outputs = sig.structured_outputs
    _single_io(shown, len(inputs), len(outputs))
    spec = next(iter(inputs.values()))
    out = next(iter(outputs.values()))
    return LoadedModel(
        path=shown, sha256=sha, source_format="savedmodel", flavor="tensorflow",
        input_shape=tuple(spec.shape), input_dtype=spec.dtype.name,
        n_outputs=int(out.shape[-1]) if len(out.shape) > 1 else 1, saved_model_dir=directory,
    )


def _single_io(path: Path, n_in: int, n_out: int) -> None:
    # The .npz carries one x and one y per split, and devices feed one tensor.
    if n_in != 1 or n_out != 1:
        raise ModelError(f"{path.name} has {n_in} input(s) and {n_out} output(s); only single-input, single-output models are supported")
