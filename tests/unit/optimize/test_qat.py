"""Quantization-aware training: an int8 artifact built from a model trained with fake-quant nodes."""
from __future__ import annotations

from pathlib import Path

from coordinator.optimize.graph import read_graph


def test_qat_variant_is_int8_and_came_from_the_quantize_wrapped_model(digits_run):
    v = digits_run.variant("qat_int8")
    assert v.ok, v.error
    g = read_graph(Path(v.path).read_bytes())
    assert v.input_dtype == v.output_dtype == "int8"
    assert g.activation_dtypes() == {"int8"} and {t.dtype for _, t in g.weights()} == {"int8"}
    # tfmot's quantize_model renames layers quant_<name>; the converter keeps those names.
    assert any("quant_" in t.name for t in g.tensors)
    assert not any("quant_" in t.name for t in read_graph(Path(digits_run.variant("int8").path).read_bytes()).tensors)
    assert v.metric >= digits_run.variant("fp32").metric - 0.03
