"""The layers convert to TFLite builtins (no Flex, no custom ops) and to ONNX, exactly."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

from keras_deconvnet.layers import MaxPoolWithArgmax, Unpool

# What the TFLite GPU delegate parses (LiteRT model_builder.cc) among what we emit.
GPU_OPS = {
    "CAST", "CONCATENATION", "CONV_2D", "DEPTH_TO_SPACE", "EQUAL", "MAXIMUM", "MUL",
    "SPACE_TO_DEPTH", "SPLIT", "STRIDED_SLICE", "SUB", "ADD", "RELU", "SLICE", "PAD",
    "MAX_POOL_2D", "GREATER", "SELECT_V2", "MINIMUM",
}


def _model(height, width):
    inputs = keras.Input((height, width, 3), batch_size=2)
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(inputs)
    pooled, switches = MaxPoolWithArgmax()(x)
    pooled2, switches2 = MaxPoolWithArgmax()(pooled)
    y = Unpool()(keras.layers.Conv2D(8, 1)(pooled2), switches2)
    y = Unpool()(y, switches)
    return keras.Model(inputs, keras.layers.Conv2D(4, 1)(y))


def _frozen(model, shape):
    fn = tf.function(lambda x: model(x, training=False))
    return convert_variables_to_constants_v2(
        fn.get_concrete_function(tf.TensorSpec(shape, tf.float32))
    )


@pytest.mark.parametrize("size", [(16, 12), (13, 11)])
def test_tflite_builtins_only_and_exact(size):
    from ai_edge_litert.interpreter import Interpreter

    model = _model(*size)
    shape = (2, *size, 3)
    # ReLU zeros make ties in every pooling window: the hard case.
    x = np.random.default_rng(0).normal(size=shape).astype("float32")
    converter = tf.lite.TFLiteConverter.from_concrete_functions([_frozen(model, shape)])
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    flatbuffer = converter.convert()

    interpreter = Interpreter(model_content=flatbuffer)
    ops = {op["op_name"] for op in interpreter._get_ops_details()}
    assert ops <= GPU_OPS, f"ops outside the GPU delegate's set: {ops - GPU_OPS}"
    assert not any("ARGMAX" in op or "SCATTER" in op or op.startswith("Flex") for op in ops)

    interpreter.allocate_tensors()
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x)
    interpreter.invoke()
    tflite = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
    np.testing.assert_allclose(tflite, model.predict(x, verbose=0), rtol=1e-5, atol=1e-5)


def test_onnx_exact():
    import onnxruntime
    import tf2onnx

    model = _model(13, 11)
    shape = (2, 13, 11, 3)
    x = np.random.default_rng(0).normal(size=shape).astype("float32")
    proto, _ = tf2onnx.convert.from_function(
        tf.function(lambda images: model(images, training=False)),
        input_signature=[tf.TensorSpec(shape, tf.float32, name="images")],
        opset=17,
    )
    ops = {node.op_type for node in proto.graph.node}
    assert "ScatterND" not in ops
    session = onnxruntime.InferenceSession(
        proto.SerializeToString(), providers=["CPUExecutionProvider"]
    )
    (onnx_out,) = session.run(None, {session.get_inputs()[0].name: x})
    np.testing.assert_allclose(onnx_out, model.predict(x, verbose=0), rtol=1e-5, atol=1e-5)
