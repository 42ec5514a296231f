"""Model optimization: build variants of an uploaded model and measure each one on its `.tflite` artifact.

The coordinator runs this package in a separate process (`python -m coordinator.optimize.worker`) so that
TensorFlow never loads into the service. Modules that need TensorFlow import it themselves; `data`,
`results`, `recipes`, `graph`, `measure` and `plot` do not.
"""
from __future__ import annotations

import os

# tensorflow-model-optimization works only with tf-keras (Keras 2). The variable must be set before the
# first `import tensorflow` anywhere in the process, and importing tfmot would set it anyway.
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
# TensorFlow's C++ INFO/WARNING lines are noise in worker logs; errors still show.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
