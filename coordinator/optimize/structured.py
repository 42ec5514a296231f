"""Structured pruning: remove the least important whole units (Dense) and filters (Conv2D) from every
hidden layer, rebuild a smaller dense model, fine-tune it. Fewer MACs on any CPU, no sparse kernels needed.

Importance of a unit is the L1 norm of its incoming weights (Li et al., "Pruning Filters for Efficient
ConvNets"). Channels removed from one layer are removed from the inputs of the next one, through
BatchNormalization, DepthwiseConv2D (multiplier 1), Flatten and weightless pass-through layers. MACs are
counted on the fp32 baseline artifact and on the new artifact.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import tf_keras

from coordinator.optimize import finetune
from coordinator.optimize.build import BuildContext, Built
from coordinator.optimize.chain import PASS_THROUGH, chain_layers, fresh, sequential
from coordinator.optimize.conversion import convert
from coordinator.optimize.errors import TechniqueSkipped
from coordinator.optimize.graph import read_graph
from coordinator.optimize.recipes import StructuredParams

L = tf_keras.layers


def _is_dense_or_conv(layer: Any) -> bool:
    return type(layer) in (L.Dense, L.Conv1D, L.Conv2D)


def shrink(model: Any, ratio: float) -> tuple[Any, dict[str, float]]:
    """A smaller copy of `model` with `ratio` of each hidden layer's units/filters removed."""
    layers = chain_layers(model, "structured pruning")
    weighted = [i for i, layer in enumerate(layers) if _is_dense_or_conv(layer)]
    if len(weighted) < 2:
        raise TechniqueSkipped("structured pruning needs at least one hidden Dense/Conv layer before the output layer")
    last = weighted[-1]
    keep_in: np.ndarray | None = None  # channels of the current tensor that survive; None = all
    new_layers, new_weights = [], []
    units_before = units_after = 0
    for i, layer in enumerate(layers):
        w = layer.get_weights()
        changes: dict[str, Any] = {}
        if isinstance(layer, L.DepthwiseConv2D):
            if layer.depth_multiplier != 1:
                raise TechniqueSkipped(f"structured pruning: DepthwiseConv2D {layer.name!r} has depth_multiplier != 1")
            if keep_in is not None:
                w = [w[0][:, :, keep_in, :]] + ([w[1][keep_in]] if layer.use_bias else [])
        elif _is_dense_or_conv(layer):
            kernel = w[0] if keep_in is None else w[0][..., keep_in, :]
            bias = w[1] if layer.use_bias else None
            if i != last:
                units = kernel.shape[-1]
                n_keep = max(1, int(round(units * (1 - ratio))))
                importance = np.abs(kernel).reshape(-1, units).sum(axis=0)
                keep = np.sort(np.argsort(-importance, kind="stable")[:n_keep])
                kernel = kernel[..., keep]
                bias = bias[keep] if bias is not None else None
                changes["units" if isinstance(layer, L.Dense) else "filters"] = int(n_keep)
                units_before += units
                units_after += n_keep
                keep_in = keep
            else:
                keep_in = None
            w = [kernel] + ([bias] if bias is not None else [])
        elif isinstance(layer, L.BatchNormalization):
            axis = layer.axis if isinstance(layer.axis, int) else layer.axis[0]
            if axis not in (-1, len(layer.input_shape) - 1):
                raise TechniqueSkipped(f"structured pruning: BatchNormalization {layer.name!r} is not on the channel axis")
            if keep_in is not None:
                w = [a[keep_in] for a in w]
        elif isinstance(layer, L.Flatten):
            if keep_in is not None:
                shape = layer.input_shape[1:]
                positions = int(np.prod(shape[:-1]))
                keep_in = (np.arange(positions)[:, None] * shape[-1] + keep_in[None, :]).reshape(-1)
        elif not isinstance(layer, PASS_THROUGH):
            raise TechniqueSkipped(
                f"structured pruning does not know how to shrink through layer {layer.name!r} ({type(layer).__name__})"
            )
        new_layers.append(fresh(layer, **changes))
        new_weights.append(w)
    spec = model.inputs[0]
    smaller = sequential(tuple(spec.shape[1:]), spec.dtype.name, new_layers, new_weights, f"{model.name}_structured")
    return smaller, {"units_before": float(units_before), "units_after": float(units_after)}


def build(ctx: BuildContext, params: StructuredParams) -> Built:
    base = ctx.keras_model()
    x, y = finetune.train_arrays(ctx.data)
    probabilities = finetune.outputs_probabilities(base, x)
    smaller, figures = shrink(base, params.ratio)
    finetune.compile_for(smaller, ctx.info, params.learning_rate, probabilities)
    finetune.fit(smaller, x, y, epochs=params.epochs, seed=ctx.seed)
    data = convert(smaller, params.quantize, representative=ctx.representative)
    before = read_graph(ctx.baseline).macs() if ctx.baseline else 0
    after = read_graph(data).macs()
    figures.update({"macs_before": float(before), "macs_after": float(after),
                    "macs_reduction": 1 - after / before if before else 0.0})
    return Built(data, figures=figures)
