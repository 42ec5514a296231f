"""Post-training quantization: fp32 (the plain conversion), float16, dynamic range, full int8, int16x8.

Full int8 has int8 input and output and calibrates on 100-500 rows drawn from x_train; int16x8 keeps
float I/O with 16-bit activations and 8-bit weights (for models int8 activations hurt).
"""
from __future__ import annotations

from coordinator.optimize.build import BuildContext, Built
from coordinator.optimize.conversion import convert
from coordinator.optimize.data import representative_rows
from coordinator.optimize.recipes import PtqParams


def _build(ctx: BuildContext, mode: str, params: PtqParams) -> Built:
    rows = representative_rows(ctx.data, params.samples, ctx.seed) if mode in ("int8", "int16x8") else None
    figures = {"calibration_rows": float(len(rows))} if rows is not None else {}
    return Built(convert(ctx.conversion_source(), mode, representative=rows), figures=figures)


def build_fp32(ctx: BuildContext, params: PtqParams) -> Built:
    return _build(ctx, "fp32", params)


def build_float16(ctx: BuildContext, params: PtqParams) -> Built:
    return _build(ctx, "float16", params)


def build_dynamic(ctx: BuildContext, params: PtqParams) -> Built:
    return _build(ctx, "dynamic", params)


def build_int8(ctx: BuildContext, params: PtqParams) -> Built:
    return _build(ctx, "int8", params)


def build_int16x8(ctx: BuildContext, params: PtqParams) -> Built:
    return _build(ctx, "int16x8", params)
