"""Errors of the optimizer: bad input (the upload is rejected) versus a technique that does not apply."""
from __future__ import annotations


class OptimizeInputError(Exception):
    """The upload cannot be optimized; the message says what is wrong with it."""


class DataError(OptimizeInputError):
    """The `.npz` data is missing arrays, has the wrong shapes, bad labels or non-finite values."""


class ModelError(OptimizeInputError):
    """The model file is not a model, is too large, or needs ops the device runtime does not have."""


class RecipeError(OptimizeInputError):
    """The recipe or the tuning spec names an unknown technique or holds invalid parameters."""


class TechniqueSkipped(Exception):
    """A technique does not apply to this model or data; the message is the reason shown on its row."""
