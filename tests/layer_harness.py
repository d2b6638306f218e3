"""One harness for our layers, after keras's `run_layer_test`: config round trip,
symbolic and eager calls, a one-step fit with gradients, `.keras` saving, XLA and
mixed precision. Each layer test file calls it with its own model-building function.
"""

from __future__ import annotations

import os
import tempfile

import keras
import numpy as np
import tensorflow as tf


def assert_config_round_trip(layer: keras.layers.Layer) -> None:
    config = layer.get_config()
    clone = layer.__class__.from_config(config)
    assert clone.get_config() == config
    # Also through Keras's registry, as `load_model` does (no custom_objects).
    revived = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert type(revived) is type(layer)
    assert revived.get_config() == config


def run_model_checks(build, inputs: list[np.ndarray]) -> None:
    """`build(dtype=None)` returns a functional model around the layers under test.

    Checks: symbolic shapes equal eager shapes, one SGD step changes the weights and
    every trainable weight gets a gradient, `.keras` round trip without
    custom_objects gives identical outputs, XLA (`jit_compile`) gives identical
    outputs, and mixed precision computes in float16/bfloat16.
    """
    inputs = inputs[0] if len(inputs) == 1 else inputs
    model = build()
    eager = model(inputs)
    eager = eager if isinstance(eager, (list, tuple)) else [eager]
    symbolic = model.outputs
    for s, e in zip(symbolic, eager):
        # Every known symbolic dimension must equal the eager one; None matches any.
        assert len(s.shape) == len(e.shape)
        for symbolic_dim, eager_dim in zip(s.shape[1:], e.shape[1:]):
            assert symbolic_dim is None or symbolic_dim == eager_dim, (s.shape, e.shape)

    # Gradients reach every trainable weight.
    with tf.GradientTape() as tape:
        outputs = model(inputs, training=True)
        outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
        loss = sum(tf.reduce_sum(tf.square(o)) for o in outputs)
    grads = tape.gradient(loss, model.trainable_weights)
    assert model.trainable_weights, "the harness model must have trainable weights"
    for weight, grad in zip(model.trainable_weights, grads):
        assert grad is not None, f"no gradient for {weight.path}"
        assert np.all(np.isfinite(grad.numpy()))

    # A one-step fit runs and changes the weights.
    before = [w.numpy().copy() for w in model.trainable_weights]
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    targets = [np.ones_like(np.asarray(e)) for e in eager]
    model.fit(inputs, targets if len(targets) > 1 else targets[0], epochs=1, verbose=0)
    after = [w.numpy() for w in model.trainable_weights]
    assert any(not np.array_equal(b, a) for b, a in zip(before, after))

    # `.keras` round trip with no custom_objects argument.
    reference = [np.asarray(o) for o in _as_list(model.predict(inputs, verbose=0))]
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "model.keras")
        model.save(path)
        loaded = keras.saving.load_model(path)
    for r, o in zip(reference, _as_list(loaded.predict(inputs, verbose=0))):
        np.testing.assert_array_equal(r, o)

    # XLA compiles the layers (tf.nn.max_pool_with_argmax has no XLA CPU kernel).
    xla = tf.function(lambda x: model(x), jit_compile=True)
    for r, o in zip(reference, _as_list(xla(inputs))):
        np.testing.assert_allclose(r, np.asarray(o), rtol=1e-5, atol=1e-5)

    # Mixed precision: computes in the policy's dtype.
    for policy in ("mixed_float16", "mixed_bfloat16"):
        keras.config.set_dtype_policy(policy)
        try:
            mixed = build()
            for o in _as_list(mixed(inputs)):
                assert o.dtype.name in (policy.split("_")[1], "float32")
            assert any(
                layer.compute_dtype == policy.split("_")[1] for layer in mixed.layers[1:]
            )
        finally:
            keras.config.set_dtype_policy("float32")


def _as_list(x):
    return list(x) if isinstance(x, (list, tuple)) else [x]
