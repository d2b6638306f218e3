"""TFLite export with builtin ops only, MediaPipe metadata and a GPU delegate check.

Flex (Select TF) ops and custom ops are never allowed: the TFLite GPU delegate, NNAPI
and most NPUs run neither, and Keras's own `model.export(format="litert")` lets Flex
ops in silently. Files have a fixed input size and batch size (default 1).

By default a file computes what every export of this package computes: RGB images
in [0, 255] -> the segmenter's image converter (a MUL and an ADD) -> the model ->
SOFTMAX, i.e. per-pixel class probabilities. There is no label output: ARG_MAX is not
a GPU delegate op, so clients take the argmax themselves (MediaPipe's category mask
does). `export_tflite` packs the TFLite model metadata MediaPipe Tasks'
ImageSegmenter reads (see `tflite_metadata`): the file drops into it unchanged.

Quantization modes and their targets:

- `float32`: reference; any CPU or GPU.
- `float16`: float16 weights, half the size; the GPU delegate's native format (the
  file to ship for phone GPUs). CPUs dequantize the weights to float32.
- `dynamic`: int8 weights, float activations (dynamic-range); CPUs only (XNNPACK).
- `int8`: full integer weights and activations, calibrated on a representative
  dataset; for CPUs (XNNPACK runs the whole graph), NPUs, EdgeTPU-class and
  microcontroller accelerators. Input and output are uint8 by default (`int8_io`):
  pixels 0..255 go in as they are (scale 1, zero point 0, what MediaPipe feeds a
  uint8 input) and probabilities come out with scale 1/256. Every op between is
  integer: the pooling switches are traced with
  `keras_deconvnet.layers.integer_switches` (SUB/MUL clamps instead of
  EQUAL/SELECT_V2), which the int8 kernels, XNNPACK's int8 delegate and the GPU
  delegate all run.

Memory: conversion goes through a SavedModel of the inference function and the
model's variables, written once (`conversion_saved_model`, streamed to disk), from
which TensorFlow's converter freezes the variables in C++. Freezing in Python
(`convert_variables_to_constants_v2`) held several copies of every weight and ran
past 24 GB for the paper's 252M-parameter network. Large models are converted in a
child process per step (`isolate`), so each step's memory is returned when it ends:
float conversion, then int8 calibration and quantization of that float model.

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

import collections
import contextlib
import io
import itertools
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from keras_deconvnet import atomic_io
from keras_deconvnet.export import model_interface, tflite_metadata
from keras_deconvnet.inference import whole_image
from keras_deconvnet.layers import integer_switches

QUANTIZATIONS = ("float32", "float16", "dynamic", "int8")
# Input/output types of an int8 file: "uint8" (raw pixels in, MediaPipe and NPUs),
# "int8" (pixels - 128 in; NPUs and microcontrollers, not MediaPipe) or "float"
# (a QUANTIZE and a DEQUANTIZE at the ends, which the CPU runs).
INT8_IO = ("uint8", "int8", "float")
DEFAULT_INT8_IO = "uint8"

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
# Models whose variables exceed this many bytes are converted in child processes by
# default (the paper's network: 1 GB of float32 weights).
ISOLATE_ABOVE_BYTES = 256 * 2**20
# The two traces of the inference function in a conversion SavedModel: the exact
# float switches (float32, float16, dynamic) and the integer-friendly ones (int8).
EXACT_SIGNATURE = "serving_default"
INTEGER_SIGNATURE = "integer_switches"
# Tensor types that make an op a float op (the rest: integer, bool, string).
_FLOAT_TYPES = (np.float16, np.float32, np.float64)


def _tf_variables(model: keras.Model) -> list:
    # The tf.Variables under the Keras variables: a SavedModel that tracks Keras
    # variables makes the converter keep them as resources (VAR_HANDLE and
    # READ_VARIABLE ops, no BatchNorm folding); plain tf.Variables it freezes.
    return [getattr(v, "value", v) for v in model.variables]


def _inference(model: keras.Model, include_preprocessing: bool) -> Callable:
    if include_preprocessing:
        return model_interface.inference_function(model)

    def bare(images):
        return model(images, training=False)

    return bare


@contextlib.contextmanager
def conversion_saved_model(
    model: keras.Model,
    image_shape: Sequence[int] | None = None,
    batch_size: int = 1,
    include_preprocessing: bool = True,
) -> Iterator[Path]:
    """Writes what the TFLite converter reads to a temporary SavedModel directory.

    The SavedModel holds the model's variables once and two signatures of the
    inference function at a fixed `(batch_size, height, width, 3)` input:
    `EXACT_SIGNATURE` (the layers' exact float switches) and `INTEGER_SIGNATURE`
    (traced under `integer_switches`, for int8). Writing it streams the variables to
    disk; the directory is removed when the block ends.

    Args:
        model: a segmenter (or any Keras segmentation model).
        image_shape: `(height, width)`; defaults to the model's fixed input size.
        batch_size: the file's fixed batch size. Defaults to `1`.
        include_preprocessing: RGB [0, 255] in and probabilities out (default), or
            the bare model.

    Yields:
        The directory, for `convert_saved_model` (or `convert_to_tflite`'s
        `conversion_dir`).

    Example:

    >>> from keras_deconvnet.models import DeconvNetImageSegmenter
    >>> model = DeconvNetImageSegmenter.from_preset("deconvnet_edge_small", num_classes=3)
    >>> with conversion_saved_model(model, (96, 96)) as directory:
    ...     float16 = convert_to_tflite(model, "float16", image_shape=(96, 96),
    ...                                 conversion_dir=directory)
    ...     int8 = convert_to_tflite(model, "int8", image_shape=(96, 96),
    ...                              representative_data=np.zeros((2, 96, 96, 3)),
    ...                              conversion_dir=directory)
    >>> integer_op_fraction(int8)
    1.0
    """
    _check_batch_size(batch_size)
    shape, _ = model_interface.segmentation_shapes(model, image_shape)
    spec = tf.TensorSpec([batch_size, *shape], tf.float32, name="images")
    function = _inference(model, include_preprocessing)
    module = tf.Module()
    module.weights = _tf_variables(model)
    signatures = {}
    for name, integer in ((EXACT_SIGNATURE, False), (INTEGER_SIGNATURE, True)):
        with integer_switches(integer):
            traced = tf.function(function, input_signature=[spec])
            signatures[name] = traced.get_concrete_function()
    with tempfile.TemporaryDirectory(prefix="deconvnet-tflite-") as directory:
        tf.saved_model.save(module, directory, signatures=signatures)
        yield Path(directory)


def _check_batch_size(batch_size) -> None:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"`batch_size` must be a positive int. Received: {batch_size!r}")


def _check_options(quantization: str, int8_io: str) -> None:
    if quantization not in QUANTIZATIONS:
        raise ValueError(
            f"`quantization` must be one of {QUANTIZATIONS}. "
            f"Received: quantization={quantization!r}"
        )
    if int8_io not in INT8_IO:
        raise ValueError(f"`int8_io` must be one of {INT8_IO}. Received: int8_io={int8_io!r}")


def model_bytes(model: keras.Model) -> int:
    """Bytes of the model's variables (what decides `isolate`'s default)."""
    return int(sum(np.prod(v.shape) * np.dtype(v.dtype).itemsize for v in model.variables))


def convert_to_tflite(
    model: keras.Model,
    quantization: str = "float32",
    image_shape: Sequence[int] | None = None,
    batch_size: int = 1,
    representative_data: Callable[[], Iterable] | np.ndarray | None = None,
    representative_samples: int | None = DEFAULT_REPRESENTATIVE_SAMPLES,
    include_preprocessing: bool = True,
    int8_io: str = DEFAULT_INT8_IO,
    isolate: bool | None = None,
    conversion_dir: str | os.PathLike | None = None,
) -> bytes:
    """Converts a Keras segmentation model to a TFLite flatbuffer of builtin ops only.

    Args:
        model: a segmenter with a preprocessor (`DeconvNetImageSegmenter`, ...):
            its image converter normalises the images inside the exported graph.
        quantization: one of `"float32"`, `"float16"`, `"dynamic"`, `"int8"`.
        image_shape: `(height, width)` or `(height, width, 3)`; defaults to the
            model's input size, which must then be fixed.
        batch_size: the fixed batch size of the file. Defaults to `1`.
        representative_data: for `"int8"`: RGB [0, 255] images, an array
            `(N, height, width, 3)` or a callable returning an iterable of such
            batches.
        representative_samples: at most this many images are used for calibration;
            `None` for all. Defaults to `100`.
        include_preprocessing: `True` (default): the file takes RGB [0, 255] images
            and returns softmax probabilities. `False`: the bare model (preprocessed
            input, the model's own outputs).
        int8_io: input and output type of an `"int8"` file: `"uint8"` (default;
            pixels in as they are, scale 1 and zero point 0), `"int8"` (pixel - 128)
            or `"float"`. Ignored by the other modes.
        isolate: convert in child processes, each returning its memory when it ends.
            Defaults to `True` for models over `ISOLATE_ABOVE_BYTES` of variables.
        conversion_dir: a directory from `conversion_saved_model` for this model,
            shape, batch size and preprocessing, to convert several formats from one
            write; written here when `None`.

    Returns:
        The `.tflite` file's bytes (without metadata: `export_tflite` adds it).

    Example:

    >>> from keras_deconvnet.models import DeconvNetImageSegmenter
    >>> model = DeconvNetImageSegmenter.from_preset("deconvnet_edge_small", image_shape=(96, 96, 3))
    >>> flatbuffer = convert_to_tflite(model)
    >>> "SOFTMAX" in tflite_ops(flatbuffer)
    True
    """
    _check_options(quantization, int8_io)
    _check_batch_size(batch_size)
    image_shape, _ = model_interface.segmentation_shapes(model, image_shape)
    batches = None
    if quantization == "int8":
        if representative_data is None:
            raise ValueError("`quantization='int8'` needs `representative_data`.")
        if not include_preprocessing and int8_io != "float":
            raise ValueError(
                "`int8_io` 'uint8' and 'int8' feed raw pixels: they need "
                "`include_preprocessing=True` (or use int8_io='float')."
            )
        # Validated (and read) before the slow conversion starts.
        generate = representative_dataset(
            representative_data, (batch_size, *image_shape), representative_samples
        )
        batches = calibration_batches(generate, pixel_range=include_preprocessing)
    if isolate is None:
        isolate = model_bytes(model) > ISOLATE_ABOVE_BYTES
    if conversion_dir is not None:
        return convert_saved_model(conversion_dir, quantization, batches, int8_io, isolate)
    with conversion_saved_model(model, image_shape, batch_size, include_preprocessing) as d:
        return convert_saved_model(d, quantization, batches, int8_io, isolate)


def calibration_batches(
    generate: Callable[[], Iterable[list[np.ndarray]]], pixel_range: bool = True
) -> np.ndarray:
    """The calibration batches as one array `(num_batches, batch, H, W, 3)`.

    With `pixel_range`, images are clipped to [0, 255] and the first one gets one
    pixel of 0 and one of 255 (in every channel): the input's calibrated range is
    then exactly [0, 255], so an int8 file's input quantization is scale 1 (zero
    point 0 for uint8, -128 for int8) and maps raw pixels to themselves, the
    contract MediaPipe relies on when it feeds a uint8 input.
    """
    batches = np.stack([np.asarray(batch[0], np.float32) for batch in generate()])
    if pixel_range:
        np.clip(batches, 0.0, 255.0, out=batches)
        batches[0, 0, 0, 0, :] = 0.0
        batches[0, 0, 0, min(1, batches.shape[3] - 1), :] = 255.0
    return batches


def convert_saved_model(
    saved_model_dir: str | os.PathLike,
    quantization: str = "float32",
    representative_data: np.ndarray | None = None,
    int8_io: str = DEFAULT_INT8_IO,
    isolate: bool = False,
) -> bytes:
    """Converts a `conversion_saved_model` directory to a TFLite flatbuffer.

    Args:
        saved_model_dir: written by `conversion_saved_model`.
        quantization: one of `QUANTIZATIONS`.
        representative_data: for `"int8"`, the calibration batches
            `(num_batches, batch, height, width, 3)` (see `calibration_batches`).
        int8_io: one of `INT8_IO`, for `"int8"`.
        isolate: run each step in a child process. Defaults to `False`.

    Returns:
        The flatbuffer's bytes.
    """
    _check_options(quantization, int8_io)
    saved_model_dir = str(saved_model_dir)
    if quantization != "int8":
        if isolate:
            return _isolated("float", saved_model_dir, EXACT_SIGNATURE, quantization)
        return _convert_float(saved_model_dir, EXACT_SIGNATURE, quantization)
    if representative_data is None:
        raise ValueError("`quantization='int8'` needs `representative_data`.")
    batches = np.asarray(representative_data, np.float32)
    if not isolate:
        float_model = _convert_float(saved_model_dir, INTEGER_SIGNATURE, "float32")
        flatbuffer = _quantize_int8(float_model, batches, int8_io)
    else:
        with tempfile.TemporaryDirectory(prefix="deconvnet-int8-") as tmp:
            float_path = Path(tmp) / "float.tflite"
            calibration_path = Path(tmp) / "calibration.npy"
            np.save(calibration_path, batches)
            del batches
            _isolated("float", saved_model_dir, INTEGER_SIGNATURE, "float32",
                      output=float_path)
            flatbuffer = _isolated("quantize", str(float_path), int8_io=int8_io,
                                   calibration=str(calibration_path))
    _check_pixel_input(flatbuffer, int8_io)
    return flatbuffer


def _convert_float(saved_model_dir: str, signature: str, quantization: str) -> bytes:
    """The converter's float conversion (float32, float16 or dynamic-range)."""
    converter = tf.lite.TFLiteConverter.from_saved_model(
        saved_model_dir, signature_keys=[signature]
    )
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    converter.allow_custom_ops = False
    converter.experimental_enable_resource_variables = False
    if quantization == "float16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif quantization == "dynamic":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    return converter.convert()


def _quantize_int8(float_model: bytes, batches: np.ndarray, int8_io: str) -> bytes:
    """Calibrates a float TFLite model and quantizes it to full integer.

    The same two steps `TFLiteConverter.convert()` takes for post-training int8
    (its calibrator, then its MLIR quantizer), run on a float model converted
    separately so that the float conversion's memory is gone before calibration
    starts (TensorFlow 2.21's internal `Calibrator` and `mlir_quantize`; pinned by
    setup.cfg and checked against `TFLiteConverter` in tests/export). The converter
    also adds intermediate tensors for LSTM-like fused ops first; a segmenter has
    none, and that step alone copied the 1 GB paper model four times.
    """
    from keras_deconvnet import private_apis

    def samples():
        for batch in batches:
            yield [batch]

    calibrated = private_apis.tflite_calibrator()(bytes(float_model)).calibrate(samples)
    del float_model
    io_type = {"uint8": tf.uint8, "int8": tf.int8, "float": tf.float32}[int8_io]
    return private_apis.tflite_mlir_quantize()(
        calibrated, input_data_type=io_type, output_data_type=io_type
    )


def _check_pixel_input(flatbuffer: bytes, int8_io: str) -> None:
    """Raises unless an integer input reads raw pixels (scale 1): see
    `calibration_batches`."""
    if int8_io == "float":
        return
    from ai_edge_litert.interpreter import Interpreter

    detail = Interpreter(model_content=bytes(flatbuffer)).get_input_details()[0]
    scale, zero_point = detail["quantization"]
    expected = 0 if int8_io == "uint8" else -128
    if not np.isclose(scale, 1.0, rtol=1e-6) or zero_point != expected:
        raise ValueError(
            f"The int8 file's {int8_io} input has scale {scale:g} and zero point "
            f"{zero_point}, not 1 and {expected}: it would not read raw pixels 0..255."
        )


def _isolated(step: str, source: str, signature: str | None = None,
              quantization: str | None = None, output: Path | None = None,
              **kwargs) -> bytes:
    """Runs `_worker` in a fresh interpreter; returns the flatbuffer it wrote."""
    with tempfile.TemporaryDirectory(prefix="deconvnet-convert-") as tmp:
        target = output or Path(tmp) / "model.tflite"
        task = {"step": step, "source": source, "signature": signature,
                "quantization": quantization, "output": str(target), **kwargs}
        code = ("import sys; from keras_deconvnet.export import tflite; "
                "tflite._worker(sys.argv[1])")
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
        done = subprocess.run([sys.executable, "-c", code, json.dumps(task)],
                              capture_output=True, text=True, env=env)
        if done.returncode != 0:
            raise RuntimeError(
                f"TFLite conversion step {step!r} failed in its child process (exit "
                f"{done.returncode}): {done.stderr.strip()[-3000:]}"
            )
        return b"" if output is not None else target.read_bytes()


def _worker(task_json: str) -> None:
    """The child process's side of `_isolated`."""
    task = json.loads(task_json)
    if task["step"] == "float":
        flatbuffer = _convert_float(task["source"], task["signature"], task["quantization"])
    else:
        batches = np.load(task["calibration"], mmap_mode="r")
        flatbuffer = _quantize_int8(Path(task["source"]).read_bytes(), batches,
                                    task["int8_io"])
    Path(task["output"]).write_bytes(flatbuffer)


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

    Example:

    >>> generate = representative_dataset(np.zeros((5, 8, 8, 3)), (2, 8, 8, 3))
    >>> [batch[0].shape for batch in generate()]
    [(2, 8, 8, 3), (2, 8, 8, 3)]
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


def _content(flatbuffer: bytes | bytearray | os.PathLike) -> bytes:
    if isinstance(flatbuffer, (bytes, bytearray)):
        return bytes(flatbuffer)
    return Path(flatbuffer).read_bytes()


def _op_details(flatbuffer: bytes | os.PathLike) -> tuple[list[dict], dict]:
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=_content(flatbuffer))
    tensors = {t["index"]: t for t in interpreter.get_tensor_details()}
    # Ops replaced by a delegate show up as DELEGATE nodes besides the originals.
    ops = [op for op in interpreter._get_ops_details() if op["op_name"] != "DELEGATE"]
    return ops, tensors


def tflite_ops(flatbuffer: bytes | os.PathLike) -> set[str]:
    """The set of operator names in a TFLite file or flatbuffer."""
    return set(op_counts(flatbuffer))


def op_counts(flatbuffer: bytes | os.PathLike) -> dict[str, dict[str, int]]:
    """How many times each op occurs, and how many of those touch a float tensor.

    Returns:
        `{op name: {"count": n, "float": n touching a float16/32/64 tensor}}`,
        sorted by name.

    Example:

    >>> @tf.function(input_signature=[tf.TensorSpec([1, 4], tf.float32)])
    ... def double(x):
    ...     return x * 2.0
    >>> flatbuffer = tf.lite.TFLiteConverter.from_concrete_functions(
    ...     [double.get_concrete_function()], tf.Module()).convert()
    >>> op_counts(flatbuffer)
    {'MUL': {'count': 1, 'float': 1}}
    """
    ops, tensors = _op_details(flatbuffer)
    counts: dict = collections.defaultdict(lambda: {"count": 0, "float": 0})
    for op in ops:
        indices = [i for i in (*op["inputs"], *op["outputs"]) if i >= 0 and i in tensors]
        entry = counts[op["op_name"]]
        entry["count"] += 1
        entry["float"] += any(tensors[i]["dtype"] in _FLOAT_TYPES for i in indices)
    return {name: dict(counts[name]) for name in sorted(counts)}


def integer_op_fraction(flatbuffer: bytes | os.PathLike) -> float:
    """The fraction of ops none of whose tensors is float (1.0: fully integer).

    Example:

    >>> @tf.function(input_signature=[tf.TensorSpec([1, 4], tf.float32)])
    ... def double(x):
    ...     return x * 2.0
    >>> integer_op_fraction(tf.lite.TFLiteConverter.from_concrete_functions(
    ...     [double.get_concrete_function()], tf.Module()).convert())
    0.0
    """
    counts = op_counts(flatbuffer)
    total = sum(c["count"] for c in counts.values())
    return 1.0 - sum(c["float"] for c in counts.values()) / total if total else 1.0


def format_op_table(files: Mapping[str, bytes | os.PathLike]) -> str:
    """A Markdown table of the ops in TFLite files: count per file, GPU delegate.

    Generated from the files themselves (the README's op lists come from here):
    one row per op, one column per file with `count` (and `count (f float)` where
    some of them touch float tensors), then whether the GPU delegate parses it.

    Args:
        files: `{column title: .tflite path or bytes}`.

    Returns:
        The table; its last row gives each file's fraction of integer-only ops.
    """
    counts = {title: op_counts(content) for title, content in files.items()}
    names = sorted({name for c in counts.values() for name in c})
    header = ["op", *counts, "GPU delegate"]
    rows = [header, ["---"] * len(header)]
    for name in names:
        cells = [name]
        for c in counts.values():
            entry = c.get(name)
            if entry is None:
                cells.append("")
            elif entry["float"]:
                cells.append(f"{entry['count']} ({entry['float']} float)")
            else:
                cells.append(str(entry["count"]))
        cells.append("yes" if name in TFLITE_GPU_OPS else "**no**")
        rows.append(cells)
    totals = ["integer-only ops"]
    for c in counts.values():
        total = sum(e["count"] for e in c.values())
        integer = total - sum(e["float"] for e in c.values())
        totals.append(f"{integer}/{total} ({100.0 * integer / max(total, 1):.0f}%)")
    rows.append([*totals, ""])
    return "\n".join("| " + " | ".join(row) + " |" for row in rows)


def gpu_compatibility_report(flatbuffer: bytes | os.PathLike) -> str:
    """TensorFlow's `Analyzer` report with the GPU delegate compatibility checks."""
    report = io.StringIO()
    with contextlib.redirect_stdout(report):
        tf.lite.experimental.Analyzer.analyze(
            model_content=_content(flatbuffer), gpu_compatibility=True
        )
    return report.getvalue()


def check_gpu_ops(flatbuffer: bytes | os.PathLike) -> set[str]:
    """Raises `ValueError` if the TFLite GPU delegate cannot run the whole model.

    Checks the op names against `TFLITE_GPU_OPS` and the `Analyzer`'s GPU
    compatibility report (which also checks op attributes and tensor types).

    Returns:
        The set of op names.
    """
    content = _content(flatbuffer)
    ops = tflite_ops(content)
    unsupported = sorted(ops - TFLITE_GPU_OPS)
    if unsupported:
        raise ValueError(
            f"The TFLite model uses ops the GPU delegate does not support: "
            f"{', '.join(unsupported)}. All ops: {', '.join(sorted(ops))}."
        )
    report = gpu_compatibility_report(content)
    if "GPU COMPATIBILITY WARNING" in report:
        lines = [line.strip() for line in report.splitlines() if "GPU" in line]
        raise ValueError(
            "The TFLite GPU compatibility check failed: " + " | ".join(lines[:10])
        )
    return ops


def add_metadata(
    flatbuffer: bytes,
    model: keras.Model,
    class_names: Sequence[str] | None = None,
    include_preprocessing: bool = True,
    name: str = "deconvnet",
) -> bytes:
    """Packs MediaPipe ImageSegmenter metadata (and `labels.txt`) into a file.

    Files with preprocessing inside take raw pixels (normalisation mean 0, std 1)
    and output probabilities; bare-model files record the converter's per-channel
    mean, which MediaPipe cannot apply (the Task Library can). Files MediaPipe
    cannot run (int8 input, batch > 1, bare model) get the metadata without the
    MediaPipe check.

    Args:
        flatbuffer: the `.tflite` bytes.
        model: the exported model (class names, converter, output kind).
        class_names: the labels; defaults to `model.class_names` (our segmenters),
            else `class_0, class_1, ...`.
        include_preprocessing: whether the file normalises its input itself.
        name: the model name in the metadata.

    Returns:
        The flatbuffer with metadata.
    """
    from ai_edge_litert.interpreter import Interpreter

    import keras_deconvnet

    detail = Interpreter(model_content=bytes(flatbuffer)).get_input_details()[0]
    size = (int(detail["shape"][1]), int(detail["shape"][2]))
    _, num_classes = model_interface.segmentation_shapes(model, size)
    labels = list(class_names or getattr(model, "class_names", None)
                  or [f"class_{i}" for i in range(num_classes)])
    if include_preprocessing:
        mean, std, output_type = (0.0,), (1.0,), "probabilities"
        description = ("Semantic segmentation: RGB pixels 0-255 in (normalised inside), "
                       "per-pixel class probabilities out.")
    else:
        config = model_interface.preprocessing_config(model) or {}
        scale = float(config.get("scale") or 1.0)
        offset = config.get("offset") or [0.0]
        offset = offset if isinstance(offset, (list, tuple)) else [offset]
        mean = tuple(-float(o) / scale for o in offset)
        std = tuple(1.0 / scale for _ in mean)
        output_type = "probabilities" if whole_image.outputs_probabilities(model) else "logits"
        description = "Semantic segmentation (bare model: normalised input)."
    mediapipe = (include_preprocessing and int(detail["shape"][0]) == 1
                 and detail["dtype"] in (np.float32, np.uint8))
    return tflite_metadata.add_image_segmenter_metadata(
        flatbuffer, labels=labels, input_mean=mean, input_std=std, name=name,
        description=description, version=keras_deconvnet.__version__,
        output_type=output_type, check_mediapipe=mediapipe,
    )


def export_tflite(
    model: keras.Model,
    path: str | os.PathLike,
    quantization: str = "float32",
    check_gpu: bool = True,
    metadata: bool = True,
    class_names: Sequence[str] | None = None,
    **kwargs,
) -> Path:
    """Converts (see `convert_to_tflite`), checks the ops, adds metadata, writes `path`.

    Args:
        model: a Keras segmentation model.
        path: the `.tflite` file to write; it must not exist.
        quantization: one of `"float32"`, `"float16"`, `"dynamic"`, `"int8"`.
        check_gpu: raise unless every op can run on the GPU delegate (see
            `check_gpu_ops`). Defaults to `True`.
        metadata: pack the MediaPipe ImageSegmenter metadata and `labels.txt` (see
            `add_metadata`). Defaults to `True`.
        class_names: labels for the metadata; defaults to the model's.
        **kwargs: `convert_to_tflite` arguments (`image_shape`, `batch_size`,
            `representative_data`, `representative_samples`,
            `include_preprocessing`, `int8_io`, `isolate`, `conversion_dir`).

    Returns:
        The path written.

    Example:

    >>> from keras_deconvnet.models import DeconvNetImageSegmenter
    >>> model = DeconvNetImageSegmenter.from_preset("deconvnet_edge_small", image_shape=(96, 96, 3))
    >>> export_tflite(model, "model_float16.tflite", "float16")
    PosixPath('model_float16.tflite')
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
    if metadata:
        flatbuffer = add_metadata(
            flatbuffer, model, class_names,
            include_preprocessing=kwargs.get("include_preprocessing", True),
            name=path.stem,
        )
    return atomic_io.write_bytes(path, flatbuffer)
