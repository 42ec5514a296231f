"""convert() never produces a file whose weights live in uninitialized resource variables."""
from __future__ import annotations

import numpy as np

import coordinator.optimize  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow loads)
from coordinator.optimize.conversion import VARIABLE_OPS, convert
from coordinator.optimize.graph import Graph


def test_a_keras3_model_converted_directly_keeps_its_weights():
    # from_concrete_functions on a Keras 3 model gives VAR_HANDLE / READ_VARIABLE ops and no weights
    # in the file (the interpreter then computes on whatever its arena holds); convert() freezes them.
    import keras
    from ai_edge_litert.interpreter import Interpreter

    rng = np.random.default_rng(0)
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(4)])
    x = rng.normal(size=(1, 8)).astype(np.float32)
    data = convert(model)
    assert not set(Graph(data).op_names()) & set(VARIABLE_OPS)
    interpreter = Interpreter(model_content=data)
    interpreter.allocate_tensors()
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x)
    interpreter.invoke()
    got = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
    np.testing.assert_allclose(got, np.asarray(model(x)), rtol=1e-5, atol=1e-5)
