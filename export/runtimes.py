"""Every exported artefact as a function images -> probabilities, in its own runtime.

The SavedModel's `serving_default` runs in TensorFlow, TFLite files in the
`ai_edge_litert` interpreter, ONNX files in onnxruntime; each takes RGB [0, 255]
images `(N, H, W, 3)` and returns per-pixel class probabilities. TFLite files with
integer input (int8 files' default uint8) get the pixels quantized with the input's
own scale and zero point, and their outputs dequantized.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import tensorflow as tf


def runtime_for(format_name: str) -> str:
    """`"tensorflow"`, `"litert"` or `"onnxruntime"` for a format name."""
    if format_name in ("saved_model", "saved_model_bytes", "saved_model_jpeg"):
        return "tensorflow"
    if format_name.startswith("tflite"):
        return "litert"
    if format_name.startswith("onnx"):
        return "onnxruntime"
    raise ValueError(
        "Format names must be 'saved_model', 'onnx' or start with 'tflite'. "
        f"Received: {format_name!r}"
    )


def load_runner(format_name: str, path: str | os.PathLike) -> Callable[[np.ndarray], np.ndarray]:
    """A function RGB [0, 255] images `(N, H, W, 3)` -> probabilities, in the format's runtime."""
    runtime = runtime_for(format_name)
    path = Path(path)
    if runtime == "tensorflow":
        signature = tf.saved_model.load(str(path)).signatures["serving_default"]
        return lambda images: signature(images=tf.constant(images))["probabilities"].numpy()
    if runtime == "onnxruntime":
        from keras_deconvnet.export.onnx import onnx_session

        session = onnx_session(path)
        name = session.get_inputs()[0].name
        return lambda images: session.run(None, {name: images})[0]
    return litert_runner(path)


def litert_runner(
    path: str | os.PathLike, threads: int | None = None
) -> Callable[[np.ndarray], np.ndarray]:
    """A LiteRT interpreter as a function float images `(N, H, W, 3)` -> float outputs.

    Integer inputs get the images quantized with the input's scale and zero point
    (uint8 pixels go in unchanged: scale 1, zero point 0); integer outputs are
    dequantized. Batches are split into the file's batch size.
    """
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path), num_threads=threads or os.cpu_count())
    interpreter.allocate_tensors()
    input_detail = interpreter.get_input_details()[0]
    output_detail = interpreter.get_output_details()[0]
    batch = int(input_detail["shape"][0])

    def run(images):
        outputs = []
        for start in range(0, len(images), batch):
            chunk = images[start : start + batch]
            if len(chunk) < batch:  # pad the last chunk to the file's batch size
                pad = np.repeat(chunk[-1:], batch - len(chunk), axis=0)
                chunk = np.concatenate([chunk, pad])
            interpreter.set_tensor(input_detail["index"], quantize(chunk, input_detail))
            interpreter.invoke()
            output = interpreter.get_tensor(output_detail["index"])
            outputs.append(dequantize(output, output_detail))
        return np.concatenate(outputs)[: len(images)]

    return run


def quantize(values: np.ndarray, detail: Mapping) -> np.ndarray:
    """Float values as a tensor of `detail`'s dtype (an interpreter's input details):
    `round(x / scale + zero_point)`, clipped to the integer range.

    Example:

    >>> detail = {"dtype": np.uint8, "quantization": (1.0, 0)}
    >>> quantize(np.array([0.0, 127.6, 300.0]), detail).tolist()
    [0, 128, 255]
    """
    dtype = np.dtype(detail["dtype"])
    if not np.issubdtype(dtype, np.integer):
        return np.asarray(values, dtype)
    scale, zero_point = detail["quantization"]
    info = np.iinfo(dtype)
    quantized = np.round(np.asarray(values, np.float32) / scale + zero_point)
    return np.clip(quantized, info.min, info.max).astype(dtype)


def dequantize(values: np.ndarray, detail: Mapping) -> np.ndarray:
    """An interpreter's output as float32: `(q - zero_point) * scale` for integers.

    Example:

    >>> detail = {"dtype": np.uint8, "quantization": (1 / 256, 0)}
    >>> dequantize(np.array([0, 128], np.uint8), detail).tolist()
    [0.0, 0.5]
    """
    if not np.issubdtype(np.asarray(values).dtype, np.integer):
        return np.asarray(values, np.float32).copy()
    scale, zero_point = detail["quantization"]
    return (np.asarray(values, np.float32) - zero_point) * np.float32(scale)
