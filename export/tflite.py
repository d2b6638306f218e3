"""TFLite export with builtin ops only, MediaPipe metadata and a GPU delegate check.

By default a file computes what every export of this package computes: RGB images
in [0, 255] -> the segmenter's image converter (a MUL and an ADD) -> the model ->
SOFTMAX, i.e. per-pixel class probabilities. There is no label output: ARG_MAX is not
a GPU delegate op, so clients take the argmax themselves (MediaPipe's category mask
does). `export_tflite` converts (`tflite_conversion`), checks the ops
(`tflite_inspection`) and packs the TFLite model metadata MediaPipe Tasks'
ImageSegmenter reads (`add_metadata`, see `tflite_metadata`): the file drops into it
unchanged.

Quantization modes and their targets:

- `float32`: reference; any CPU or GPU.
- `float16`: float16 weights, half the size; the GPU delegate's native format (the
  file to ship for phone GPUs). CPUs dequantize the weights to float32.
- `dynamic`: int8 weights, float activations (dynamic-range); CPUs only (XNNPACK).
- `int8`: full integer weights and activations, calibrated on a representative
  dataset (`tflite_quantization`); for CPUs (XNNPACK runs the whole graph), NPUs,
  EdgeTPU-class and microcontroller accelerators. Input and output are uint8 by
  default (`int8_io`): pixels 0..255 go in as they are (scale 1, zero point 0, what
  MediaPipe feeds a uint8 input) and probabilities come out with scale 1/256. Every
  op between is integer: the pooling switches are traced with
  `keras_deconvnet.layers.integer_switches` (SUB/MUL clamps instead of
  EQUAL/SELECT_V2), which the int8 kernels, XNNPACK's int8 delegate and the GPU
  delegate all run.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import keras
import numpy as np

from keras_deconvnet import atomic_io
from keras_deconvnet.export import model_interface
from keras_deconvnet.export.tflite_conversion import TFLiteConfig, convert_to_tflite
from keras_deconvnet.export.tflite_inspection import check_gpu_ops, tflite_ops
from keras_deconvnet.export.tflite_metadata import add_image_segmenter_metadata
from keras_deconvnet.export.tflite_metadata_builder import ImageSegmenterMetadata
from keras_deconvnet.inference import whole_image

_WITH_PREPROCESSING = (
    "Semantic segmentation: RGB pixels 0-255 in (normalised inside), "
    "per-pixel class probabilities out."
)
_BARE_MODEL = "Semantic segmentation (bare model: normalised input)."


def _bare_model_normalisation(
    model: keras.Model,
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The converter's per-channel `(mean, std)` in pixel units, for a bare model."""
    config = model_interface.preprocessing_config(model) or {}
    scale = float(config.get("scale") or 1.0)
    offset = config.get("offset") or [0.0]
    offset = offset if isinstance(offset, (list, tuple)) else [offset]
    mean = tuple(-float(o) / scale for o in offset)
    return mean, tuple(1.0 / scale for _ in mean)


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
    else:
        mean, std = _bare_model_normalisation(model)
        output_type = "probabilities" if whole_image.outputs_probabilities(model) else "logits"
    metadata = ImageSegmenterMetadata(
        labels=labels, input_mean=mean, input_std=std, name=name,
        description=_WITH_PREPROCESSING if include_preprocessing else _BARE_MODEL,
        version=keras_deconvnet.__version__, output_type=output_type,
    )
    mediapipe = (include_preprocessing and int(detail["shape"][0]) == 1
                 and detail["dtype"] in (np.float32, np.uint8))
    return add_image_segmenter_metadata(flatbuffer, metadata, check_mediapipe=mediapipe)


def export_tflite(
    model: keras.Model,
    path: str | os.PathLike,
    quantization: str = "float32",
    config: TFLiteConfig | None = None,
    *,
    representative_data: Callable[[], Iterable] | np.ndarray | None = None,
    conversion_dir: str | os.PathLike | None = None,
) -> Path:
    """Converts (see `convert_to_tflite`), checks the ops, adds metadata, writes `path`.

    Args:
        model: a Keras segmentation model.
        path: the `.tflite` file to write; it must not exist.
        quantization: one of `"float32"`, `"float16"`, `"dynamic"`, `"int8"`.
        config: the conversion settings, whether to check the GPU delegate ops
            (`check_gpu`) and to pack MediaPipe metadata (`metadata`, with
            `class_names`); defaults to `TFLiteConfig()`.
        representative_data: int8 calibration images (see `convert_to_tflite`).
        conversion_dir: a `conversion_saved_model` directory to convert from.

    Returns:
        The path written.

    Example:

    >>> from keras_deconvnet.models import DeconvNetImageSegmenter
    >>> model = DeconvNetImageSegmenter.from_preset("deconvnet_edge_small", image_shape=(96, 96, 3))
    >>> export_tflite(model, "model_float16.tflite", "float16")
    PosixPath('model_float16.tflite')
    """
    config = config or TFLiteConfig()
    path = Path(path)
    if path.exists():
        raise FileExistsError(f"The output file already exists. Received: {path}")
    flatbuffer = convert_to_tflite(
        model, quantization, config,
        representative_data=representative_data, conversion_dir=conversion_dir,
    )
    ops = tflite_ops(flatbuffer)
    if config.check_gpu:
        check_gpu_ops(flatbuffer)
    elif any(op.startswith("FLEX") or op == "CUSTOM" for op in ops):
        raise ValueError(f"The TFLite model uses non-builtin ops: {sorted(ops)}")
    if config.metadata:
        flatbuffer = add_metadata(
            flatbuffer, model, config.class_names,
            include_preprocessing=config.include_preprocessing, name=path.stem,
        )
    return atomic_io.write_bytes(path, flatbuffer)
