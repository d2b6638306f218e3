"""Keras segmenter -> TFLite flatbuffer of builtin ops only, in bounded memory.

Flex (Select TF) ops and custom ops are never allowed: the TFLite GPU delegate, NNAPI
and most NPUs run neither, and Keras's own `model.export(format="litert")` lets Flex
ops in silently. Files have a fixed input size and batch size (default 1).

Memory: conversion goes through a SavedModel of the inference function and the
model's variables, written once (`conversion_saved_model`, streamed to disk), from
which TensorFlow's converter freezes the variables in C++. Freezing in Python
(`convert_variables_to_constants_v2`) held several copies of every weight and ran
past 24 GB for the paper's 252M-parameter network. Large models are converted in a
child process per step (`isolate`), so each step's memory is returned when it ends:
float conversion, then int8 calibration and quantization of that float model
(`tflite_quantization`).
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from keras_deconvnet.export import model_interface
from keras_deconvnet.export.tflite_quantization import (
    DEFAULT_INT8_IO,
    DEFAULT_REPRESENTATIVE_SAMPLES,
    calibration_batches,
    check_int8_io,
    check_pixel_input,
    check_representative_samples,
    quantize_int8,
    representative_dataset,
)
from keras_deconvnet.layers import switch_formulation

QUANTIZATIONS = ("float32", "float16", "dynamic", "int8")
# Models whose variables exceed this many bytes are converted in child processes by
# default (the paper's network: 1 GB of float32 weights).
ISOLATE_ABOVE_BYTES = 256 * 2**20
# The two traces of the inference function in a conversion SavedModel: the float
# switches the GPU delegate runs (float32, float16, dynamic; the layers' "arithmetic"
# formulation, exact on finite input) and the integer-friendly ones (int8).
FLOAT_SIGNATURE = "serving_default"
INTEGER_SIGNATURE = "integer_switches"
# Kept for callers of the earlier name.
EXACT_SIGNATURE = FLOAT_SIGNATURE
# The switch formulation traced into each signature (see `keras_deconvnet.layers`).
SIGNATURE_FORMULATIONS = {FLOAT_SIGNATURE: "arithmetic", INTEGER_SIGNATURE: "integer"}


def _check_batch_size(batch_size) -> None:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"`batch_size` must be a positive int. Received: {batch_size!r}")


def _check_quantization(quantization: str) -> None:
    if quantization not in QUANTIZATIONS:
        raise ValueError(
            f"`quantization` must be one of {QUANTIZATIONS}. "
            f"Received: quantization={quantization!r}"
        )


@dataclass
class TFLiteConfig:
    """How a segmenter becomes a TFLite file, whatever its quantization.

    Args:
        image_shape: `(height, width)` or `(height, width, 3)`; defaults to the
            model's input size, which must then be fixed.
        batch_size: the fixed batch size of the file. Defaults to `1`.
        include_preprocessing: `True` (default): the file takes RGB [0, 255] images
            and returns softmax probabilities. `False`: the bare model (preprocessed
            input, the model's own outputs).
        representative_samples: at most this many images are used for int8
            calibration; `None` for all. Defaults to `100`.
        int8_io: input and output type of an `"int8"` file: `"uint8"` (default;
            pixels in as they are, scale 1 and zero point 0), `"int8"` (pixel - 128)
            or `"float"`. Ignored by the other modes.
        isolate: convert in child processes, each returning its memory when it ends.
            Defaults to `True` for models over `ISOLATE_ABOVE_BYTES` of variables.
        check_gpu: (`export_tflite`) raise unless every op can run on the GPU
            delegate (see `check_gpu_ops`). Defaults to `True`.
        metadata: (`export_tflite`) pack the MediaPipe ImageSegmenter metadata and
            `labels.txt` (see `add_metadata`). Defaults to `True`.
        class_names: (`export_tflite`) labels for the metadata; defaults to the
            model's.
        float_switches: the pooling-switch formulation of the float files
            (float32, float16, dynamic): `"arithmetic"` (default; exact on finite
            input, and every op runs on the GPU delegate) or `"exact"` (EQUAL and
            SELECT_V2: exact with infinities too, but the GPU delegate refuses it).
            The int8 file always uses `"integer"`.

    Example:

    >>> TFLiteConfig(image_shape=(96, 96), int8_io="float").batch_size
    1
    """

    image_shape: Sequence[int] | None = None
    batch_size: int = 1
    include_preprocessing: bool = True
    representative_samples: int | None = DEFAULT_REPRESENTATIVE_SAMPLES
    int8_io: str = DEFAULT_INT8_IO
    isolate: bool | None = None
    check_gpu: bool = True
    metadata: bool = True
    class_names: Sequence[str] | None = None
    float_switches: str = "arithmetic"

    def __post_init__(self) -> None:
        if self.float_switches not in ("arithmetic", "exact"):
            raise ValueError(
                "`float_switches` must be 'arithmetic' or 'exact'. "
                f"Received: float_switches={self.float_switches!r}"
            )
        _check_batch_size(self.batch_size)
        check_representative_samples(self.representative_samples)
        check_int8_io(self.int8_io)
        if self.isolate is not None and not isinstance(self.isolate, bool):
            raise ValueError(
                f"`isolate` must be True, False or None. Received: isolate={self.isolate!r}"
            )
        if self.class_names is not None:
            if isinstance(self.class_names, (str, bytes)):
                raise ValueError(
                    "`class_names` must be a sequence of names, not one string. "
                    f"Received: class_names={self.class_names!r}"
                )
            self.class_names = [str(name) for name in self.class_names]


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
    float_switches: str = "arithmetic",
) -> Iterator[Path]:
    """Writes what the TFLite converter reads to a temporary SavedModel directory.

    The SavedModel holds the model's variables once and two signatures of the
    inference function at a fixed `(batch_size, height, width, 3)` input:
    `FLOAT_SIGNATURE` (the layers' `"arithmetic"` switches: exact on finite input, and
    only ops the GPU delegate runs) and `INTEGER_SIGNATURE` (the `"integer"` switches,
    for int8). Writing it streams the variables to
    disk; the directory is removed when the block ends.

    Args:
        model: a segmenter (or any Keras segmentation model).
        image_shape: `(height, width)`; defaults to the model's fixed input size.
        batch_size: the file's fixed batch size. Defaults to `1`.
        include_preprocessing: RGB [0, 255] in and probabilities out (default), or
            the bare model.
        float_switches: the formulation traced into `FLOAT_SIGNATURE` (see
            `TFLiteConfig`).

    Yields:
        The directory, for `convert_saved_model` (or `convert_to_tflite`'s
        `conversion_dir`).

    Example:

    >>> from keras_deconvnet.export import integer_op_fraction
    >>> from keras_deconvnet.models import DeconvNetImageSegmenter
    >>> model = DeconvNetImageSegmenter.from_preset("deconvnet_edge_small", num_classes=3)
    >>> config = TFLiteConfig(image_shape=(96, 96))
    >>> with conversion_saved_model(model, (96, 96)) as directory:
    ...     float16 = convert_to_tflite(model, "float16", config, conversion_dir=directory)
    ...     int8 = convert_to_tflite(model, "int8", config, conversion_dir=directory,
    ...                              representative_data=np.zeros((2, 96, 96, 3)))
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
    formulations = {**SIGNATURE_FORMULATIONS, FLOAT_SIGNATURE: float_switches}
    for name, formulation in formulations.items():
        with switch_formulation(formulation):
            traced = tf.function(function, input_signature=[spec])
            signatures[name] = traced.get_concrete_function()
    with tempfile.TemporaryDirectory(prefix="deconvnet-tflite-") as directory:
        tf.saved_model.save(module, directory, signatures=signatures)
        yield Path(directory)


def model_bytes(model: keras.Model) -> int:
    """Bytes of the model's variables (what decides `isolate`'s default)."""
    return int(sum(np.prod(v.shape) * np.dtype(v.dtype).itemsize for v in model.variables))


def _calibration(
    representative_data: Callable[[], Iterable] | np.ndarray | None,
    config: TFLiteConfig,
    image_shape: tuple[int, int, int],
) -> np.ndarray:
    """The int8 calibration batches, validated before the slow conversion starts."""
    if representative_data is None:
        raise ValueError("`quantization='int8'` needs `representative_data`.")
    if not config.include_preprocessing and config.int8_io != "float":
        raise ValueError(
            "`int8_io` 'uint8' and 'int8' feed raw pixels: they need "
            "`include_preprocessing=True` (or use int8_io='float')."
        )
    generate = representative_dataset(
        representative_data, (config.batch_size, *image_shape), config.representative_samples
    )
    return calibration_batches(generate, pixel_range=config.include_preprocessing)


def convert_to_tflite(
    model: keras.Model,
    quantization: str = "float32",
    config: TFLiteConfig | None = None,
    *,
    representative_data: Callable[[], Iterable] | np.ndarray | None = None,
    conversion_dir: str | os.PathLike | None = None,
) -> bytes:
    """Converts a Keras segmentation model to a TFLite flatbuffer of builtin ops only.

    Args:
        model: a segmenter with a preprocessor (`DeconvNetImageSegmenter`, ...):
            its image converter normalises the images inside the exported graph.
        quantization: one of `"float32"`, `"float16"`, `"dynamic"`, `"int8"`.
        config: the input size, batch size, preprocessing, calibration and int8
            settings (`TFLiteConfig`); defaults to `TFLiteConfig()`.
        representative_data: for `"int8"`: RGB [0, 255] images, an array
            `(N, height, width, 3)` or a callable returning an iterable of such
            batches.
        conversion_dir: a directory from `conversion_saved_model` for this model,
            shape, batch size and preprocessing, to convert several formats from one
            write; written here when `None`.

    Returns:
        The `.tflite` file's bytes (without metadata: `export_tflite` adds it).

    Example:

    >>> from keras_deconvnet.export import tflite_ops
    >>> from keras_deconvnet.models import DeconvNetImageSegmenter
    >>> model = DeconvNetImageSegmenter.from_preset("deconvnet_edge_small", image_shape=(96, 96, 3))
    >>> flatbuffer = convert_to_tflite(model)
    >>> "SOFTMAX" in tflite_ops(flatbuffer)
    True
    """
    config = config or TFLiteConfig()
    _check_quantization(quantization)
    image_shape, _ = model_interface.segmentation_shapes(model, config.image_shape)
    batches = None
    if quantization == "int8":
        batches = _calibration(representative_data, config, image_shape)
    isolate = config.isolate
    if isolate is None:
        isolate = model_bytes(model) > ISOLATE_ABOVE_BYTES
    arguments = (quantization, batches, config.int8_io, isolate)
    if conversion_dir is not None:
        return convert_saved_model(conversion_dir, *arguments)
    with conversion_saved_model(
        model, image_shape, config.batch_size, config.include_preprocessing,
        config.float_switches,
    ) as directory:
        return convert_saved_model(directory, *arguments)


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
    _check_quantization(quantization)
    check_int8_io(int8_io)
    saved_model_dir = str(saved_model_dir)
    if quantization != "int8":
        if isolate:
            return _isolated("float", saved_model_dir, FLOAT_SIGNATURE, quantization)
        return _convert_float(saved_model_dir, FLOAT_SIGNATURE, quantization)
    if representative_data is None:
        raise ValueError("`quantization='int8'` needs `representative_data`.")
    batches = np.asarray(representative_data, np.float32)
    if not isolate:
        float_model = _convert_float(saved_model_dir, INTEGER_SIGNATURE, "float32")
        flatbuffer = quantize_int8(float_model, batches, int8_io)
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
    check_pixel_input(flatbuffer, int8_io)
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


def _isolated(step: str, source: str, signature: str | None = None,
              quantization: str | None = None, output: Path | None = None,
              **kwargs) -> bytes:
    """Runs `_worker` in a fresh interpreter; returns the flatbuffer it wrote."""
    with tempfile.TemporaryDirectory(prefix="deconvnet-convert-") as tmp:
        target = output or Path(tmp) / "model.tflite"
        task = {"step": step, "source": source, "signature": signature,
                "quantization": quantization, "output": str(target), **kwargs}
        code = ("import sys; from keras_deconvnet.export import tflite_conversion; "
                "tflite_conversion._worker(sys.argv[1])")
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
        flatbuffer = quantize_int8(Path(task["source"]).read_bytes(), batches, task["int8_io"])
    Path(task["output"]).write_bytes(flatbuffer)
