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

Each artefact runs through `runtimes.load_runner`: TFLite files with integer input
(int8 files' default uint8) get the pixels quantized with the input's own scale and
zero point, and their outputs dequantized.

With `original_images` and a SavedModel among the artefacts, two more rows,
`saved_model_bytes` (PNG) and `saved_model_jpeg` (JPEG, quality 85, decoded locally
by `load_image`'s decoder), compare the SavedModel's `predict_image_bytes` on images
of their own sizes with local whole-image inference at those sizes
(`whole_image.whole_image_probabilities`: the one resize convention both follow);
their `max_prob_diff` is empty (the signature returns labels only).

`check_parity` raises `ParityError` (with the table) when a format's label agreement
is below its threshold (`ParityConfig` holds the thresholds and the timing settings).
"""

from __future__ import annotations

import numbers
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import keras
import numpy as np
import tensorflow as tf

from keras_deconvnet.export import model_interface
from keras_deconvnet.export.runtimes import load_runner, runtime_for
from keras_deconvnet.export.tflite_inspection import integer_fraction, op_counts
from keras_deconvnet.inference import whole_image
from keras_deconvnet.labels import IGNORE_LABEL
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
    "saved_model_jpeg": 99.9,
    "onnx": 99.9,
    "tflite_float32": 99.9,
    "tflite_float16": 99.0,
    "tflite_dynamic": 85.0,
    "tflite_int8": 80.0,
}
JPEG_QUALITY = 85


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


@dataclass
class ParityConfig:
    """How `check_parity` compares exported artefacts with the Keras model.

    Args:
        thresholds: minimum label agreement (%) per format (and for
            `"saved_model_bytes"`), merged over `DEFAULT_THRESHOLDS`; a format
            missing from both, or given `None`, is not checked.
        warmup: untimed runs before timing. Defaults to `1`.
        runs: timed runs of one image; the median is reported. Defaults to `5`.
        miou_fn: `(y_true, y_pred, num_classes) -> mIoU in %`; defaults to this
            module's `mean_iou`.
        raise_on_failure: raise `ParityError` when a format is below its threshold.
            Defaults to `True`.
        local_fn: `(model, image) -> (H, W, C)` probabilities, the local whole-image
            inference served labels must match (`saved_model_bytes`); defaults to
            `whole_image.whole_image_probabilities`.

    Example:

    >>> config = ParityConfig(thresholds={"tflite_int8": 90.0}, runs=1)
    >>> config.threshold("tflite_int8"), config.threshold("onnx")
    (90.0, 99.9)
    """

    thresholds: Mapping[str, float | None] | None = None
    warmup: int = 1
    runs: int = 5
    miou_fn: Callable[[np.ndarray, np.ndarray, int], float] | None = None
    raise_on_failure: bool = True
    local_fn: Callable[[keras.Model, np.ndarray], np.ndarray] | None = None

    def __post_init__(self) -> None:
        for name, value, minimum in (("warmup", self.warmup, 0), ("runs", self.runs, 1)):
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise ValueError(
                    f"`{name}` must be an int >= {minimum}. Received: {name}={value!r}"
                )
        if self.thresholds is not None and not isinstance(self.thresholds, Mapping):
            raise ValueError(
                "`thresholds` must map format names to percentages. "
                f"Received: thresholds={self.thresholds!r}"
            )
        for name, value in (self.thresholds or {}).items():
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, numbers.Real)
            ):
                raise ValueError(
                    f"Thresholds must be numbers (percent) or None. Received: {name}={value!r}"
                )
        for name in ("miou_fn", "local_fn"):
            if getattr(self, name) is not None and not callable(getattr(self, name)):
                raise ValueError(f"`{name}` must be callable. Received: {getattr(self, name)!r}")
        self.miou_fn = self.miou_fn or mean_iou
        self.local_fn = self.local_fn or whole_image.whole_image_probabilities

    def threshold(self, format_name: str) -> float | None:
        """The minimum label agreement (%) of a format, `None` if not checked."""
        return {**DEFAULT_THRESHOLDS, **(self.thresholds or {})}.get(format_name)


def _latency_ms(run, image, warmup, runs):
    for _ in range(warmup):
        run(image)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        run(image)
        times.append(time.perf_counter() - start)
    return float(np.median(times) * 1000.0)


@dataclass(frozen=True)
class _Reference:
    """The Keras model's outputs every artefact is compared with."""

    images: np.ndarray
    labels: np.ndarray | None
    probabilities: np.ndarray
    num_classes: int

    @property
    def predicted(self) -> np.ndarray:
        return self.probabilities.argmax(-1)


def _checked_images(images: np.ndarray) -> np.ndarray:
    images = np.asarray(images, np.float32)
    if images.ndim != 4 or images.shape[-1] != 3 or len(images) < 1:
        raise ValueError(
            f"`images` must be RGB images (N, height, width, 3). Received: shape={images.shape}"
        )
    return images


def _checked_labels(labels: np.ndarray | None, images: np.ndarray) -> np.ndarray | None:
    if labels is None:
        return None
    labels = np.asarray(labels)
    if labels.shape != images.shape[:3]:
        raise ValueError(
            f"`labels` must have shape {images.shape[:3]} (one label per pixel). "
            f"Received: shape={labels.shape}"
        )
    return labels


def _keras_row(inference, reference: _Reference, config: ParityConfig) -> dict:
    labels = reference.labels
    return {
        "format": "keras",
        "runtime": "tensorflow",
        "path": None,
        "size_bytes": None,
        "max_prob_diff": 0.0,
        "label_agreement": 100.0,
        "miou_vs_keras": 100.0,
        "miou_vs_labels": None if labels is None
        else config.miou_fn(labels, reference.predicted, reference.num_classes),
        "latency_ms": _latency_ms(
            lambda x: inference(x).numpy(), reference.images[:1], config.warmup, config.runs
        ),
        "integer_ops": None,
        "threshold": None,
        "passed": True,
    }


def _artefact_row(
    name: str, path: str | os.PathLike, reference: _Reference, config: ParityConfig
) -> dict:
    """Runs one artefact in its runtime and compares it with `reference`."""
    run = load_runner(name, path)
    probs = run(reference.images)
    if probs.shape != reference.probabilities.shape:
        raise ValueError(
            f"The {name} artefact returned shape {probs.shape}; Keras returns "
            f"{reference.probabilities.shape}. Received: path={path}"
        )
    predicted = probs.argmax(-1)
    agreement = float(100.0 * np.mean(predicted == reference.predicted))
    threshold = config.threshold(name)
    ops = op_counts(path) if runtime_for(name) == "litert" else None
    miou, labels = config.miou_fn, reference.labels
    return {
        "format": name,
        "runtime": runtime_for(name),
        "path": str(path),
        "size_bytes": model_interface.file_size(path),
        "max_prob_diff": float(np.max(np.abs(probs - reference.probabilities))),
        "label_agreement": agreement,
        "miou_vs_keras": miou(reference.predicted, predicted, reference.num_classes),
        "miou_vs_labels": None if labels is None
        else miou(labels, predicted, reference.num_classes),
        "latency_ms": _latency_ms(run, reference.images[:1], config.warmup, config.runs),
        "integer_ops": None if ops is None else integer_fraction(ops),
        "ops": ops,
        "threshold": threshold,
        "passed": threshold is None or agreement >= threshold,
    }


def _raise_on_failure(report: ParityReport) -> None:
    failed = [row for row in report.rows if not row["passed"]]
    if not failed:
        return
    names = ", ".join(
        f"{row['format']} ({row['label_agreement']:.2f}% < {row['threshold']}%)"
        for row in failed
    )
    raise ParityError(
        f"Exported models disagree with Keras beyond the label agreement "
        f"thresholds: {names}.\n{report.table}",
        report,
    )


def check_parity(
    model: keras.Model,
    artefacts: Mapping[str, str | os.PathLike],
    images: np.ndarray,
    labels: np.ndarray | None = None,
    config: ParityConfig | None = None,
    *,
    original_images: Sequence[np.ndarray] | None = None,
) -> ParityReport:
    """Runs every artefact on `images` and compares it with the Keras model.

    Args:
        model: the Keras segmentation model that was exported.
        artefacts: `{format name: path}`, e.g. `{"saved_model": ".../deconvnet/1",
            "tflite_int8": ".../deconvnet_int8.tflite", "onnx": ".../deconvnet.onnx"}`.
        images: RGB [0, 255] images `(N, height, width, 3)` at the exported size.
        labels: optional ground truth `(N, height, width)`, 255 = ignore.
        config: thresholds, timing and metric settings (`ParityConfig`); defaults
            to `ParityConfig()`.
        original_images: RGB images `(H, W, 3)` of any sizes: with a
            `"saved_model"` artefact, adds the `saved_model_bytes` row (served
            `predict_image_bytes` vs `config.local_fn` at each image's own size).

    Returns:
        A `ParityReport`; the first row is the Keras reference.

    Example:

    >>> import keras
    >>> from keras_deconvnet.export import export_onnx
    >>> model = keras.Sequential([keras.Input((16, 16, 3)), keras.layers.Conv2D(3, 1)])
    >>> path = export_onnx(model, "model.onnx")
    >>> images = np.random.default_rng(0).uniform(0, 255, (2, 16, 16, 3))
    >>> report = check_parity(model, {"onnx": path}, images, config=ParityConfig(runs=1))
    >>> [row["format"] for row in report.rows], report.rows[1]["label_agreement"]
    (['keras', 'onnx'], 100.0)
    """
    config = config or ParityConfig()
    images = _checked_images(images)
    _, num_classes = model_interface.segmentation_shapes(model, images.shape[1:3])
    labels = _checked_labels(labels, images)
    for name in artefacts:
        runtime_for(name)
    inference = tf.function(model_interface.inference_function(model))
    reference = _Reference(images, labels, inference(images).numpy(), num_classes)
    report = ParityReport([_keras_row(inference, reference, config)])
    for name, path in artefacts.items():
        report.rows.append(_artefact_row(name, path, reference, config))
    if original_images is not None and "saved_model" in artefacts:
        for encoding in SERVED_ROWS.values():
            report.rows.append(served_parity(
                model, artefacts["saved_model"], original_images, config, encoding
            ))
    if config.raise_on_failure:
        _raise_on_failure(report)
    return report


def encode_png(image: np.ndarray) -> bytes:
    """An RGB image `(H, W, 3)` (uint8 or float 0-255) as PNG bytes (lossless, so the
    served side decodes exactly these pixels)."""
    pixels = np.clip(np.round(np.asarray(image, np.float32)), 0, 255).astype(np.uint8)
    return tf.io.encode_png(pixels).numpy()


def encode_jpeg(image: np.ndarray, quality: int = JPEG_QUALITY) -> bytes:
    """An RGB image `(H, W, 3)` as JPEG bytes (Pillow, 4:2:0), as a camera or a
    browser upload sends it: lossy, so both sides must decode it the same way."""
    import io

    from PIL import Image

    pixels = np.clip(np.round(np.asarray(image, np.float32)), 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


# The served rows: their name, how the images are encoded, and what the local side
# decodes (PNG: the pixels themselves; JPEG: the same bytes, through `load_image`'s
# decoder).
SERVED_ROWS = {"saved_model_bytes": "png", "saved_model_jpeg": "jpeg"}


def served_parity(
    model: keras.Model,
    saved_model_path: str | os.PathLike,
    images: Sequence[np.ndarray],
    config: ParityConfig | None = None,
    encoding: str = "png",
) -> dict:
    """A served parity row: served labels vs local ones at the images' own sizes.

    Every image is encoded (`encoding="png"`: the `saved_model_bytes` row, lossless;
    `"jpeg"`: the `saved_model_jpeg` row, quality 85) and sent through the
    SavedModel's `predict_image_bytes` in one batch (mixed sizes, padded with -1);
    its labels are compared, pixel for pixel at each image's own size, with the
    argmax of `config.local_fn(model, image)`, where a JPEG's local image is its
    bytes decoded as `deconvnet predict` decodes a file (`images.decode_image_bytes`).

    Args:
        model: the exported Keras model.
        saved_model_path: the SavedModel version directory.
        images: RGB images `(H, W, 3)` of any sizes (uint8 or float 0-255).
        config: the row's threshold (default 99.9%), `local_fn`, `miou_fn`, and
            `warmup`/`runs` for the latency of one image through
            `predict_image_bytes`; defaults to `ParityConfig()`.
        encoding: `"png"` or `"jpeg"`.

    Returns:
        The row (`format` `"saved_model_bytes"` or `"saved_model_jpeg"`;
        `max_prob_diff` is `None`).
    """
    from keras_deconvnet.inference.images import decode_image_bytes

    config = config or ParityConfig()
    rows = {v: k for k, v in SERVED_ROWS.items()}
    if encoding not in rows:
        raise ValueError(f"`encoding` must be 'png' or 'jpeg'. Received: {encoding!r}")
    images = [np.asarray(image) for image in images]
    if not images or any(i.ndim != 3 or i.shape[-1] != 3 for i in images):
        raise ValueError(
            "`original_images` must be a non-empty list of RGB images (H, W, 3). "
            f"Received shapes: {[i.shape for i in images]}"
        )
    num_classes = int(model.outputs[0].shape[-1])
    signature = tf.saved_model.load(str(saved_model_path)).signatures["predict_image_bytes"]
    if encoding == "png":
        encoded = [encode_png(image) for image in images]
    else:
        encoded = [encode_jpeg(image) for image in images]
        images = [decode_image_bytes(data, max_pixels=None) for data in encoded]
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
        local.append(np.asarray(config.local_fn(model, image)).argmax(-1).ravel())
    local_labels, predicted = np.concatenate(local), np.concatenate(predicted)
    agreement = float(100.0 * np.mean(predicted == local_labels))
    name = rows[encoding]
    threshold = config.threshold(name)
    one = tf.constant(encoded[:1])
    return {
        "format": name,
        "runtime": "tensorflow",
        "path": str(saved_model_path),
        "size_bytes": None,
        "max_prob_diff": None,
        "label_agreement": agreement,
        "miou_vs_keras": config.miou_fn(local_labels, predicted, num_classes),
        "miou_vs_labels": None,
        "latency_ms": _latency_ms(
            lambda _: signature(image_bytes=one), None, config.warmup, config.runs
        ),
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
    if any(row["format"] in SERVED_ROWS for row in rows):
        lines.append(
            "saved_model_bytes / saved_model_jpeg: predict_image_bytes (PNG / JPEG "
            "quality 85) vs local whole-image inference at the images' own sizes "
            "(labels only)."
        )
    return "\n".join(lines)
