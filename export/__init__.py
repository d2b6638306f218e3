"""Exporters (installed as `keras_deconvnet.export`): TFLite with builtin ops only."""

from keras_deconvnet.export.tflite import TFLITE_GPU_OPS, export_tflite, tflite_ops

__all__ = ["TFLITE_GPU_OPS", "export_tflite", "tflite_ops"]
