"""Full-integer (int8) quantization: calibration images and the quantization step.

An int8 file has integer weights and activations, calibrated on a representative
dataset of RGB [0, 255] images (`representative_dataset`, `calibration_batches`).
Input and output are uint8 by default (`INT8_IO`): pixels 0..255 go in as they are
(scale 1, zero point 0, what MediaPipe feeds a uint8 input; `check_pixel_input`) and
probabilities come out with scale 1/256. `quantize_int8` calibrates a float TFLite
model and quantizes it, the two steps `TFLiteConverter.convert()` takes for
post-training int8, so that the float conversion's memory is gone before
calibration starts.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable

import numpy as np
import tensorflow as tf

# Input/output types of an int8 file: "uint8" (raw pixels in, MediaPipe and NPUs),
# "int8" (pixels - 128 in; NPUs and microcontrollers, not MediaPipe) or "float"
# (a QUANTIZE and a DEQUANTIZE at the ends, which the CPU runs).
INT8_IO = ("uint8", "int8", "float")
DEFAULT_INT8_IO = "uint8"
DEFAULT_REPRESENTATIVE_SAMPLES = 100


def check_int8_io(int8_io: str) -> None:
    """Raises `ValueError` unless `int8_io` is one of `INT8_IO`."""
    if int8_io not in INT8_IO:
        raise ValueError(f"`int8_io` must be one of {INT8_IO}. Received: int8_io={int8_io!r}")


def check_representative_samples(num_samples: int | None) -> None:
    """Raises `ValueError` unless `num_samples` is a positive int or `None`."""
    if num_samples is not None and (
        isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1
    ):
        raise ValueError(
            f"`representative_samples` must be a positive int or None. "
            f"Received: representative_samples={num_samples!r}"
        )


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
    check_representative_samples(num_samples)
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


def quantize_int8(float_model: bytes, batches: np.ndarray, int8_io: str) -> bytes:
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


def check_pixel_input(flatbuffer: bytes, int8_io: str) -> None:
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
