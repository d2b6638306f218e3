"""Every private Keras / TensorFlow API the package uses, in one place, with why.

Each is something no public API offers; `tests/private_apis_test.py` checks that
every one still exists and still behaves as relied on, so an upgrade that moves one
fails loudly there rather than somewhere deep in a training run or an export.
TensorFlow is pinned to 2.21 and Keras to 3.x (setup.cfg).

- `keras.Model._initial_epoch` (training resume): Keras's `fit` starts at this epoch;
  `BackupAndRestore` sets it and never clears it (the stage-2-runs-too-few-epochs
  bug), and our epoch backups must set it the same way.
- `tensorflow.lite.python.optimize.calibrator.Calibrator` and
  `tensorflow.lite.python.convert.mlir_quantize` (int8 TFLite export):
  `TFLiteConverter`'s own calibration and quantization steps, run on a float model in
  child processes so that the 252M-parameter model's float conversion memory is gone
  before calibration starts.
- `keras.src.export.tf2onnx_lib.patch_tf2onnx` (ONNX export): the NumPy-2 patch that
  `keras.Model.export(format="onnx")` applies to tf2onnx 1.17 before converting.
- `tensorflow.tsl.profiler.protobuf.xplane_pb2` (`deconvnet benchmark`'s profile): the
  message TensorFlow's profiler writes its traces in; there is no public reader.
"""

from __future__ import annotations


def set_initial_epoch(model, epoch: int | None) -> None:
    """The epoch Keras's `fit` starts from (`None`: 0), as `BackupAndRestore` sets it."""
    model._initial_epoch = epoch


def initial_epoch(model) -> int:
    """The epoch `fit` would start from (0 unless a backup callback set it)."""
    return getattr(model, "_initial_epoch", None) or 0


def tflite_calibrator():
    """TensorFlow's TFLite `Calibrator` class."""
    from tensorflow.lite.python.optimize import calibrator

    return calibrator.Calibrator


def tflite_mlir_quantize():
    """TensorFlow's TFLite `mlir_quantize` function."""
    from tensorflow.lite.python import convert

    return convert.mlir_quantize


def patch_tf2onnx() -> None:
    """Applies Keras's NumPy-2 compatibility patch to tf2onnx."""
    from keras.src.export.tf2onnx_lib import patch_tf2onnx as patch

    patch()


def xplane_pb2():
    """The profiler's XSpace protobuf module."""
    from tensorflow.tsl.profiler.protobuf import xplane_pb2 as module

    return module
