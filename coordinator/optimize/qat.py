"""Quantization-aware training: tfmot `quantize_model`, a short fine-tune, then int8 conversion."""
from __future__ import annotations

import tensorflow_model_optimization as tfmot

from coordinator.optimize import finetune
from coordinator.optimize.build import BuildContext, Built
from coordinator.optimize.conversion import convert
from coordinator.optimize.recipes import QatParams


def build(ctx: BuildContext, params: QatParams) -> Built:
    base = ctx.keras_model()
    x, y = finetune.train_arrays(ctx.data)
    probabilities = finetune.outputs_probabilities(base, x)
    model = tfmot.quantization.keras.quantize_model(finetune.clone(base))
    finetune.compile_for(model, ctx.info, params.learning_rate, probabilities)
    finetune.fit(model, x, y, epochs=params.epochs, seed=ctx.seed)
    return Built(convert(model, "int8", representative=ctx.representative))
