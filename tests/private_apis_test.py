"""Each private API the package relies on still exists and behaves as relied on
(`keras_deconvnet.private_apis`); an upgrade that moves one fails here, loudly."""

import keras
import numpy as np
import tensorflow as tf

from keras_deconvnet import private_apis


def test_fit_starts_at_the_initial_epoch():
    inputs = keras.Input((2,))
    model = keras.Model(inputs, keras.layers.Dense(1)(inputs))
    model.compile("sgd", "mse")
    private_apis.set_initial_epoch(model, 2)
    assert private_apis.initial_epoch(model) == 2
    history = model.fit(np.zeros((4, 2)), np.zeros((4, 1)), epochs=3, verbose=0)
    assert history.epoch == [2]  # epochs 0 and 1 were skipped, as on a resume
    private_apis.set_initial_epoch(model, None)
    assert model.fit(np.zeros((4, 2)), np.zeros((4, 1)), epochs=2, verbose=0).epoch == [0, 1]


def test_tflite_calibrate_and_quantize_steps():
    kernel = tf.constant(np.random.default_rng(0).normal(size=(3, 3, 3, 2)), tf.float32)
    fn = tf.function(lambda x: tf.nn.conv2d(x, kernel, 1, "SAME")).get_concrete_function(
        tf.TensorSpec((1, 4, 4, 3), tf.float32))
    float_model = tf.lite.TFLiteConverter.from_concrete_functions([fn], tf.Module()).convert()

    def samples():
        for _ in range(4):
            yield [np.random.default_rng(0).uniform(size=(1, 4, 4, 3)).astype("float32")]

    calibrated = private_apis.tflite_calibrator()(float_model).calibrate(samples)
    quantized = private_apis.tflite_mlir_quantize()(
        calibrated, input_data_type=tf.uint8, output_data_type=tf.uint8)
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=quantized)
    assert interpreter.get_input_details()[0]["dtype"] == np.uint8


def test_tf2onnx_patch_and_profiler_proto():
    private_apis.patch_tf2onnx()
    xspace = private_apis.xplane_pb2().XSpace()
    assert hasattr(xspace, "planes")
