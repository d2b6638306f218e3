"""Parity of exported artefacts with the Keras model: accuracy drift, size, latency.

Every artefact runs on the same batch of RGB [0, 255] images in its own runtime
(the SavedModel's `serving_default` in TensorFlow, TFLite files in the
`ai_edge_litert` interpreter, ONNX files in onnxruntime) and is compared with the Keras
model run through the same preprocessing and softmax:

- `max_prob_diff`: max |probability difference| over all pixels and classes;
- `label_agreement`: % of pixels whose argmax label equals Keras's;
- `miou_vs_keras`: mean IoU of the artefact's labels against Keras's labels;
- `miou_vs_labels`: mean IoU against ground-truth labels, when given (255 ignored);
- `latency_ms`: median milliseconds per image at batch 1 on this machine, over
  `runs` runs after `warmup` runs;
- `integer_ops`: for TFLite files, the fraction of ops none of whose tensors is
  float (1.0: fully integer, what int8-only accelerators need).

TFLite files with integer input (int8 files' default uint8) get the pixels quantized
with the input's own scale and zero point, and their outputs dequantized.

With `original_images` and a SavedModel among the artefacts, one more row,
`saved_model_bytes`, compares the SavedModel's `predict_image_bytes` (PNG-encoded
images of their own sizes) with local whole-image inference at the original image
sizes (`whole_image.whole_image_probabilities`: the one resize convention both follow);
its `max_prob_diff` is empty (the signature returns labels only).

`check_parity` raises `ParityError` (with the table) when a format's label agreement
is below its threshold.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from keras_deconvnet.export import model_interface
from keras_deconvnet.inference import whole_image
from keras_deconvnet.metrics import confusion_matrix, iou_from_confusion

# Minimum label agreement with Keras (% of pixels) per format: floors that catch a
# broken conversion (which agrees on about 1/num_classes of the pixels), not accuracy
# targets. Float formats differ from Keras by rounding only, so only near-tied pixels
# may flip. Quantization also flips unpooling switches (a window's argmax), which
# moves whole decoder regions: measured on the small test model (4 classes, 64x64,
# briefly trained) float16 agreed on 99.95% of pixels, int8 on 88% (the trained
# quickstart model: 99.8% and 96.7%); pass tighter thresholds for a well-trained
# model. `saved_model_bytes` is the served-vs-local row at original image sizes (same
# model, same convention).
DEFAULT_THRESHOLDS = {
    "saved_model": 99.9,
    "saved_model_bytes": 99.9,
    "onnx": 99.9,
    "tflite_float32": 99.9,
    "tflite_float16": 99.0,
    "tflite_dynamic": 85.0,
    "tflite_int8": 80.0,
}
IGNORE_LABEL = 255


class ParityError(ValueError):
    """An exported artefact disagrees with the Keras model beyond its threshold."""

    def __init__(self, message: str, report: ParityReport):
        super().__init__(message)
        self.report = report


@dataclass
class ParityReport:
    """The result of `check_parity`: one dict per format and a printable table."""

    rows: list[dict] = field(default_factory=list)

    @property
    def table(self) -> str:
        return format_table(self.rows)

    def to_json(self) -> dict:
        return {"rows": self.rows}

    def __str__(self) -> str:
        return self.table


def mean_iou(
    y_true, y_pred, num_classes: int, ignore_label: int | None = IGNORE_LABEL
) -> float:
    """Mean IoU (%) over the classes present in `y_true` or `y_pred`.

    Example:

    >>> round(mean_iou([0, 0, 1, 1], [0, 1, 1, 1], 2), 2)
    58.33
    """
    result = iou_from_confusion(confusion_matrix(y_true, y_pred, num_classes, ignore_label))
    return 100.0 if np.isnan(result["mean_iou"]) else float(100.0 * result["mean_iou"])


def runtime_for(format_name: str) -> str:
    """`"tensorflow"`, `"litert"` or `"onnxruntime"` for a format name."""
    if format_name in ("saved_model", "saved_model_bytes"):
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


def _latency_ms(run, image, warmup, runs):
    for _ in range(warmup):
        run(image)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        run(image)
        times.append(time.perf_counter() - start)
    return float(np.median(times) * 1000.0)


def check_parity(
    model: keras.Model,
    artefacts: Mapping[str, str | os.PathLike],
    images: np.ndarray,
    labels: np.ndarray | None = None,
    thresholds: Mapping[str, float] | None = None,
    warmup: int = 1,
    runs: int = 5,
    miou_fn: Callable[[np.ndarray, np.ndarray, int], float] | None = None,
    raise_on_failure: bool = True,
    original_images: Sequence[np.ndarray] | None = None,
    local_fn: Callable[[keras.Model, np.ndarray], np.ndarray] | None = None,
) -> ParityReport:
    """Runs every artefact on `images` and compares it with the Keras model.

    Args:
        model: the Keras segmentation model that was exported.
        artefacts: `{format name: path}`, e.g. `{"saved_model": ".../deconvnet/1",
            "tflite_int8": ".../deconvnet_int8.tflite", "onnx": ".../deconvnet.onnx"}`.
        images: RGB [0, 255] images `(N, height, width, 3)` at the exported size.
        labels: optional ground truth `(N, height, width)`, 255 = ignore.
        thresholds: minimum label agreement (%) per format, merged over
            `DEFAULT_THRESHOLDS`; a format missing from both is not checked.
        warmup: untimed runs before timing. Defaults to `1`.
        runs: timed runs of one image; the median is reported. Defaults to `5`.
        miou_fn: `(y_true, y_pred, num_classes) -> mIoU in %`; defaults to this
            module's `mean_iou`.
        raise_on_failure: raise `ParityError` when a format is below its threshold.
            Defaults to `True`.
        original_images: RGB images `(H, W, 3)` of any sizes: with a
            `"saved_model"` artefact, adds the `saved_model_bytes` row (served
            `predict_image_bytes` vs `local_fn` at each image's own size).
        local_fn: `(model, image) -> (H, W, C)` probabilities, the local whole-image
            inference served labels must match; defaults to
            `whole_image.whole_image_probabilities`.

    Returns:
        A `ParityReport`; the first row is the Keras reference.

    Example:

    >>> import keras
    >>> from keras_deconvnet.export import export_onnx
    >>> model = keras.Sequential([keras.Input((16, 16, 3)), keras.layers.Conv2D(3, 1)])
    >>> path = export_onnx(model, "model.onnx")
    >>> images = np.random.default_rng(0).uniform(0, 255, (2, 16, 16, 3))
    >>> report = check_parity(model, {"onnx": path}, images, runs=1)
    >>> [row["format"] for row in report.rows], report.rows[1]["label_agreement"]
    (['keras', 'onnx'], 100.0)
    """
    images = np.asarray(images, np.float32)
    if images.ndim != 4 or images.shape[-1] != 3 or len(images) < 1:
        raise ValueError(
            f"`images` must be RGB images (N, height, width, 3). Received: shape={images.shape}"
        )
    _, num_classes = model_interface.segmentation_shapes(model, images.shape[1:3])
    if labels is not None:
        labels = np.asarray(labels)
        if labels.shape != images.shape[:3]:
            raise ValueError(
                f"`labels` must have shape {images.shape[:3]} (one label per pixel). "
                f"Received: shape={labels.shape}"
            )
    for name in artefacts:
        runtime_for(name)
    thresholds = {**DEFAULT_THRESHOLDS, **(thresholds or {})}
    miou_fn = miou_fn or mean_iou

    inference = tf.function(model_interface.inference_function(model))
    keras_probs = inference(images).numpy()
    keras_labels = keras_probs.argmax(-1)
    reference = {
        "format": "keras",
        "runtime": "tensorflow",
        "path": None,
        "size_bytes": None,
        "max_prob_diff": 0.0,
        "label_agreement": 100.0,
        "miou_vs_keras": 100.0,
        "miou_vs_labels": None if labels is None else miou_fn(labels, keras_labels, num_classes),
        "latency_ms": _latency_ms(lambda x: inference(x).numpy(), images[:1], warmup, runs),
        "integer_ops": None,
        "threshold": None,
        "passed": True,
    }
    report = ParityReport([reference])
    for name, path in artefacts.items():
        run = load_runner(name, path)
        probs = run(images)
        if probs.shape != keras_probs.shape:
            raise ValueError(
                f"The {name} artefact returned shape {probs.shape}; Keras returns "
                f"{keras_probs.shape}. Received: path={path}"
            )
        predicted = probs.argmax(-1)
        agreement = float(100.0 * np.mean(predicted == keras_labels))
        threshold = thresholds.get(name)
        ops = None
        if runtime_for(name) == "litert":
            from keras_deconvnet.export.tflite import op_counts

            ops = op_counts(path)
        report.rows.append({
            "format": name,
            "runtime": runtime_for(name),
            "path": str(path),
            "size_bytes": model_interface.file_size(path),
            "max_prob_diff": float(np.max(np.abs(probs - keras_probs))),
            "label_agreement": agreement,
            "miou_vs_keras": miou_fn(keras_labels, predicted, num_classes),
            "miou_vs_labels": None if labels is None else miou_fn(labels, predicted, num_classes),
            "latency_ms": _latency_ms(run, images[:1], warmup, runs),
            "integer_ops": None if ops is None else _integer_fraction(ops),
            "ops": ops,
            "threshold": threshold,
            "passed": threshold is None or agreement >= threshold,
        })
        del run
    if original_images is not None and "saved_model" in artefacts:
        report.rows.append(served_parity(
            model, artefacts["saved_model"], original_images,
            thresholds.get("saved_model_bytes"), local_fn, miou_fn, warmup, runs,
        ))
    failed = [row for row in report.rows if not row["passed"]]
    if failed and raise_on_failure:
        names = ", ".join(
            f"{row['format']} ({row['label_agreement']:.2f}% < {row['threshold']}%)"
            for row in failed
        )
        raise ParityError(
            f"Exported models disagree with Keras beyond the label agreement "
            f"thresholds: {names}.\n{report.table}",
            report,
        )
    return report


def _integer_fraction(ops: Mapping[str, Mapping[str, int]]) -> float:
    total = sum(c["count"] for c in ops.values())
    return 1.0 - sum(c["float"] for c in ops.values()) / total if total else 1.0


def encode_png(image: np.ndarray) -> bytes:
    """An RGB image `(H, W, 3)` (uint8 or float 0-255) as PNG bytes (lossless, so the
    served side decodes exactly these pixels)."""
    pixels = np.clip(np.round(np.asarray(image, np.float32)), 0, 255).astype(np.uint8)
    return tf.io.encode_png(pixels).numpy()


def served_parity(
    model: keras.Model,
    saved_model_path: str | os.PathLike,
    images: Sequence[np.ndarray],
    threshold: float | None = DEFAULT_THRESHOLDS["saved_model_bytes"],
    local_fn: Callable[[keras.Model, np.ndarray], np.ndarray] | None = None,
    miou_fn: Callable[[np.ndarray, np.ndarray, int], float] | None = None,
    warmup: int = 1,
    runs: int = 5,
) -> dict:
    """The `saved_model_bytes` parity row: served labels vs local ones at original sizes.

    Every image is PNG-encoded and sent through the SavedModel's
    `predict_image_bytes` in one batch (mixed sizes, padded with -1); its labels
    are compared, pixel for pixel at each image's own size, with the argmax of
    `local_fn(model, image)`.

    Args:
        model: the exported Keras model.
        saved_model_path: the SavedModel version directory.
        images: RGB images `(H, W, 3)` of any sizes (uint8 or float 0-255).
        threshold: minimum label agreement (%). Defaults to 99.9.
        local_fn: local inference `(model, image) -> (H, W, C)`; defaults to
            `whole_image.whole_image_probabilities`.
        miou_fn: `(y_true, y_pred, num_classes) -> mIoU in %`.
        warmup, runs: latency of one image through `predict_image_bytes`.

    Returns:
        The row (`format` `"saved_model_bytes"`; `max_prob_diff` is `None`).
    """
    images = [np.asarray(image) for image in images]
    if not images or any(i.ndim != 3 or i.shape[-1] != 3 for i in images):
        raise ValueError(
            "`original_images` must be a non-empty list of RGB images (H, W, 3). "
            f"Received shapes: {[i.shape for i in images]}"
        )
    local_fn = local_fn or whole_image.whole_image_probabilities
    miou_fn = miou_fn or mean_iou
    num_classes = int(model.outputs[0].shape[-1])
    signature = tf.saved_model.load(str(saved_model_path)).signatures["predict_image_bytes"]
    encoded = [encode_png(image) for image in images]
    served = signature(image_bytes=tf.constant(encoded))
    served_labels = served["labels"].numpy()
    sizes = served["image_sizes"].numpy()
    local, predicted = [], []
    for i, image in enumerate(images):
        height, width = image.shape[:2]
        if tuple(sizes[i]) != (height, width):
            raise ValueError(
                f"predict_image_bytes returned size {tuple(sizes[i])} for an image of "
                f"{(height, width)}."
            )
        predicted.append(served_labels[i, :height, :width].ravel())
        local.append(np.asarray(local_fn(model, image)).argmax(-1).ravel())
    local_labels, predicted = np.concatenate(local), np.concatenate(predicted)
    agreement = float(100.0 * np.mean(predicted == local_labels))
    one = tf.constant(encoded[:1])
    return {
        "format": "saved_model_bytes",
        "runtime": "tensorflow",
        "path": str(saved_model_path),
        "size_bytes": None,
        "max_prob_diff": None,
        "label_agreement": agreement,
        "miou_vs_keras": miou_fn(local_labels, predicted, num_classes),
        "miou_vs_labels": None,
        "latency_ms": _latency_ms(lambda _: signature(image_bytes=one), None, warmup, runs),
        "integer_ops": None,
        "images": [list(image.shape[:2]) for image in images],
        "threshold": threshold,
        "passed": threshold is None or agreement >= threshold,
    }


def _cell(value, spec):
    return "-" if value is None else format(value, spec)


def format_table(rows: Sequence[Mapping]) -> str:
    """The parity rows as a fixed-width text table."""
    header = (
        f"{'format':<17} {'size MB':>8} {'max|dp|':>9} {'agree %':>8} "
        f"{'mIoU/keras':>10} {'mIoU/GT':>8} {'ms/image':>9} {'int ops':>7} "
        f"{'min %':>6}  ok"
    )
    lines = [header, "-" * len(header)]
    for row in rows:
        size = None if row["size_bytes"] is None else row["size_bytes"] / 1e6
        integer = row.get("integer_ops")
        lines.append(
            f"{row['format']:<17} {_cell(size, '8.3f'):>8} "
            f"{_cell(row['max_prob_diff'], '9.2e'):>9} "
            f"{_cell(row['label_agreement'], '8.2f'):>8} "
            f"{_cell(row['miou_vs_keras'], '10.2f'):>10} "
            f"{_cell(row['miou_vs_labels'], '8.2f'):>8} "
            f"{_cell(row['latency_ms'], '9.2f'):>9} "
            f"{'-' if integer is None else format(100.0 * integer, '6.1f') + '%':>7} "
            f"{_cell(row['threshold'], '6.1f'):>6}  {'yes' if row['passed'] else 'NO'}"
        )
    if any(row["format"] == "saved_model_bytes" for row in rows):
        lines.append(
            "saved_model_bytes: predict_image_bytes vs local whole-image inference at "
            "the images' own sizes (labels only)."
        )
    return "\n".join(lines)
