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
  `runs` runs after `warmup` runs.

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

from keras_deconvnet.export import common
from keras_deconvnet.metrics import confusion_matrix, iou_from_confusion

# Minimum label agreement with Keras (% of pixels) per format: floors that catch a
# broken conversion (which agrees on about 1/num_classes of the pixels), not accuracy
# targets. Float formats differ from Keras by rounding only, so only near-tied pixels
# may flip. Quantization also flips unpooling switches (a window's argmax), which
# moves whole decoder regions: measured on the small test model (4 classes, 64x64,
# briefly trained) float16 agreed on 99.8% of pixels, dynamic-range on 93% and int8
# on 88%; pass tighter thresholds for a well-trained model.
DEFAULT_THRESHOLDS = {
    "saved_model": 99.9,
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
    if format_name == "saved_model":
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
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path), num_threads=os.cpu_count())
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
            interpreter.set_tensor(input_detail["index"], chunk.astype(np.float32))
            interpreter.invoke()
            outputs.append(interpreter.get_tensor(output_detail["index"]).copy())
        return np.concatenate(outputs)[: len(images)]

    return run


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

    Returns:
        A `ParityReport`; the first row is the Keras reference.

    Example:

    >>> report = check_parity(model, {"onnx": "out/deconvnet.onnx"}, images)
    >>> print(report.table)
    """
    images = np.asarray(images, np.float32)
    if images.ndim != 4 or images.shape[-1] != 3 or len(images) < 1:
        raise ValueError(
            f"`images` must be RGB images (N, height, width, 3). Received: shape={images.shape}"
        )
    _, num_classes = common.segmentation_shapes(model, images.shape[1:3])
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

    inference = tf.function(common.inference_function(model))
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
        report.rows.append({
            "format": name,
            "runtime": runtime_for(name),
            "path": str(path),
            "size_bytes": common.file_size(path),
            "max_prob_diff": float(np.max(np.abs(probs - keras_probs))),
            "label_agreement": agreement,
            "miou_vs_keras": miou_fn(keras_labels, predicted, num_classes),
            "miou_vs_labels": None if labels is None else miou_fn(labels, predicted, num_classes),
            "latency_ms": _latency_ms(run, images[:1], warmup, runs),
            "threshold": threshold,
            "passed": threshold is None or agreement >= threshold,
        })
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


def _cell(value, spec):
    return "-" if value is None else format(value, spec)


def format_table(rows: Sequence[Mapping]) -> str:
    """The parity rows as a fixed-width text table."""
    header = (
        f"{'format':<16} {'size MB':>8} {'max|dp|':>9} {'agree %':>8} "
        f"{'mIoU/keras':>10} {'mIoU/GT':>8} {'ms/image':>9} {'min %':>6}  ok"
    )
    lines = [header, "-" * len(header)]
    for row in rows:
        size = None if row["size_bytes"] is None else row["size_bytes"] / 1e6
        lines.append(
            f"{row['format']:<16} {_cell(size, '8.3f'):>8} "
            f"{_cell(row['max_prob_diff'], '9.2e'):>9} "
            f"{_cell(row['label_agreement'], '8.2f'):>8} "
            f"{_cell(row['miou_vs_keras'], '10.2f'):>10} "
            f"{_cell(row['miou_vs_labels'], '8.2f'):>8} "
            f"{_cell(row['latency_ms'], '9.2f'):>9} "
            f"{_cell(row['threshold'], '6.1f'):>6}  {'yes' if row['passed'] else 'NO'}"
        )
    return "\n".join(lines)
