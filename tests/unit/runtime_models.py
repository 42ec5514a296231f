"""Build the tiny .tflite models the runtime tests use: `python runtime_models.py OUTDIR`.

Run in a subprocess so the test process never imports TensorFlow (the agent must work without it), and
cached by the tests under the pytest cache, keyed by this file's content. Plain tf.Module +
TFLiteConverter.from_concrete_functions: no Keras. The weights go to reference.npz so the tests compute
expected outputs with numpy.

  float32.tflite     features [?, 4] float32 -> logits [?, 3] = features @ w + b
  int8.tflite        same function, full int8: features [1, 4] int8 -> logits [1, 3] int8
  two_inputs.tflite  a [?, 3], b [?, 2] -> total [?, 1] = sum(a) + 2 sum(b), joined [?, 5] = concat(a, b)
  custom_op.tflite   tf.math.bessel_i0e kept as a custom op no runtime here resolves
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402


def build(out: Path) -> None:
    import tensorflow as tf

    rng = np.random.default_rng(7)
    w = rng.normal(size=(4, 3)).astype(np.float32)
    b = rng.normal(scale=0.5, size=3).astype(np.float32)
    np.savez(out / "reference.npz", w=w, b=b)

    class Linear(tf.Module):
        def __init__(self, batch: int | None) -> None:
            super().__init__()
            self.w, self.b = tf.constant(w), tf.constant(b)
            self.f = tf.function(self._f, input_signature=[tf.TensorSpec([batch, 4], tf.float32, name="features")])

        def _f(self, features: tf.Tensor) -> dict[str, tf.Tensor]:
            return {"logits": tf.matmul(features, self.w) + self.b}

    def convert(module: tf.Module, setup=None) -> bytes:
        converter = tf.lite.TFLiteConverter.from_concrete_functions([module.f.get_concrete_function()], module)
        if setup is not None:
            setup(converter)
        return converter.convert()

    (out / "float32.tflite").write_bytes(convert(Linear(None)))

    def full_int8(converter: tf.lite.TFLiteConverter) -> None:
        def representative():
            for _ in range(200):
                yield [rng.uniform(-1.0, 1.0, size=(1, 4)).astype(np.float32)]

        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8

    (out / "int8.tflite").write_bytes(convert(Linear(1), full_int8))

    class TwoInputs(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.float32, name="a"),
                                      tf.TensorSpec([None, 2], tf.float32, name="b")])
        def f(self, a: tf.Tensor, b: tf.Tensor) -> dict[str, tf.Tensor]:
            total = tf.reduce_sum(a, axis=1, keepdims=True) + 2.0 * tf.reduce_sum(b, axis=1, keepdims=True)
            return {"total": total, "joined": tf.concat([a, b], axis=1)}

    (out / "two_inputs.tflite").write_bytes(convert(TwoInputs()))

    class CustomOp(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([1, 4], tf.float32, name="x")])
        def f(self, x: tf.Tensor) -> tf.Tensor:
            return tf.math.bessel_i0e(x)

    def allow_custom(converter: tf.lite.TFLiteConverter) -> None:
        converter.allow_custom_ops = True

    (out / "custom_op.tflite").write_bytes(convert(CustomOp(), allow_custom))


if __name__ == "__main__":
    target = Path(sys.argv[1])
    target.mkdir(parents=True, exist_ok=True)
    build(target)
    print("built", ", ".join(sorted(p.name for p in target.iterdir())))
