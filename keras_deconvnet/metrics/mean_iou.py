"""Mean intersection-over-union as the PASCAL VOC devkit computes it, in numpy and Keras.

The VOC segmentation benchmark (`VOCevalseg.m`) accumulates one confusion matrix over
all pixels of all images whose ground truth is not the void label 255, then reads
per-class IoU `TP / (TP + FP + FN)` off it, and averages over the classes. Scores
are therefore *not* averaged per image or per batch: big objects weigh more.

`confusion_matrix` and `iou_from_confusion` are the numpy reference (use them on
label maps, e.g. after instance-wise inference); `MeanIoU` is the same computation
as a Keras metric for `model.fit` / `model.evaluate`; `format_iou_table` prints a
per-class table like Table 1 of the paper.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import keras
import numpy as np
from keras import ops

from keras_deconvnet.labels import IGNORE_LABEL


def _check_num_classes(num_classes) -> int:
    if (
        isinstance(num_classes, bool)
        or not isinstance(num_classes, (int, np.integer))
        or num_classes < 1
    ):
        raise ValueError(
            f"`num_classes` must be a positive int. Received: num_classes={num_classes!r}"
        )
    return int(num_classes)


def confusion_matrix(
    labels: np.ndarray,
    predictions: np.ndarray,
    num_classes: int,
    ignore_label: int | None = IGNORE_LABEL,
) -> np.ndarray:
    """Counts pixels per (ground truth, predicted) class pair, skipping void pixels.

    Args:
        labels: integer array of ground-truth classes, any shape.
        predictions: integer array of predicted classes, the same shape as `labels`
            (take the argmax of score maps first).
        num_classes: int, number of classes (background included).
        ignore_label: ground-truth value of pixels to skip (VOC's void border,
            `255`), or `None` to count every pixel.

    Returns:
        An int64 array `(num_classes, num_classes)`; rows are ground truth and
        columns predictions, so `cm[i, j]` counts pixels of class `i` predicted `j`.

    Raises:
        ValueError: if the shapes differ or a label (other than `ignore_label`) or
            a prediction is outside `[0, num_classes)` (the VOC devkit errors too).

    Example:

    >>> confusion_matrix([[0, 1], [1, 255]], [[0, 1], [0, 1]], num_classes=2).tolist()
    [[1, 0], [1, 1]]
    """
    num_classes = _check_num_classes(num_classes)
    labels = np.asarray(labels)
    predictions = np.asarray(predictions)
    if labels.shape != predictions.shape:
        raise ValueError(
            "`labels` and `predictions` must have the same shape. "
            f"Received: labels.shape={labels.shape}, predictions.shape={predictions.shape}"
        )
    for arg, value in (("labels", labels), ("predictions", predictions)):
        if value.size and not np.issubdtype(value.dtype, np.integer):
            raise ValueError(
                f"`{arg}` must hold integer class ids (take the argmax of score maps "
                f"first). Received: {arg}.dtype={value.dtype}"
            )
    labels = labels.reshape(-1).astype(np.int64)
    predictions = predictions.reshape(-1).astype(np.int64)
    if ignore_label is not None:
        keep = labels != ignore_label
        labels, predictions = labels[keep], predictions[keep]
    for arg, value in (("labels", labels), ("predictions", predictions)):
        if value.size and (value.min() < 0 or value.max() >= num_classes):
            bad = value[(value < 0) | (value >= num_classes)][0]
            raise ValueError(
                f"`{arg}` must be in [0, num_classes={num_classes})"
                + (f" or equal ignore_label={ignore_label}" if arg == "labels" else "")
                + f". Received a value of {bad}"
            )
    counts = np.bincount(labels * num_classes + predictions, minlength=num_classes**2)
    return counts.reshape(num_classes, num_classes).astype(np.int64)


def iou_from_confusion(cm: np.ndarray) -> dict:
    """Per-class IoU, mean IoU and accuracies from a confusion matrix.

    As the VOC devkit: IoU of class `c` is `TP / (TP + FP + FN)` with
    `TP = cm[c, c]`, `FN = row sum - TP`, `FP = column sum - TP`. Classes absent
    from both ground truth and predictions (`TP + FP + FN == 0`) get NaN and are
    left out of the mean (on VOC every class is present, so this is exactly the
    devkit's mean over all 21 classes).

    Args:
        cm: square array `(num_classes, num_classes)`, rows ground truth (as
            returned by `confusion_matrix` or `MeanIoU.confusion_matrix()`).

    Returns:
        A dict with, as fractions in [0, 1]:
        `"per_class_iou"` (float64 array, NaN for absent classes),
        `"mean_iou"` (mean over present classes; NaN if none),
        `"pixel_accuracy"` (correct / counted pixels),
        `"mean_class_accuracy"` (mean over classes with ground-truth pixels of
        `TP / row sum`), `"per_class_accuracy"` (NaN where no ground truth),
        `"present"` (bool array) and `"num_pixels"` (int).

    Example:

    >>> result = iou_from_confusion(np.array([[3, 1], [0, 4]]))
    >>> result["per_class_iou"].round(3).tolist(), round(result["mean_iou"], 3)
    ([0.75, 0.8], 0.775)
    """
    cm = np.asarray(cm)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1] or cm.shape[0] < 1:
        raise ValueError(
            "`cm` must be a square matrix (num_classes, num_classes). "
            f"Received: cm.shape={cm.shape}"
        )
    if np.any(cm < 0):
        raise ValueError("`cm` must hold non-negative counts. Received negative entries.")
    cm = cm.astype(np.float64)
    tp = np.diag(cm)
    gt = cm.sum(axis=1)
    pred = cm.sum(axis=0)
    union = gt + pred - tp
    present = union > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(present, tp / np.where(present, union, 1.0), np.nan)
        class_acc = np.where(gt > 0, tp / np.where(gt > 0, gt, 1.0), np.nan)
    total = cm.sum()
    return {
        "per_class_iou": iou,
        "mean_iou": float(iou[present].mean()) if present.any() else math.nan,
        "pixel_accuracy": float(tp.sum() / total) if total > 0 else math.nan,
        "mean_class_accuracy": float(np.nanmean(class_acc)) if (gt > 0).any() else math.nan,
        "per_class_accuracy": class_acc,
        "present": present,
        "num_pixels": int(total),
    }


def format_iou_table(
    result: dict,
    class_names: Sequence[str] | None = None,
    transpose: bool = True,
    digits: int = 1,
) -> str:
    """Formats `iou_from_confusion`'s result as a table of percentages.

    Args:
        result: the dict returned by `iou_from_confusion` (or `MeanIoU.result_dict()`).
        class_names: one name per class; defaults to `class_0`, `class_1`, ...
        transpose: `True` (default) for one line per class, which fits any
            terminal; `False` for the paper's Table 1 layout (one header row of
            class names, one row of values, mean last).
        digits: decimals of the percentages. Defaults to `1`, as in the paper.

    Returns:
        The table as a string; absent classes show `-`.

    Example:

    >>> result = iou_from_confusion(np.array([[3, 1], [0, 4]]))
    >>> print(format_iou_table(result, ["background", "cat"]))
    class      IoU (%)
    background    75.0
    cat           80.0
    ------------------
    mean IoU      77.5
    pixel acc.    87.5
    mean acc.     87.5
    """
    iou = np.asarray(result["per_class_iou"], dtype=np.float64)
    if class_names is None:
        class_names = [f"class_{i}" for i in range(len(iou))]
    class_names = [str(name) for name in class_names]
    if len(class_names) != len(iou):
        raise ValueError(
            f"`class_names` must have one name per class ({len(iou)}). "
            f"Received {len(class_names)} names: {class_names}"
        )

    def pct(value):
        return "-" if value is None or np.isnan(value) else f"{100 * value:.{digits}f}"

    if not transpose:
        names = class_names + ["mean"]
        values = [pct(v) for v in iou] + [pct(result["mean_iou"])]
        widths = [max(len(n), len(v)) for n, v in zip(names, values)]
        header = " ".join(n.rjust(w) for n, w in zip(names, widths))
        row = " ".join(v.rjust(w) for v, w in zip(values, widths))
        return f"{header}\n{row}"

    summary = [
        ("mean IoU", result["mean_iou"]),
        ("pixel acc.", result.get("pixel_accuracy", math.nan)),
        ("mean acc.", result.get("mean_class_accuracy", math.nan)),
    ]
    name_width = max(len(n) for n in class_names + [s[0] for s in summary] + ["class"])
    value_width = max(len("IoU (%)"), 4 + digits + 1)
    def line(name, text):
        return f"{name.ljust(name_width)} {text.rjust(value_width)}"

    lines = [line("class", "IoU (%)")]
    lines += [line(n, pct(v)) for n, v in zip(class_names, iou)]
    lines.append("-" * (name_width + 1 + value_width))
    lines += [line(n, pct(v)) for n, v in summary]
    return "\n".join(lines)


@keras.saving.register_keras_serializable(package="keras_deconvnet")
class MeanIoU(keras.metrics.Metric):
    """Mean IoU over the classes present, accumulated in a confusion matrix.

    The same numbers as `iou_from_confusion(confusion_matrix(...))`, the VOC devkit's
    computation: one confusion matrix over every pixel seen since the last reset
    (not a per-batch average), pixels whose ground truth is `ignore_class` skipped,
    mean over classes with `TP + FP + FN > 0`. Works in `model.fit`/`evaluate`, with
    `jit_compile`, and under `tf.distribute` strategies (the matrix is a sum-
    aggregated variable, so each replica counts its pixels and reads add them up).
    Written in `keras.ops`: the same counts on TensorFlow, JAX and PyTorch.

    Why not `keras.metrics.MeanIoU`: in Keras 3.15 it does skip `ignore_class` and
    average over the classes present, but it needs `sparse_y_pred=False` for score
    maps (with the default it casts logits to class ids), adds an epsilon to every
    denominator (the last digits differ from the devkit), and exposes neither the
    matrix nor per-class IoU or accuracies. This class pins the VOC definition
    whatever the Keras version, shares it with the numpy reference
    (`result_dict()` is `iou_from_confusion` of the same matrix), and counts in
    float64 (exact to 2^53 pixels, and reduced across replicas like any float); on
    JAX without `jax_enable_x64`, in a compensated pair of float32 matrices (the
    same counts: their sum is exact far past a dataset's pixels).

    Args:
        num_classes: int, number of classes (background included).
        ignore_class: ground-truth value to skip (`255`, VOC's void) or `None`.
            Ground-truth or predicted values outside `[0, num_classes)` are
            skipped as well (in a graph this cannot raise).
        name: metric name. Defaults to `"mean_iou"` (logged as `val_mean_iou`).
        dtype: dtype of the result. Defaults to `"float32"`.

    Call arguments (`update_state`):
        y_true: integer masks `(batch, height, width)` or `(..., 1)`.
        y_pred: scores `(batch, height, width, num_classes)`, logits or
            probabilities (the argmax is the same), or integer label maps shaped
            like `y_true`.
        sample_weight: optional per-pixel or per-image weights.

    Example:

    >>> import numpy as np
    >>> metric = MeanIoU(num_classes=2)
    >>> y_true = np.array([[[0, 1], [1, 255]]])
    >>> logits = np.array([[[[2., 0.], [0., 2.]], [[2., 0.], [0., 2.]]]])
    >>> metric.update_state(y_true, logits)
    >>> round(float(metric.result()), 4)  # IoU 1/2 and 1/2
    0.5
    >>> metric.confusion_matrix().tolist()
    [[1, 0], [1, 1]]
    """

    def __init__(
        self,
        num_classes: int,
        ignore_class: int | None = IGNORE_LABEL,
        name: str = "mean_iou",
        dtype=None,
    ):
        super().__init__(name=name, dtype=dtype or "float32")
        self.num_classes = _check_num_classes(num_classes)
        if ignore_class is not None and (
            isinstance(ignore_class, bool) or not isinstance(ignore_class, (int, np.integer))
        ):
            raise ValueError(
                f"`ignore_class` must be an int or None. Received: ignore_class={ignore_class!r}"
            )
        self.ignore_class = None if ignore_class is None else int(ignore_class)
        self._direction = "up"
        count_dtype = "float64" if float64_available() else "float32"
        self.total_cm = self.add_variable(
            shape=(self.num_classes, self.num_classes),
            initializer="zeros",
            dtype=count_dtype,
            aggregation="sum",
            name="total_confusion_matrix",
        )
        self.total_cm_error = None
        if count_dtype != "float64":
            self.total_cm_error = self.add_variable(
                shape=(self.num_classes, self.num_classes),
                initializer="zeros",
                dtype=count_dtype,
                aggregation="sum",
                name="total_confusion_matrix_error",
            )

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_true = ops.convert_to_tensor(y_true)
        y_pred = ops.convert_to_tensor(y_pred)
        if _is_float(y_pred):
            y_pred = ops.argmax(y_pred, axis=-1)
        if _is_float(y_true):
            y_true = ops.round(y_true)
        y_true = ops.cast(y_true, "int32")
        y_pred = ops.cast(y_pred, "int32")
        if len(y_true.shape) == len(y_pred.shape) + 1:
            y_true = ops.squeeze(y_true, axis=-1)
        dtype = self.total_cm.dtype
        weights = None
        if sample_weight is not None:
            weights = _broadcast_weights(sample_weight, y_true, dtype)
        y_true = ops.reshape(y_true, (-1,))
        y_pred = ops.reshape(y_pred, (-1,))
        n = self.num_classes
        valid = (y_true >= 0) & (y_true < n) & (y_pred >= 0) & (y_pred < n)
        if self.ignore_class is not None:
            valid = valid & ops.not_equal(y_true, self.ignore_class)
        valid_weights = ops.cast(valid, dtype)
        if weights is not None:
            valid_weights = valid_weights * weights
        index = ops.where(valid, y_true * n + y_pred, 0)
        counts = ops.reshape(
            ops.segment_sum(valid_weights, index, num_segments=n * n), (n, n))
        if self.total_cm_error is None:
            self.total_cm.assign_add(counts)
            return
        # Compensated (two-sum) accumulation in float32 pairs where float64 is off
        # (JAX without x64): `total_cm + total_cm_error` stays exact.
        total = ops.convert_to_tensor(self.total_cm)
        summed = total + counts
        added = summed - total
        error = (total - (summed - added)) + (counts - added)
        self.total_cm.assign(summed)
        self.total_cm_error.assign_add(error)

    def result(self):
        cm = ops.convert_to_tensor(self.total_cm)
        if self.total_cm_error is not None:
            cm = cm + ops.convert_to_tensor(self.total_cm_error)
        tp = ops.diagonal(cm)
        union = ops.sum(cm, axis=0) + ops.sum(cm, axis=1) - tp
        present = union > 0
        iou = ops.where(present, tp / ops.where(present, union, 1.0), 0.0)
        count = ops.sum(ops.cast(present, cm.dtype))
        mean = ops.sum(iou) / ops.maximum(count, 1.0)
        return ops.cast(mean, self.dtype)

    def reset_state(self):
        for variable in (self.total_cm, self.total_cm_error):
            if variable is not None:
                variable.assign(ops.zeros(variable.shape, variable.dtype))

    def confusion_matrix(self) -> np.ndarray:
        """The accumulated matrix as int64 numpy, rows ground truth (summed over replicas)."""
        cm = keras.ops.convert_to_numpy(self.total_cm).astype(np.float64)
        if self.total_cm_error is not None:
            cm += keras.ops.convert_to_numpy(self.total_cm_error)
        return np.rint(cm).astype(np.int64)

    def result_dict(self) -> dict:
        """`iou_from_confusion` of the accumulated matrix: per-class IoU, accuracies."""
        return iou_from_confusion(self.confusion_matrix())

    def get_config(self):
        return {
            "name": self.name,
            "dtype": self.dtype,
            "num_classes": self.num_classes,
            "ignore_class": self.ignore_class,
        }


def float64_available() -> bool:
    """Whether this backend computes in float64 (JAX only with `jax_enable_x64`)."""
    if keras.config.backend() != "jax":
        return True
    import jax

    return bool(jax.config.jax_enable_x64)


def _is_float(x) -> bool:
    return "float" in keras.backend.standardize_dtype(x.dtype)


def _broadcast_weights(sample_weight, y_true, dtype):
    """Per-pixel weights, flattened: scalar, per-image `(batch,)` or per-pixel."""
    weights = ops.cast(ops.convert_to_tensor(sample_weight), dtype)
    rank = len(y_true.shape)
    if len(weights.shape) == rank + 1 and weights.shape[-1] == 1:
        weights = ops.squeeze(weights, axis=-1)
    while 0 < len(weights.shape) < rank:
        weights = ops.expand_dims(weights, -1)
    return ops.reshape(ops.broadcast_to(weights, ops.shape(y_true)), (-1,))
