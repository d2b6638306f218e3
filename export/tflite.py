"""TFLite export with builtin ops only, and the check that the GPU delegate can run it.

Flex (Select TF) ops and custom ops are never allowed: the TFLite GPU delegate, NNAPI
and most NPUs run neither, and Keras's own `model.export(format="litert")` lets Flex
ops in silently. Files have a fixed input size and batch size (default 1).

By default the file computes what every export of this package computes: RGB float32
images in [0, 255] -> the segmenter's image converter (a STRIDED_SLICE and a SUB) -> the model ->
SOFTMAX, i.e. per-pixel class probabilities. There is no label output: ARG_MAX is not
a GPU delegate op, so clients take the argmax themselves.

Quantization modes and their targets:

- `float32`: reference; any CPU or GPU.
- `float16`: float16 weights, half the size; the GPU delegate's native format (the
  file to ship for phone GPUs). CPUs dequantize the weights to float32.
- `dynamic`: int8 weights, float activations (dynamic-range); CPUs only (XNNPACK).
- `int8`: full integer weights and activations from a representative dataset, with
  float32 input/output; for CPUs and NPUs (and GPUs through a dequantized view).

GPU delegate ops (`TFLITE_GPU_OPS`): the builtin ops that LiteRT's GPU delegate
parses, taken from `tflite/delegates/gpu/common/model_builder.cc` (the operation
parsers) and `tflite/tools/versioning/gpu_compatibility.cc` (their attribute and type
constraints) in the LiteRT / TensorFlow repositories. ARG_MAX, SCATTER_ND and
GATHER_ND have no parser there; Flex and custom ops are never delegated (the
MediaPipe custom ops `MaxPoolingWithArgmax2D`/`MaxUnpooling2D` run on the GPU but not
on plain TFLite CPU, so they are not used). `check_gpu_ops` checks the op names
against that set and also runs TensorFlow's `tf.lite.experimental.Analyzer` with
`gpu_compatibility=True`, which applies `gpu_compatibility.cc`'s per-op checks
(attributes, tensor types).
"""

from __future__ import annotations

import contextlib
import io
import itertools
import os
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from tensorflow.python.framework.convert_to_constants import (
    convert_variables_to_constants_v2,
)

from keras_deconvnet.export import common

QUANTIZATIONS = ("float32", "float16", "dynamic", "int8")

# Builtin ops the TFLite GPU delegate parses, from LiteRT's
# tflite/delegates/gpu/common/model_builder.cc and
# tflite/tools/versioning/gpu_compatibility.cc. QUANTIZE/DEQUANTIZE appear in int8
# and float16 files; the delegate folds them (int8: with quantized models enabled).
# ARG_MAX has no parser there and is deliberately absent.
TFLITE_GPU_OPS = frozenset(
    {
        "ABS", "ADD", "AVERAGE_POOL_2D", "CAST", "CONCATENATION", "CONV_2D",
        "DEPTHWISE_CONV_2D", "DEPTH_TO_SPACE", "DEQUANTIZE", "DIV", "EQUAL", "GREATER",
        "GREATER_EQUAL", "HARD_SWISH", "LESS", "LESS_EQUAL", "LOGISTIC", "MAXIMUM",
        "MAX_POOL_2D", "MEAN", "MINIMUM", "MUL", "NOT_EQUAL", "PACK", "PAD", "PRELU",
        "QUANTIZE", "RELU", "RELU6", "RELU_N1_TO_1", "RESHAPE", "RESIZE_BILINEAR",
        "RESIZE_NEAREST_NEIGHBOR", "SELECT", "SELECT_V2", "SLICE", "SOFTMAX",
        "SPACE_TO_DEPTH", "SPLIT",
        "STRIDED_SLICE", "SUB", "TANH", "TILE", "TRANSPOSE", "TRANSPOSE_CONV",
        "FULLY_CONNECTED",
    }
)

DEFAULT_REPRESENTATIVE_SAMPLES = 100


def _converter_for(model, image_shape, batch_size, include_preprocessing):
    height, width, channels = image_shape
    spec = tf.TensorSpec([batch_size, height, width, channels], tf.float32, name="images")
    if include_preprocessing:
        function = common.inference_function(model)
    else:
        def function(images):
            return model(images, training=False)

    # Freeze the variables into constants: the converter would otherwise keep Keras 3
    # variables as resources (VAR_HANDLE/READ_VARIABLE ops) and not fold BatchNorm.
    concrete = tf.function(function, input_signature=[spec]).get_concrete_function()
    frozen = convert_variables_to_constants_v2(concrete)
    # The frozen function captures no variables; an empty module as `trackable_obj`
    # selects the current converter path (and silences its deprecation warning).
    return tf.lite.TFLiteConverter.from_concrete_functions([frozen], tf.Module())


def convert_to_tflite(
    model: keras.Model,
    quantization: str = "float32",
    image_shape: tuple | None = None,
    batch_size: int = 1,
    representative_data: Callable[[], Iterable] | np.ndarray | None = None,
    representative_samples: int | None = DEFAULT_REPRESENTATIVE_SAMPLES,
    include_preprocessing: bool = True,
) -> bytes:
    """Converts a Keras segmentation model to a TFLite flatbuffer of builtin ops only.

    Args:
        model: a segmenter with a preprocessor (`DeconvNetImageSegmenter`, ...):
            its image converter normalises the images inside the exported graph.
        quantization: one of `"float32"`, `"float16"`, `"dynamic"`, `"int8"`.
        image_shape: `(height, width)` or `(height, width, 3)`; defaults to the
            model's input size, which must then be fixed.
        batch_size: the fixed batch size of the file. Defaults to `1`.
        representative_data: for `"int8"`: images as the file takes them (RGB
            [0, 255] by default), an array `(N, height, width, 3)` or a callable
            returning an iterable of such batches.
        representative_samples: at most this many images are used for calibration;
            `None` for all. Defaults to `100`.
        include_preprocessing: `True` (default): the file takes RGB [0, 255] images
            and returns softmax probabilities. `False`: the bare model (preprocessed
            input, the model's own outputs).

    Returns:
        The `.tflite` file's bytes.

    Example:

    >>> from keras_deconvnet.models import DeconvNetImageSegmenter
    >>> model = DeconvNetImageSegmenter.from_preset("deconvnet_edge_small", image_shape=(96, 96, 3))
    >>> flatbuffer = convert_to_tflite(model)
    >>> "SOFTMAX" in tflite_ops(flatbuffer)
    True
    """
    if quantization not in QUANTIZATIONS:
        raise ValueError(
            f"`quantization` must be one of {QUANTIZATIONS}. "
            f"Received: quantization={quantization!r}"
        )
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"`batch_size` must be a positive int. Received: {batch_size!r}")
    image_shape, _ = common.segmentation_shapes(model, image_shape)
    if quantization == "int8":
        if representative_data is None:
            raise ValueError("`quantization='int8'` needs `representative_data`.")
        # Validated before the (slow) conversion starts.
        calibration = representative_dataset(
            representative_data, (batch_size, *image_shape), representative_samples
        )
    converter = _converter_for(model, image_shape, batch_size, include_preprocessing)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    converter.allow_custom_ops = False
    if quantization == "float16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif quantization == "dynamic":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    elif quantization == "int8":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.representative_dataset = calibration
    with warnings.catch_warnings():
        # Float input/output of an int8 file is intended, not missing statistics.
        warnings.filterwarnings("ignore", message="Statistics for quantized inputs")
        return converter.convert()


def representative_dataset(
    data: Callable[[], Iterable] | np.ndarray,
    shape: tuple[int, int, int, int],
    num_samples: int | None = DEFAULT_REPRESENTATIVE_SAMPLES,
) -> Callable[[], Iterable[list[np.ndarray]]]:
    """Validates calibration images and returns the converter's generator function.

    Args:
        data: an array `(N, height, width, channels)` or a callable returning an
            iterable of such arrays (or of single `(height, width, channels)` images).
        shape: `(batch_size, height, width, channels)` of the file's input.
        num_samples: the most images to use; `None` for all.

    Returns:
        A callable yielding `[batch]` lists, as `TFLiteConverter.representative_dataset`
        wants.
    """
    if num_samples is not None and (
        isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1
    ):
        raise ValueError(
            f"`representative_samples` must be a positive int or None. "
            f"Received: representative_samples={num_samples!r}"
        )
    expected = f"(N, {', '.join(map(str, shape[1:]))})"

    def as_batch(batch):
        batch = np.asarray(batch, np.float32)
        if batch.ndim == 3:
            batch = batch[None]
        if batch.ndim != 4 or batch.shape[1:] != tuple(shape[1:]):
            raise ValueError(
                f"`representative_data` must hold images of shape {expected}. "
                f"Received: shape={batch.shape}"
            )
        if not np.all(np.isfinite(batch)):
            raise ValueError("`representative_data` must be finite (no NaN or inf).")
        return batch

    if callable(data):
        first = next(iter(data()), None)  # fail before converting, with a clear error
        if first is None:
            raise ValueError("`representative_data` yielded no images.")
        as_batch(first)
        source = data
    else:
        array = as_batch(data)
        if len(array) < shape[0]:
            raise ValueError(
                f"`representative_data` needs at least {shape[0]} images (the batch "
                f"size). Received: shape={array.shape}"
            )

        def source():
            return [array]

    def generate():
        images = (image for batch in source() for image in as_batch(batch))
        if num_samples is not None:
            images = itertools.islice(images, num_samples)
        while True:
            batch = list(itertools.islice(images, shape[0]))
            if len(batch) < shape[0]:
                return
            yield [np.stack(batch)]

    return generate


def tflite_ops(flatbuffer: bytes | os.PathLike) -> set[str]:
    """The set of operator names in a TFLite file or flatbuffer."""
    from ai_edge_litert.interpreter import Interpreter

    if not isinstance(flatbuffer, (bytes, bytearray)):
        flatbuffer = Path(flatbuffer).read_bytes()
    interpreter = Interpreter(model_content=bytes(flatbuffer))
    return {op["op_name"] for op in interpreter._get_ops_details()}


def gpu_compatibility_report(flatbuffer: bytes | os.PathLike) -> str:
    """TensorFlow's `Analyzer` report with the GPU delegate compatibility checks."""
    if not isinstance(flatbuffer, (bytes, bytearray)):
        flatbuffer = Path(flatbuffer).read_bytes()
    report = io.StringIO()
    with contextlib.redirect_stdout(report):
        tf.lite.experimental.Analyzer.analyze(
            model_content=bytes(flatbuffer), gpu_compatibility=True
        )
    return report.getvalue()


def check_gpu_ops(flatbuffer: bytes | os.PathLike) -> set[str]:
    """Raises `ValueError` if the TFLite GPU delegate cannot run the whole model.

    Checks the op names against `TFLITE_GPU_OPS` and the `Analyzer`'s GPU
    compatibility report (which also checks op attributes and tensor types).

    Returns:
        The set of op names.
    """
    ops = tflite_ops(flatbuffer)
    unsupported = sorted(ops - TFLITE_GPU_OPS)
    if unsupported:
        raise ValueError(
            f"The TFLite model uses ops the GPU delegate does not support: "
            f"{', '.join(unsupported)}. All ops: {', '.join(sorted(ops))}."
        )
    report = gpu_compatibility_report(flatbuffer)
    if "GPU COMPATIBILITY WARNING" in report:
        warnings = [line.strip() for line in report.splitlines() if "GPU" in line]
        raise ValueError(
            "The TFLite GPU compatibility check failed: " + " | ".join(warnings[:10])
        )
    return ops


def export_tflite(
    model: keras.Model,
    path: str | os.PathLike,
    quantization: str = "float32",
    check_gpu: bool = True,
    **kwargs,
) -> Path:
    """Converts (see `convert_to_tflite`), checks the ops, writes `path` atomically.

    Args:
        model: a Keras segmentation model.
        path: the `.tflite` file to write; it must not exist.
        quantization: one of `"float32"`, `"float16"`, `"dynamic"`, `"int8"`.
        check_gpu: raise unless every op can run on the GPU delegate (see
            `check_gpu_ops`). Defaults to `True`.
        **kwargs: `convert_to_tflite` arguments (`image_shape`, `batch_size`,
            `representative_data`, `representative_samples`, `include_preprocessing`).

    Returns:
        The path written.

    Example:

    >>> from keras_deconvnet.models import DeconvNetImageSegmenter
    >>> model = DeconvNetImageSegmenter.from_preset("deconvnet_edge_small", image_shape=(96, 96, 3))
    >>> export_tflite(model, "/tmp/model_float16.tflite", "float16")
    PosixPath('/tmp/model_float16.tflite')
    """
    path = Path(path)
    if path.exists():
        raise FileExistsError(f"The output file already exists. Received: {path}")
    flatbuffer = convert_to_tflite(model, quantization=quantization, **kwargs)
    ops = tflite_ops(flatbuffer)
    if check_gpu:
        check_gpu_ops(flatbuffer)
    elif any(op.startswith("FLEX") or op == "CUSTOM" for op in ops):
        raise ValueError(f"The TFLite model uses non-builtin ops: {sorted(ops)}")
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    partial.write_bytes(flatbuffer)
    os.replace(partial, path)
    return path
