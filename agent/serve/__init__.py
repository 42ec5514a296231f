"""The local inference API: apps on the device call `edgefleet.v1.Inference` over a unix socket.

    host = ModelHost()
    host.load(path, manifest)                      # or host.activate(loaded_model, manifest=...)
    server = InferenceServer(socket_path, host, observer=collector)
    server.start()

Concurrency: one interpreter per model, serialized (LoadedModel holds a lock around set-inputs /
invoke / get-outputs). A LiteRT interpreter is not thread-safe, and on a device with a few cores
XNNPACK's own threads (num_threads) already use them for one inference; a pool of interpreters would
multiply the model's memory for little gain. What runs in parallel is the rest of a request: decoding
tensors, quantizing, summarizing, encoding. Requests beyond the one running wait for the interpreter
in a bounded line (`max_waiting`, default 8); one more gets RESOURCE_EXHAUSTED at once.

Modules: host (the served model and its atomic swap), admission (the bounded line), recent (the last
predictions, for Feedback), wire (Tensor <-> numpy), servicer (the RPCs), server (socket and gRPC),
fast (the framed unix socket), regions (a fast connection's shared-memory regions),
service (LocalModelService: host + server + telemetry + trial, as the daemon wires them).
"""

from __future__ import annotations

from agent.serve.admission import Admission
from agent.serve.host import ModelHost, ModelKey, Predictor, ServedModel
from agent.serve.recent import Prediction, RecentPredictions
from agent.serve.server import InferenceServer, SocketInUse
from agent.serve.servicer import DEGRADED, NO_MODEL, SERVING, InferenceObserver, InferenceServicer

__all__ = [
    "DEGRADED",
    "NO_MODEL",
    "SERVING",
    "Admission",
    "InferenceObserver",
    "InferenceServer",
    "InferenceServicer",
    "ModelHost",
    "ModelKey",
    "Prediction",
    "Predictor",
    "RecentPredictions",
    "ServedModel",
    "SocketInUse",
]
