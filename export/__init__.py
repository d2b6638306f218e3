"""Exporters (installed as `keras_deconvnet.export`): TF Serving, TFLite, ONNX, parity.

Every artefact takes RGB images in [0, 255] and applies the segmenter's image
converter itself, and returns per-pixel class probabilities (the SavedModel also
returns the label map, and has a signature for encoded image bytes that follows the
local whole-image convention). TFLite files carry MediaPipe ImageSegmenter metadata;
the int8 file is integer end to end (uint8 pixels in).

Modules: `pipeline` (`export_all`, `ExportConfig`), `saved_model`, `onnx`, `tflite`
(`export_tflite`) with `tflite_conversion` (`convert_to_tflite`, `TFLiteConfig`),
`tflite_quantization` (int8 calibration), `tflite_inspection` (ops, GPU delegate),
the TFLite metadata writer `tflite_metadata` (with `tflite_flatbuffer`,
`tflite_metadata_builder`, `tflite_metadata_populator`, `tflite_metadata_reader`,
`mediapipe_compatibility`), `parity` (`check_parity`, `ParityConfig`) and
`runtimes` (each artefact in its own runtime).

Example:

>>> from keras_deconvnet.export import ExportConfig, export_all
>>> from keras_deconvnet.models import DeconvNetImageSegmenter
>>> model = DeconvNetImageSegmenter.from_preset(
...     "deconvnet_edge_small", num_classes=3, image_shape=(96, 96, 3))
>>> result = export_all(model, "exported", ExportConfig(formats=["tflite_float16"]))
>>> print(result.report.table)  # doctest: +ELLIPSIS
format ...
tflite_float16 ...
"""
# ruff: noqa: E402 (the backend check runs before the exporters are imported)

from keras_deconvnet.backends import require_tensorflow

# The exporters trace the Keras model with TensorFlow (tf.function, TFLiteConverter).
require_tensorflow("keras_deconvnet.export (TF Serving, TFLite and ONNX exporters)")

from keras_deconvnet.export.mediapipe_compatibility import image_segmenter_issues
from keras_deconvnet.export.onnx import DEFAULT_OPSET, check_onnx, export_onnx
from keras_deconvnet.export.parity import (
    DEFAULT_THRESHOLDS,
    ParityConfig,
    ParityError,
    ParityReport,
    check_parity,
    confusion_matrix,
    format_table,
    mean_iou,
    served_parity,
)
from keras_deconvnet.export.pipeline import (
    FORMATS,
    ExportConfig,
    ExportResult,
    export_all,
    original_size_images,
    synthetic_images,
    validate_formats,
)
from keras_deconvnet.export.saved_model import (
    export_saved_model,
    next_version,
    write_model_config,
)
from keras_deconvnet.export.tflite import add_metadata, export_tflite
from keras_deconvnet.export.tflite_conversion import (
    QUANTIZATIONS,
    TFLiteConfig,
    conversion_saved_model,
    convert_to_tflite,
)
from keras_deconvnet.export.tflite_inspection import (
    TFLITE_GPU_OPS,
    check_gpu_ops,
    format_op_table,
    integer_op_fraction,
    op_counts,
    tflite_ops,
)
from keras_deconvnet.export.tflite_metadata import add_image_segmenter_metadata
from keras_deconvnet.export.tflite_metadata_builder import ImageSegmenterMetadata
from keras_deconvnet.export.tflite_metadata_populator import populate_metadata
from keras_deconvnet.export.tflite_metadata_reader import read_metadata
from keras_deconvnet.export.tflite_quantization import INT8_IO

__all__ = [
    "DEFAULT_OPSET",
    "DEFAULT_THRESHOLDS",
    "FORMATS",
    "INT8_IO",
    "QUANTIZATIONS",
    "TFLITE_GPU_OPS",
    "ExportConfig",
    "ExportResult",
    "ImageSegmenterMetadata",
    "ParityConfig",
    "ParityError",
    "ParityReport",
    "TFLiteConfig",
    "add_image_segmenter_metadata",
    "add_metadata",
    "check_gpu_ops",
    "check_onnx",
    "check_parity",
    "confusion_matrix",
    "conversion_saved_model",
    "convert_to_tflite",
    "export_all",
    "export_onnx",
    "export_saved_model",
    "export_tflite",
    "format_op_table",
    "format_table",
    "image_segmenter_issues",
    "integer_op_fraction",
    "mean_iou",
    "next_version",
    "op_counts",
    "original_size_images",
    "populate_metadata",
    "read_metadata",
    "served_parity",
    "synthetic_images",
    "tflite_ops",
    "validate_formats",
    "write_model_config",
]
