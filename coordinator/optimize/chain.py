"""Linear layer chains: the model shapes structured pruning and feature reduction know how to rebuild."""
from __future__ import annotations

from typing import Any

import tf_keras

from coordinator.optimize.errors import TechniqueSkipped

L = tf_keras.layers
# Layers without weights whose output channels are their input channels: a channel subset passes through.
PASS_THROUGH = (
    L.Dropout, L.SpatialDropout1D, L.SpatialDropout2D, L.GaussianNoise, L.GaussianDropout, L.Activation,
    L.ReLU, L.LeakyReLU, L.ELU, L.Softmax, L.MaxPooling1D, L.MaxPooling2D, L.AveragePooling1D,
    L.AveragePooling2D, L.GlobalAveragePooling1D, L.GlobalAveragePooling2D, L.GlobalMaxPooling1D,
    L.GlobalMaxPooling2D, L.ZeroPadding2D,
)


def chain_layers(model: Any, technique: str) -> list[Any]:
    """The model's layers in order (without the InputLayer) when each feeds only the next; else skip."""
    layers = [layer for layer in model.layers if not isinstance(layer, L.InputLayer)]
    if isinstance(model, tf_keras.Sequential):
        return layers
    if not isinstance(model, tf_keras.Model) or not hasattr(model, "_is_graph_network") or not model._is_graph_network:
        raise TechniqueSkipped(f"{technique} needs a Sequential or functional model")
    previous = model.inputs[0]
    for layer in layers:
        inbound = layer.input
        if isinstance(inbound, (list, tuple)) or inbound is not previous or len(layer._inbound_nodes) != 1:
            raise TechniqueSkipped(
                f"{technique} handles chains of layers only; layer {layer.name!r} has branches or several inputs"
            )
        previous = layer.output
    return layers


def sequential(input_shape: tuple[Any, ...], dtype: str, layers: list[Any], weights: list[list[Any]], name: str) -> Any:
    """A Sequential of fresh layers with the given weights."""
    model = tf_keras.Sequential([tf_keras.Input(shape=tuple(input_shape), dtype=dtype), *layers], name=name)
    for layer, w in zip(layers, weights):
        if w:
            layer.set_weights(w)
    return model


def fresh(layer: Any, **changes: Any) -> Any:
    """A new layer of the same kind with its config changed."""
    config = layer.get_config()
    config.update(changes)
    return type(layer).from_config(config)
