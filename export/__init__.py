"""Exporters (installed as `keras_deconvnet.export`): TF Serving, TFLite, ONNX, parity.

Every artefact takes RGB images in [0, 255] and applies the segmenter's image
converter itself, and returns per-pixel class probabilities (the SavedModel also
returns the label map, and has a signature for encoded image bytes that follows the
local whole-image convention). TFLite files carry MediaPipe ImageSegmenter metadata;
the int8 file is integer end to end (uint8 pixels in).

Example:

>>> from keras_deconvnet.export import export_all
>>> from keras_deconvnet.models import DeconvNetImageSegmenter
>>> model = DeconvNetImageSegmenter.from_preset(
...     "deconvnet_edge_small", num_classes=3, image_shape=(96, 96, 3))
>>> result = export_all(model, "exported", formats=["tflite_float16"])
>>> print(result.report.table)  # doctest: +ELLIPSIS
format ...
tflite_float16 ...
"""

from keras_deconvnet.export.onnx import DEFAULT_OPSET, check_onnx, export_onnx
from keras_deconvnet.export.parity import (
    DEFAULT_THRESHOLDS,
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
from keras_deconvnet.export.tflite import (
    INT8_IO,
    QUANTIZATIONS,
    TFLITE_GPU_OPS,
    add_metadata,
    check_gpu_ops,
    conversion_saved_model,
    convert_to_tflite,
    export_tflite,
    format_op_table,
    integer_op_fraction,
    op_counts,
    tflite_ops,
)

__all__ = [
    "DEFAULT_OPSET",
    "DEFAULT_THRESHOLDS",
    "FORMATS",
    "INT8_IO",
    "QUANTIZATIONS",
    "TFLITE_GPU_OPS",
    "ExportResult",
    "ParityError",
    "ParityReport",
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
    "integer_op_fraction",
    "mean_iou",
    "next_version",
    "op_counts",
    "original_size_images",
    "served_parity",
    "synthetic_images",
    "tflite_ops",
    "validate_formats",

    "write_model_config",
]
