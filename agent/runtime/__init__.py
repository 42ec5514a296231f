"""Inference runtime of the agent: which interpreter and delegate run a model here, and the model itself.

Plugins (one module each, keyed): cpu (LiteRT + XNNPACK), edgetpu (libedgetpu delegate), gpu (TFLite
GPU delegate). `select_backend` picks one and says why not another; `LoadedModel` runs the model;
`profiling.profile` benchmarks a candidate in a child process.
Nothing here imports a runtime until a backend is selected.
"""

from __future__ import annotations

from agent.runtime.backend import Backend, BackendUnavailable
from agent.runtime.errors import InvalidInput, ModelLoadError, ProfilingFailed, RuntimeUnavailable
from agent.runtime.loader import interpreter_class, load_delegate
from agent.runtime.model import LoadedModel
from agent.runtime.plugins import PLUGINS, select_backend
from agent.runtime.tensors import tensor_specs

__all__ = [
    "PLUGINS",
    "Backend",
    "BackendUnavailable",
    "InvalidInput",
    "LoadedModel",
    "ModelLoadError",
    "ProfilingFailed",
    "RuntimeUnavailable",
    "interpreter_class",
    "load_delegate",
    "select_backend",
    "tensor_specs",
]
