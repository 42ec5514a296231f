"""Edge TPU fit: analysis of int8 variants, and edgetpu_compiler when it is on PATH (a fake one here)."""
from __future__ import annotations

import os
import stat
from pathlib import Path

import numpy as np
import pytest

from coordinator.optimize import edgetpu
from coordinator.optimize.artifacts import ArtifactStore

FAKE_COMPILER = """#!/bin/sh
# Fake edgetpu_compiler: edgetpu_compiler -s -o OUT MODEL
out=""; model=""
while [ $# -gt 0 ]; do
  case "$1" in
    -o) out="$2"; shift 2 ;;
    -s) shift ;;
    *) model="$1"; shift ;;
  esac
done
[ -n "$FAIL" ] && { echo "ERROR: Didn't find op for builtin opcode"; echo "Compilation failed!"; exit 1; }
cp "$model" "$out/$(basename "$model" .tflite)_edgetpu.tflite"
cat <<EOT
Edge TPU Compiler version 16.0.384591198
Model compiled successfully in 11 ms.
Number of Edge TPU subgraphs: 1
Total number of operations: 5
Number of operations that will run on Edge TPU: 4
Number of operations that will run on CPU: 1

Operator                       Count      Status

FULLY_CONNECTED                2          Mapped to Edge TPU
CONV_2D                        1          Mapped to Edge TPU
RESHAPE                        1          Mapped to Edge TPU
SOFTMAX                        1          Operation is otherwise supported, but not mapped due to some unspecified limitation
EOT
"""


@pytest.fixture
def no_compiler(monkeypatch, tmp_path):
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))


@pytest.fixture
def fake_compiler(monkeypatch, tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "edgetpu_compiler"
    script.write_text(FAKE_COMPILER)
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return script


def test_int8_variant_is_compatible_but_not_compiled_without_the_compiler(digits_run, no_compiler):
    data = Path(digits_run.variant("int8").path).read_bytes()
    fit = edgetpu.check(data)
    assert (fit.status, fit.detail) == ("compatible", "compatible, not compiled: compiler not installed")
    assert fit.mapped_fraction == 1.0
    assert digits_run.variant("int8").edgetpu.status in ("compatible", "compiled")


def test_float_variants_are_not_applicable(digits_run):
    for vid in ("fp32", "fp16", "dynamic"):
        fit = digits_run.variant(vid).edgetpu
        assert fit.status == "not_applicable" and "int8" in fit.detail


def test_unsupported_op_is_named(tabular_files, no_compiler):
    import tensorflow as tf
    import tf_keras

    from coordinator.optimize.conversion import convert

    inp = tf_keras.Input((20,))
    h = tf_keras.layers.Dense(8)(inp)
    out = tf_keras.layers.Dense(3)(tf_keras.layers.Lambda(lambda t: tf.abs(t))(h))
    data = convert(tf_keras.Model(inp, out), "int8", representative=np.random.default_rng(0).normal(size=(100, 20)))
    fit = edgetpu.check(data)
    assert fit.status == "incompatible"
    assert "ABS is not supported by the Edge TPU" in fit.detail
    assert fit.mapped_fraction == pytest.approx(1 / 3)  # FULLY_CONNECTED maps, then ABS cuts


def test_dynamic_shapes_block(tabular_files):
    import tensorflow as tf
    import tf_keras

    model = tf_keras.models.load_model(tabular_files[0])
    converter = tf.lite.TFLiteConverter.from_keras_model(model)  # keeps the batch axis dynamic
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    rows = np.random.default_rng(0).normal(size=(100, 20)).astype(np.float32)
    converter.representative_dataset = lambda: ([rows[i : i + 1]] for i in range(100))
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = converter.inference_output_type = tf.int8
    fit = edgetpu.analyze(converter.convert())
    assert fit.status == "incompatible" and "dynamic shape" in fit.detail


def test_compiler_on_path_is_run_and_its_summary_kept(digits_run, fake_compiler, tmp_path):
    data = Path(digits_run.variant("int8").path).read_bytes()
    store = ArtifactStore(tmp_path / "w")
    fit = edgetpu.check(data, store)
    assert fit.status == "compiled"
    assert fit.mapped_fraction == pytest.approx(0.8)
    assert "4 of 5 ops on the Edge TPU" in fit.detail and "SOFTMAX" in fit.detail
    assert store.path(fit.compiled_sha256).read_bytes() == data  # the fake compiler copies its input


def test_compiler_failure_is_reported(digits_run, fake_compiler, monkeypatch):
    monkeypatch.setenv("FAIL", "1")
    fit = edgetpu.check(Path(digits_run.variant("int8").path).read_bytes())
    assert fit.status == "incompatible" and "Compilation failed!" in fit.detail and "exit 1" in fit.detail


def test_compiler_is_not_run_for_float_models(digits_run, fake_compiler):
    assert edgetpu.check(Path(digits_run.variant("fp32").path).read_bytes()).status == "not_applicable"
