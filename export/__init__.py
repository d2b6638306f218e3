"""Exporters (installed as `keras_deconvnet.export`): TF Serving, TFLite, ONNX, parity.

Every artefact takes RGB float32 images in [0, 255] and applies
the segmenter's image converter itself, and returns per-pixel class
probabilities (the SavedModel also returns the label map, and has a signature for
encoded image bytes).

Example:

>>> from keras_deconvnet.export import export_all
>>> result = export_all(model, "exported", representative_data=images)
>>> print(result.report.table)
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
)
from keras_deconvnet.export.pipeline import (
    FORMATS,
    ExportResult,
    export_all,
    synthetic_images,
    validate_formats,
)
from keras_deconvnet.export.saved_model import (
    export_saved_model,
    next_version,
    write_model_config,
)
from keras_deconvnet.export.tflite import (
    QUANTIZATIONS,
    TFLITE_GPU_OPS,
    check_gpu_ops,
    convert_to_tflite,
    export_tflite,
    tflite_ops,
)

__all__ = [
    "DEFAULT_OPSET",
    "DEFAULT_THRESHOLDS",
    "FORMATS",
    "QUANTIZATIONS",
    "TFLITE_GPU_OPS",
    "ExportResult",
    "ParityError",
    "ParityReport",
    "check_gpu_ops",
    "check_onnx",
    "check_parity",
    "confusion_matrix",
    "convert_to_tflite",
    "export_all",
    "export_onnx",
    "export_saved_model",
    "export_tflite",
    "format_table",
    "mean_iou",
    "next_version",
    "synthetic_images",
    "tflite_ops",
    "validate_formats",
    "write_model_config",
]
