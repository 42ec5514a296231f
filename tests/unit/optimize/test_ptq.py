"""Post-training quantization: each mode's defining property, checked on the .tflite artifact."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from coordinator.optimize.graph import read_graph


def _graph(run, variant_id):
    v = run.variant(variant_id)
    assert v.ok, (v.error, v.skipped)
    return v, read_graph(Path(v.path).read_bytes())


def test_fp32_is_the_float_baseline(digits_run):
    v, g = _graph(digits_run, "fp32")
    assert digits_run.baseline_id == "fp32"
    assert {t.dtype for _, t in g.weights()} == {"float32"}
    assert v.input_dtype == v.output_dtype == "float32" and v.input_quant is None
    assert v.metric > 0.9


def test_full_int8_has_int8_tensors_inside_and_out(digits_run):
    v, g = _graph(digits_run, "int8")
    assert v.input_dtype == v.output_dtype == "int8"
    assert v.input_quant["scale"] > 0 and -128 <= v.input_quant["zero_point"] <= 127
    inputs, outputs = g.tensors[g.inputs[0]], g.tensors[g.outputs[0]]
    assert inputs.dtype == outputs.dtype == "int8" and inputs.quantized and outputs.quantized
    assert {t.dtype for _, t in g.weights()} == {"int8"}
    # Every tensor between ops is int8; only constants (biases, shapes) may be int32.
    assert g.activation_dtypes() == {"int8"}
    assert {t.dtype for t in g.tensors if t.is_constant} <= {"int8", "int32"}
    assert "DEQUANTIZE" not in v.ops and "QUANTIZE" not in v.ops
    fp32 = digits_run.variant("fp32")
    assert v.size_bytes < 0.35 * fp32.size_bytes
    assert v.metric >= fp32.metric - 0.02
    assert v.figures["calibration_rows"] == 300


def test_float16_stores_weights_in_half_precision(digits_run):
    v, g = _graph(digits_run, "fp16")
    assert {t.dtype for _, t in g.weights()} == {"float16"}
    assert "DEQUANTIZE" in v.ops and v.input_dtype == "float32"
    assert v.size_bytes < 0.55 * digits_run.variant("fp32").size_bytes


def test_dynamic_range_quantizes_large_weights_only(digits_run):
    v, g = _graph(digits_run, "dynamic")
    dtypes = {t.values().size >= 1024: t.dtype for _, t in g.weights()}
    assert dtypes[True] == "int8"  # the 36,864-weight Dense kernel
    assert dtypes[False] == "float32"  # tensors under 1,024 elements stay float (FACTS)
    assert v.input_dtype == "float32" and "float32" in g.activation_dtypes()


def test_int16x8_has_16_bit_activations_and_8_bit_weights(digits_files, tmp_path):
    from coordinator.optimize.pipeline import run_pipeline

    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("techniques: [int16x8]\n")
    result = run_pipeline(*digits_files, workdir=tmp_path / "w", recipe=recipe)
    assert [v.id for v in result.variants] == ["fp32", "int16x8"]
    v, g = _graph(result, "int16x8")
    assert "int16" in g.activation_dtypes()
    assert {t.dtype for _, t in g.weights()} == {"int8"}
    assert v.metric >= result.variant("fp32").metric - 0.02
    assert v.edgetpu.status == "not_applicable"


def test_artifacts_are_content_addressed(digits_run):
    import hashlib

    for v in digits_run.variants:
        data = Path(v.path).read_bytes()
        assert Path(v.path).name == f"{v.sha256}.tflite"
        assert hashlib.sha256(data).hexdigest() == v.sha256
        assert v.size_bytes == len(data)
    assert len({v.sha256 for v in digits_run.variants}) == len(digits_run.variants)


def test_input_shapes_are_static_batch_one(digits_run):
    for v in digits_run.variants:
        assert v.input_shape == [1, 8, 8, 1]
        assert v.output_shape == [1, 10]
        assert np.isfinite(v.metric)
