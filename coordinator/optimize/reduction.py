"""Dimensionality reduction for tabular (1-D feature vector) inputs.

PCA: a frozen Dense projection onto the principal components is baked into the model, and the first
Dense layer is re-expressed on the components (W' = C·W, b' = b + mean·W), so the model starts as the
original on the projected data and is then fine-tuned. RFE: scikit-learn recursive feature elimination
(logistic regression or ridge on standardized features) picks the features to keep; the first Dense
layer keeps their rows only, and the variant records `input_features` so a device computes and sends
only those.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import tf_keras
from sklearn.decomposition import PCA
from sklearn.feature_selection import RFE
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.preprocessing import StandardScaler

from coordinator.optimize import finetune
from coordinator.optimize.build import BuildContext, Built
from coordinator.optimize.chain import PASS_THROUGH, chain_layers, fresh, sequential
from coordinator.optimize.conversion import convert
from coordinator.optimize.errors import TechniqueSkipped
from coordinator.optimize.recipes import PcaParams, RfeParams, rfe_count

L = tf_keras.layers


def _split(ctx: BuildContext, technique: str) -> tuple[Any, Any, list[Any]]:
    """(model, first Dense layer, layers after it) for a tabular model that starts with a Dense layer."""
    if not ctx.data.is_tabular:
        raise TechniqueSkipped(f"{technique} applies to 1-D feature-vector inputs; this input has shape {ctx.data.x_val.shape[1:]}")
    model = ctx.keras_model()
    ctx.require_train()
    layers = chain_layers(model, technique)
    for i, layer in enumerate(layers):
        if type(layer) is L.Dense:
            if any(not isinstance(p, PASS_THROUGH) or isinstance(p, L.Softmax) for p in layers[:i]):
                raise TechniqueSkipped(f"{technique}: only weightless layers may come before the first Dense layer")
            return model, layer, layers[i + 1 :]
    raise TechniqueSkipped(f"{technique} needs a model whose first weighted layer is Dense")


def _copy(layers: list[Any]) -> tuple[list[Any], list[list[Any]]]:
    return [fresh(layer) for layer in layers], [layer.get_weights() for layer in layers]


def _finish(ctx: BuildContext, model: Any, base: Any, x: np.ndarray, y: np.ndarray, epochs: int, lr: float,
            quantize: str, features: list[int] | None) -> bytes:
    finetune.compile_for(model, ctx.info, lr, finetune.outputs_probabilities(base, np.asarray(ctx.data.x_train)))
    finetune.fit(model, x, y, epochs=epochs, seed=ctx.seed)
    rows = ctx.representative if features is None else ctx.representative[:, features]
    return convert(model, quantize, representative=rows)


def build_pca(ctx: BuildContext, params: PcaParams) -> Built:
    base, first, rest = _split(ctx, "pca")
    x, y = finetune.train_arrays(ctx.data)
    n = x.shape[1]
    pca = PCA(n_components=params.components or params.variance, svd_solver="full", random_state=ctx.seed)
    pca.fit(x.astype(np.float64))
    k = int(pca.n_components_)
    c, mean = pca.components_, pca.mean_
    kernel, *bias = first.get_weights()
    projection = L.Dense(k, name="pca_projection", trainable=False)
    first_new = fresh(first)
    first_w = [(c @ kernel).astype(np.float32)]
    if bias:
        first_w.append((bias[0] + mean @ kernel).astype(np.float32))
    rest_layers, rest_w = _copy(rest)
    model = sequential((n,), "float32", [projection, first_new, *rest_layers],
                       [[c.T.astype(np.float32), (-mean @ c.T).astype(np.float32)], first_w, *rest_w], f"{base.name}_pca")
    data = _finish(ctx, model, base, x, y, params.epochs, params.learning_rate, params.quantize, None)
    return Built(data, figures={"n_components": float(k), "n_features": float(n),
                                "explained_variance": float(pca.explained_variance_ratio_.sum())})


def select_features(x: np.ndarray, y: np.ndarray, task: str, keep: int, seed: int = 0) -> list[int]:
    xs = StandardScaler().fit_transform(x.astype(np.float64))
    estimator = LogisticRegression(max_iter=2000, random_state=seed) if task == "classification" else Ridge(alpha=1.0)
    target = np.asarray(y)
    if task == "regression":
        target = target.reshape(len(target), -1)
        target = target[:, 0] if target.shape[1] == 1 else target
    step = 1 if x.shape[1] <= 64 else 0.05
    rfe = RFE(estimator, n_features_to_select=keep, step=step).fit(xs, target)
    return [int(i) for i in np.flatnonzero(rfe.support_)]


def build_rfe(ctx: BuildContext, params: RfeParams) -> Built:
    base, first, rest = _split(ctx, "rfe")
    x, y = finetune.train_arrays(ctx.data)
    n = x.shape[1]
    features = select_features(x, y, ctx.info.task, rfe_count(params.features, n), ctx.seed)
    kernel, *bias = first.get_weights()
    rest_layers, rest_w = _copy(rest)
    model = sequential((len(features),), "float32", [fresh(first), *rest_layers],
                       [[kernel[features], *bias], *rest_w], f"{base.name}_rfe")
    data = _finish(ctx, model, base, x[:, features], y, params.epochs, params.learning_rate, params.quantize, features)
    return Built(data, figures={"n_features": float(len(features)), "n_features_before": float(n)}, input_features=features)
