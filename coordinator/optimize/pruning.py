"""Magnitude pruning (tfmot `prune_low_magnitude`) to a target sparsity, `strip_pruning`, then quantize.

tfmot's PolynomialDecay updates masks every `frequency` steps (default 100): a short fine-tune could end
before the first update. The schedule here ramps to the target over the first 60 % of the fine-tune
with an update every tenth of the ramp, and ends exactly on an update step, so the target is reached and
the remaining steps recover accuracy with the final mask.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow_model_optimization as tfmot

from coordinator.optimize import finetune
from coordinator.optimize.build import BuildContext, Built
from coordinator.optimize.conversion import convert
from coordinator.optimize.data import TaskInfo
from coordinator.optimize.recipes import PruningParams


def schedule(target: float, total_steps: int) -> tfmot.sparsity.keras.PolynomialDecay:
    ramp = max(1, int(total_steps * 0.6))
    frequency = max(1, ramp // 10)
    end_step = frequency * max(1, ramp // frequency)
    return tfmot.sparsity.keras.PolynomialDecay(
        initial_sparsity=0.0, final_sparsity=target, begin_step=0, end_step=end_step, frequency=frequency
    )


def prune(model: Any, x: np.ndarray, y: np.ndarray, info: TaskInfo, *, sparsity: float, epochs: int,
          learning_rate: float, probabilities: bool, seed: int = 0) -> Any:
    """Prune a copy of `model` to `sparsity` while fine-tuning; returns the stripped model."""
    total = finetune.steps_per_epoch(len(x)) * epochs
    wrapped = tfmot.sparsity.keras.prune_low_magnitude(finetune.clone(model), pruning_schedule=schedule(sparsity, total))
    finetune.compile_for(wrapped, info, learning_rate, probabilities)
    finetune.fit(wrapped, x, y, epochs=epochs, seed=seed, callbacks=[tfmot.sparsity.keras.UpdatePruningStep()])
    return tfmot.sparsity.keras.strip_pruning(wrapped)


def kernel_sparsity(model: Any) -> float:
    kernels = [w.numpy() for layer in model.layers for w in layer.weights if "kernel" in w.name]
    total = sum(k.size for k in kernels)
    return sum(int(np.count_nonzero(k == 0)) for k in kernels) / total if total else 0.0


def build(ctx: BuildContext, params: PruningParams) -> Built:
    base = ctx.keras_model()
    x, y = finetune.train_arrays(ctx.data)
    pruned = prune(base, x, y, ctx.info, sparsity=params.sparsity, epochs=params.epochs,
                   learning_rate=params.learning_rate, probabilities=finetune.outputs_probabilities(base, x), seed=ctx.seed)
    return Built(
        convert(pruned, params.quantize, representative=ctx.representative),
        figures={"target_sparsity": params.sparsity, "keras_sparsity": kernel_sparsity(pruned)},
    )
