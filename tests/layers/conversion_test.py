"""The layers convert to TFLite builtins (no Flex, no custom ops) and to ONNX, exactly.

The `"arithmetic"` formulation (the float TFLite files) must use only the ops that the
web GPU delegate was seen to run (issue 21's single-op probes in MediaPipe web), with
no bool tensor and no op taking one tensor twice (a self-concatenation becomes a COPY
node the WebGL backend lacks). The browser test (tests/export/web_gpu_delegate_test.py)
checks the same on the real delegate.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf
from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

from keras_deconvnet.layers import MaxPoolWithArgmax, Unpool, switch_formulation

# What MediaPipe web's GPU delegate ran in the probes (plus ADD, MAX_POOL_2D and
# CONCATENATION of distinct tensors, which every model file has and the browser test
# sees on the GPU).
WEB_GPU_OPS = {
    "CONV_2D", "SOFTMAX", "FULLY_CONNECTED", "RESHAPE", "SPACE_TO_DEPTH", "DEPTH_TO_SPACE",
    "SPLIT", "MAXIMUM", "MINIMUM", "SUB", "MUL", "ADD", "STRIDED_SLICE", "TILE",
    "RESIZE_NEAREST_NEIGHBOR", "CONCATENATION", "MAX_POOL_2D",
}


def _model(height, width):
    inputs = keras.Input((height, width, 3), batch_size=2)
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(inputs)
    pooled, switches = MaxPoolWithArgmax()(x)
    pooled2, switches2 = MaxPoolWithArgmax()(pooled)
    y = Unpool()(keras.layers.Conv2D(8, 1)(pooled2), switches2)
    y = Unpool()(y, switches)
    return keras.Model(inputs, keras.layers.Conv2D(4, 1)(y))


def _convert(model, shape, formulation):
    with switch_formulation(formulation):
        fn = tf.function(lambda x: model(x, training=False))
        concrete = fn.get_concrete_function(tf.TensorSpec(shape, tf.float32))
    frozen = convert_variables_to_constants_v2(concrete)
    converter = tf.lite.TFLiteConverter.from_concrete_functions([frozen])
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    return converter.convert()


def _run(flatbuffer, x):
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=flatbuffer)
    ops = interpreter._get_ops_details()  # before XNNPACK replaces them
    interpreter.allocate_tensors()
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x)
    interpreter.invoke()
    return ops, interpreter, interpreter.get_tensor(interpreter.get_output_details()[0]["index"])


@pytest.mark.parametrize("formulation", ["exact", "arithmetic"])
@pytest.mark.parametrize("size", [(16, 12), (13, 11)])
def test_tflite_builtins_only_and_exact(size, formulation):
    model = _model(*size)
    shape = (2, *size, 3)
    # ReLU zeros make ties in every pooling window: the hard case.
    x = np.random.default_rng(0).normal(size=shape).astype("float32")
    details, interpreter, tflite = _run(_convert(model, shape, formulation), x)
    ops = [op["op_name"] for op in details]
    assert not any("ARGMAX" in op or "SCATTER" in op or op.startswith("Flex") for op in ops)
    if formulation == "arithmetic":
        assert set(ops) <= WEB_GPU_OPS, f"ops outside the web GPU set: {set(ops) - WEB_GPU_OPS}"
        dtypes = {t["dtype"] for t in interpreter.get_tensor_details()}
        assert np.bool_ not in dtypes
        for op in details:
            inputs = [i for i in op["inputs"] if i >= 0]
            assert len(inputs) == len(set(inputs)), f"{op['op_name']} takes a tensor twice"
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
