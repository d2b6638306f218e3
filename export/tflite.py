"""TFLite export with builtin ops only, and the check that the GPU delegate can run it.

Flex (Select TF) ops and custom ops are never allowed: the TFLite GPU delegate, NNAPI
and most NPUs run neither, and Keras's own `model.export(format="litert")` lets Flex
ops in silently. Quantization modes: `float32`, `float16` (the GPU default),
`dynamic` (dynamic-range int8 weights, for CPUs) and `int8` (full integer, for CPUs
and NPUs; float input/output so a GPU can still run it through a dequantized view).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import tensorflow as tf
from tensorflow.python.framework.convert_to_constants import (
    convert_variables_to_constants_v2,
)

QUANTIZATIONS = ("float32", "float16", "dynamic", "int8")

# Builtin ops the TFLite GPU delegate parses, from LiteRT's
# tflite/delegates/gpu/common/model_builder.cc and
# tflite/tools/versioning/gpu_compatibility.cc (see README, "Edge GPU ops").
# QUANTIZE/DEQUANTIZE appear in int8 and float16 files; the delegate folds them when
# quantized models are enabled.
TFLITE_GPU_OPS = frozenset(
    {
        "ABS", "ADD", "AVERAGE_POOL_2D", "CAST", "CONCATENATION", "CONV_2D",
        "DEPTHWISE_CONV_2D", "DEPTH_TO_SPACE", "DEQUANTIZE", "DIV", "EQUAL", "GREATER",
        "GREATER_EQUAL", "HARD_SWISH", "LESS", "LESS_EQUAL", "LOGISTIC", "MAXIMUM",
        "MAX_POOL_2D", "MEAN", "MINIMUM", "MUL", "NOT_EQUAL", "PACK", "PAD", "PRELU",
        "QUANTIZE", "RELU", "RELU6", "RELU_N1_TO_1", "RESHAPE", "RESIZE_BILINEAR",
        "RESIZE_NEAREST_NEIGHBOR", "SLICE", "SOFTMAX", "SPACE_TO_DEPTH", "SPLIT",
        "STRIDED_SLICE", "SUB", "TANH", "TILE", "TRANSPOSE", "TRANSPOSE_CONV",
        "FULLY_CONNECTED", "ARG_MAX",
    }
) - {"ARG_MAX"}


def _converter_for(model, image_shape, batch_size):
    height, width, channels = image_shape
    spec = tf.TensorSpec([batch_size, height, width, channels], tf.float32, name="images")

    @tf.function(input_signature=[spec])
    def serve(images):
        return model(images, training=False)

    # Freeze the variables into constants: the converter would otherwise keep Keras 3
    # variables as resources (VAR_HANDLE/READ_VARIABLE ops) and not fold BatchNorm.
    frozen = convert_variables_to_constants_v2(serve.get_concrete_function())
    return tf.lite.TFLiteConverter.from_concrete_functions([frozen])


def convert_to_tflite(
    model,
    quantization: str = "float32",
    image_shape: tuple | None = None,
    batch_size: int = 1,
    representative_data: Callable[[], Iterable] | np.ndarray | None = None,
) -> bytes:
    """Converts a Keras model to a TFLite flatbuffer that uses builtin ops only.

    Args:
        model: a Keras model taking float images `(batch, height, width, channels)`.
        quantization: one of `"float32"`, `"float16"`, `"dynamic"`, `"int8"`.
        image_shape: `(height, width, channels)`; defaults to the model's input shape,
            which must then be fully known.
        batch_size: the fixed batch size of the file. Defaults to `1`.
        representative_data: for `"int8"`, an array of preprocessed images
            `(N, height, width, channels)` or a callable yielding such batches.

    Returns:
        The `.tflite` file's bytes.

    Example:

    >>> from keras_deconvnet.models import DeconvNet
    >>> model = DeconvNet.from_preset("deconvnet_edge_small", image_shape=(96, 96, 3))
    >>> flatbuffer = convert_to_tflite(model)
    >>> sorted(tflite_ops(flatbuffer))[:3]
    ['ADD', 'CAST', 'CONCATENATION']
    """
    if quantization not in QUANTIZATIONS:
        raise ValueError(
            f"`quantization` must be one of {QUANTIZATIONS}. "
            f"Received: quantization={quantization!r}"
        )
    image_shape = tuple(image_shape or model.input_shape[1:])
    if len(image_shape) != 3 or any(d is None for d in image_shape):
        raise ValueError(
            "TFLite export needs a fixed (height, width, channels); pass `image_shape`. "
            f"Received: image_shape={image_shape}"
        )
    converter = _converter_for(model, image_shape, batch_size)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    converter.allow_custom_ops = False
    if quantization == "float16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif quantization == "dynamic":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    elif quantization == "int8":
        if representative_data is None:
            raise ValueError("`quantization='int8'` needs `representative_data`.")
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.representative_dataset = _representative(
            representative_data, (batch_size, *image_shape)
        )
    return converter.convert()


def _representative(data, shape):
    if callable(data):
        def generate():
            for batch in data():
                batch = np.asarray(batch, np.float32)
                for i in range(0, len(batch), shape[0]):
                    yield [batch[i : i + shape[0]]]
        return generate
    data = np.asarray(data, np.float32)
    if data.ndim != 4 or data.shape[1:] != shape[1:]:
        raise ValueError(
            f"`representative_data` must have shape (N, {', '.join(map(str, shape[1:]))}). "
            f"Received: shape={data.shape}"
        )

    def generate():
        for i in range(0, len(data) - shape[0] + 1, shape[0]):
            yield [data[i : i + shape[0]]]

    return generate


def tflite_ops(flatbuffer: bytes | os.PathLike) -> set[str]:
    """The set of operator names in a TFLite file or flatbuffer."""
    from ai_edge_litert.interpreter import Interpreter

    if not isinstance(flatbuffer, (bytes, bytearray)):
        flatbuffer = Path(flatbuffer).read_bytes()
    interpreter = Interpreter(model_content=bytes(flatbuffer))
    return {op["op_name"] for op in interpreter._get_ops_details()}


def check_gpu_ops(flatbuffer: bytes | os.PathLike) -> set[str]:
    """Raises `ValueError` naming the ops the TFLite GPU delegate cannot run."""
    ops = tflite_ops(flatbuffer)
    unsupported = sorted(ops - TFLITE_GPU_OPS)
    if unsupported:
        raise ValueError(
            f"The TFLite model uses ops the GPU delegate does not support: "
            f"{', '.join(unsupported)}. All ops: {', '.join(sorted(ops))}."
        )
    return ops


def export_tflite(
    model,
    path: str | os.PathLike,
    quantization: str = "float32",
    **kwargs,
) -> Path:
    """Converts (see `convert_to_tflite`), checks the ops, writes `path` atomically."""
    flatbuffer = convert_to_tflite(model, quantization=quantization, **kwargs)
    check_gpu_ops(flatbuffer)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_bytes(flatbuffer)
    os.replace(partial, path)
    return path
