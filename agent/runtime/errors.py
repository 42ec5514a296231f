"""Errors of the inference runtime, each naming what was wrong so the agent can report it as is."""

from __future__ import annotations


class RuntimeUnavailable(RuntimeError):
    """No LiteRT / TFLite interpreter can be imported on this device."""


class ModelLoadError(RuntimeError):
    """The runtime refused the model (not a .tflite file, an op it does not know, a missing delegate)."""


class InvalidInput(ValueError):
    """A Predict request does not match the model: unknown or missing tensor, wrong shape or dtype."""


class ProfilingFailed(RuntimeError):
    """A profiling child process crashed or ran out of time (the model may have brought it down)."""
