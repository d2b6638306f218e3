import keras
import numpy as np
import pytest
import tensorflow as tf
from layer_harness import assert_config_round_trip

from keras_deconvnet.layers import FullyConnectedConv2D, FullyConnectedConv2DTranspose


def _copy_weights(source, target, x):
    source(x)
    target(x)
    target.set_weights(source.get_weights())


@pytest.mark.parametrize("kernel, size, padding", [(7, 7, "valid"), (1, 1, "same"),
                                                   (3, 3, "valid")])
def test_matmul_path_equals_the_convolution(kernel, size, padding):
    x = np.random.default_rng(0).normal(size=(3, size, size, 16)).astype("float32")
    conv = keras.layers.Conv2D(8, kernel, padding=padding, activation="relu")
    fc = FullyConnectedConv2D(8, kernel, padding=padding, activation="relu")
    _copy_weights(conv, fc, x)
    assert fc._as_matmul(tf.constant(x))
    np.testing.assert_allclose(fc(x), conv(x), rtol=1e-5, atol=1e-5)


def test_larger_inputs_fall_back_to_the_convolution():
    x = np.random.default_rng(0).normal(size=(2, 9, 8, 4)).astype("float32")
    conv = keras.layers.Conv2D(5, 7, padding="valid")
    fc = FullyConnectedConv2D(5, 7, padding="valid")
    _copy_weights(conv, fc, x)
    assert not fc._as_matmul(tf.constant(x))
    np.testing.assert_allclose(fc(x), conv(x), rtol=1e-6)


def test_transpose_matmul_path_equals_the_transposed_convolution():
    x = np.random.default_rng(0).normal(size=(3, 1, 1, 16)).astype("float32")
    deconv = keras.layers.Conv2DTranspose(6, 7, padding="valid")
    fc = FullyConnectedConv2DTranspose(6, 7, padding="valid")
    _copy_weights(deconv, fc, x)
    assert fc._as_matmul(tf.constant(x))
    np.testing.assert_allclose(fc(x), deconv(x), rtol=1e-5, atol=1e-5)
    wide = np.random.default_rng(1).normal(size=(1, 3, 3, 16)).astype("float32")
    # A wider input is the padded convolution with the flipped kernel (no TRANSPOSE_CONV).
    assert not fc._as_matmul(tf.constant(wide)) and fc._as_convolution(tf.constant(wide))
    np.testing.assert_allclose(fc(wide), deconv(wide), rtol=1e-5, atol=1e-5)


def test_transpose_convolution_path_converts_without_transpose_conv():
    from keras_deconvnet.export import tflite_ops

    x = np.random.default_rng(0).normal(size=(1, 2, 2, 8)).astype("float32")
    fc = FullyConnectedConv2DTranspose(4, 3, padding="valid", activation="relu")
    fc(x)
    function = tf.function(fc, input_signature=[tf.TensorSpec((1, 2, 2, 8), tf.float32)])
    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [function.get_concrete_function()], fc
    )
    ops = tflite_ops(converter.convert())
    assert "TRANSPOSE_CONV" not in ops and "CONV_2D" in ops


def test_gradients_equal_the_convolution():
    x = tf.constant(np.random.default_rng(0).normal(size=(2, 7, 7, 4)), tf.float32)
    conv = keras.layers.Conv2D(3, 7, padding="valid")
    fc = FullyConnectedConv2D(3, 7, padding="valid")
    _copy_weights(conv, fc, x)
    grads = []
    for layer in (conv, fc):
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_sum(tf.square(layer(x)))
        grads.append(tape.gradient(loss, [x, *layer.trainable_weights]))
    for a, b in zip(*grads):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


def test_config_round_trip():
    assert_config_round_trip(FullyConnectedConv2D(4, 7, padding="valid", name="fc6"))
    assert_config_round_trip(FullyConnectedConv2DTranspose(4, 7, name="deconv_fc6"))
