"""`integer_switches`: the int8-friendly switch formulation the TFLite int8 export traces.

On values on an int8 grid (whole quantization steps apart, ties everywhere) it must give
exactly the switches of the exact layers (and so of `tf.nn.max_pool_with_argmax`), and
its int8 TFLite conversion must be integer-only and run as one XNNPACK partition.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf
from argmax_reference import reference_pool, reference_unpool

from keras_deconvnet.layers import MaxPoolWithArgmax, Unpool, integer_switches
from keras_deconvnet.layers.formulations import integer_switches_enabled

# Ops the integer formulation may use: all run by the int8 kernels, XNNPACK's int8
# delegate and the GPU delegate.
INTEGER_FRIENDLY_OPS = {
    "MAX_POOL_2D", "SPACE_TO_DEPTH", "SPLIT", "STRIDED_SLICE", "SUB", "MUL",
    "CONCATENATION", "DEPTH_TO_SPACE", "PAD", "CONV_2D",
}


def _grid_values(shape, scale, seed=0, low=-128, high=128):
    """Values on an int8 grid: `scale * integer`, with many ties (ReLU zeros too)."""
    rng = np.random.default_rng(seed)
    steps = rng.integers(low, high, shape)
    steps[rng.random(shape) < 0.3] = 0
    return (steps * scale).astype("float32")


@pytest.mark.parametrize("scale", [1.0, 0.05, 1 / 1024])
@pytest.mark.parametrize("size, padding", [((8, 6), "same"), ((7, 9), "same"), ((7, 9), "valid")])
def test_switches_equal_the_exact_layers_on_an_int8_grid(scale, size, padding):
    x = _grid_values((2, *size, 3), scale, low=-3, high=4)  # small range: many ties
    pooled, exact = MaxPoolWithArgmax(padding=padding)(x)
    with integer_switches():
        pooled_int, switches = MaxPoolWithArgmax(padding=padding)(x)
    np.testing.assert_array_equal(pooled_int, pooled)
    np.testing.assert_array_equal(switches, exact)
    values = _grid_values(pooled.shape, 0.5, seed=1)
    with integer_switches():
        unpooled = Unpool()(values, switches)
    np.testing.assert_array_equal(unpooled, Unpool()(values, exact))


def test_switches_match_tf_argmax_with_pool_size_3():
    x = _grid_values((1, 9, 12, 2), 0.25, low=-2, high=3)
    with integer_switches():
        _, switches = MaxPoolWithArgmax(pool_size=3)(x)
    _, argmax = reference_pool(x, 3)
    assert int(np.sum(switches)) == argmax.numpy().size  # one switch per window
    np.testing.assert_array_equal(np.flatnonzero(switches), np.sort(argmax.numpy().ravel()))
    pooled = tf.nn.max_pool2d(x, 3, 3, "SAME")
    with integer_switches():
        unpooled = Unpool(3)(pooled, switches)
    np.testing.assert_array_equal(unpooled, reference_unpool(pooled, argmax, x.shape))


def test_the_context_is_scoped_and_float_stays_exact():
    assert not integer_switches_enabled()
    with integer_switches():
        assert integer_switches_enabled()
        with integer_switches(False):
            assert not integer_switches_enabled()
        assert integer_switches_enabled()
    assert not integer_switches_enabled()
    # Outside the block: values closer than 1/4096 are still told apart.
    x = np.array([[1.0, 1.0 + 1e-6], [0.0, 0.0]], "float32").reshape(1, 2, 2, 1)
    _, switches = MaxPoolWithArgmax()(x)
    assert switches[0, :, :, 0].numpy().tolist() == [[0.0, 1.0], [0.0, 0.0]]


def _int8_file(trace_integer: bool):
    inputs = keras.Input((16, 12, 3), batch_size=1)
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(inputs)
    pooled, switches = MaxPoolWithArgmax()(x)
    y = keras.layers.Conv2D(8, 1, activation="relu")(pooled)
    model = keras.Model(inputs, Unpool()(y, switches))
    rng = np.random.default_rng(0)
    with integer_switches(trace_integer):
        concrete = tf.function(
            lambda images: model(images, training=False),
            input_signature=[tf.TensorSpec((1, 16, 12, 3), tf.float32)],
        ).get_concrete_function()
    # Tracking the tf.Variables (not the Keras ones) lets the converter freeze them.
    holder = tf.Module()
    holder.variables_ = [v.value for v in model.variables]
    converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete], holder)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = converter.inference_output_type = tf.int8
    converter.representative_dataset = lambda: (
        [rng.normal(size=(1, 16, 12, 3)).astype("float32")] for _ in range(8)
    )
    return model, converter.convert()


def test_int8_file_is_integer_only_and_one_xnnpack_partition():
    from ai_edge_litert.interpreter import Interpreter

    model, flatbuffer = _int8_file(trace_integer=True)
    interpreter = Interpreter(model_content=flatbuffer, num_threads=1)
    tensors = interpreter.get_tensor_details()
    ops = {op["op_name"] for op in interpreter._get_ops_details()}
    assert ops <= INTEGER_FRIENDLY_OPS, ops - INTEGER_FRIENDLY_OPS
    assert all(t["dtype"] in (np.int8, np.int32) for t in tensors)  # int32: biases, axes
    interpreter.allocate_tensors()
    # XNNPACK took every op: one delegate node replaces the whole graph.
    executed = [op["op_name"] for op in interpreter._get_ops_details()]
    assert executed.count("DELEGATE") == 1
    _, exact_flatbuffer = _int8_file(trace_integer=False)
    exact = Interpreter(model_content=exact_flatbuffer)
    exact.allocate_tensors()
    assert [op["op_name"] for op in exact._get_ops_details()].count("DELEGATE") > 1

    # The int8 file unpools exactly where the float layers do on its own int8 input.
    source, target = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    scale, zero_point = source["quantization"]
    steps = np.random.default_rng(3).integers(-128, 128, (1, 16, 12, 3)).astype(np.int8)
    interpreter.set_tensor(source["index"], steps)
    interpreter.invoke()
    out_scale, out_zero = target["quantization"]
    result = (interpreter.get_tensor(target["index"]).astype("float32") - out_zero) * out_scale
    # Every 2x2 window holds at most one non-zero value, at a switch (zeros elsewhere).
    windows = tf.nn.space_to_depth(tf.cast(result != 0, tf.float32), 2).numpy()
    windows = windows.reshape(*windows.shape[:3], 4, 8).sum(axis=3)
    assert windows.max() <= 1 and result.any()
    expected = model((steps.astype("float32") - zero_point) * scale).numpy()
    agree = np.mean((result != 0) == (expected != 0))
    assert agree > 0.97, agree  # switches flip only where int8 conv rounding ties
