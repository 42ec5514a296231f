"""L1/L2-regularized fine-tuning, alone or as the step before magnitude pruning.

An L1 penalty drives unimportant weights towards zero, so the pruning that follows removes weights that
already carry little and loses less. The figures compare the mean absolute kernel weight of the fp32
baseline artifact with the new artifact's.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import tf_keras

from coordinator.optimize import finetune
from coordinator.optimize.build import BuildContext, Built
from coordinator.optimize.conversion import convert
from coordinator.optimize.errors import TechniqueSkipped
from coordinator.optimize.graph import read_graph
from coordinator.optimize.pruning import kernel_sparsity, prune
from coordinator.optimize.recipes import RegularizationParams

_KERNEL_ARG = {"Dense": "kernel_regularizer", "Conv1D": "kernel_regularizer", "Conv2D": "kernel_regularizer",
               "DepthwiseConv2D": "depthwise_regularizer"}


def with_regularizers(model: Any, l1: float, l2: float) -> Any:
    """A copy of `model` whose Dense/Conv kernels carry an L1L2 penalty, same weights."""
    config = model.get_config()
    penalty = tf_keras.regularizers.serialize(tf_keras.regularizers.L1L2(l1=l1, l2=l2))
    touched = 0
    for layer in config.get("layers", []):
        arg = _KERNEL_ARG.get(layer.get("class_name"))
        if arg:
            layer["config"][arg] = penalty
            touched += 1
    if not touched:
        raise TechniqueSkipped("regularization found no top-level Dense/Conv layer to regularize")
    try:
        copy = type(model).from_config(config)
    except Exception as exc:
        raise TechniqueSkipped(f"the model cannot be rebuilt from its config ({exc})") from exc
    copy.set_weights(model.get_weights())
    return copy


def mean_abs_weight(tflite: bytes) -> float:
    values = [np.abs(t.dequantized()).ravel() for _, t in read_graph(tflite).weights()]
    return float(np.concatenate(values).mean()) if values else 0.0


def build(ctx: BuildContext, params: RegularizationParams) -> Built:
    base = ctx.keras_model()
    x, y = finetune.train_arrays(ctx.data)
    probabilities = finetune.outputs_probabilities(base, x)
    model = with_regularizers(base, params.l1, params.l2)
    finetune.compile_for(model, ctx.info, params.learning_rate, probabilities)
    finetune.fit(model, x, y, epochs=params.epochs, seed=ctx.seed)
    figures = {"l1": params.l1, "l2": params.l2}
    if params.prune:
        model = prune(model, x, y, ctx.info, sparsity=params.prune, epochs=params.prune_epochs,
                      learning_rate=params.learning_rate, probabilities=probabilities, seed=ctx.seed)
        figures.update({"target_sparsity": params.prune, "keras_sparsity": kernel_sparsity(model)})
    data = convert(model, params.quantize, representative=ctx.representative)
    if ctx.baseline:
        figures["weight_abs_mean_before"] = mean_abs_weight(ctx.baseline)
    figures["weight_abs_mean_after"] = mean_abs_weight(data)
    return Built(data, figures=figures)
