"""Weight clustering (tfmot): every kernel shares `clusters` values, then quantize.

Fewer distinct values compress well (gzip) and, after per-channel int8 quantization, each output channel
holds at most `clusters` distinct int8 values.
"""
from __future__ import annotations

import tensorflow_model_optimization as tfmot

from coordinator.optimize import finetune
from coordinator.optimize.build import BuildContext, Built
from coordinator.optimize.conversion import convert
from coordinator.optimize.graph import read_graph
from coordinator.optimize.recipes import ClusteringParams


def build(ctx: BuildContext, params: ClusteringParams) -> Built:
    base = ctx.keras_model()
    x, y = finetune.train_arrays(ctx.data)
    probabilities = finetune.outputs_probabilities(base, x)
    clustered = tfmot.clustering.keras.cluster_weights(
        finetune.clone(base),
        number_of_clusters=params.clusters,
        cluster_centroids_init=tfmot.clustering.keras.CentroidInitialization.KMEANS_PLUS_PLUS,
    )
    finetune.compile_for(clustered, ctx.info, params.learning_rate, probabilities)
    finetune.fit(clustered, x, y, epochs=params.epochs, seed=ctx.seed)
    stripped = tfmot.clustering.keras.strip_clustering(clustered)
    data = convert(stripped, params.quantize, representative=ctx.representative)
    graph = read_graph(data)
    per_channel = [n for op, t in graph.weights() for n in graph.unique_weights_per_channel(op, t)]
    return Built(data, figures={"clusters": float(params.clusters), "max_unique_per_channel": float(max(per_channel, default=0))})
