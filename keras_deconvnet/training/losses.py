"""Optional class balancing: a class-weighted cross-entropy, median-frequency weights
and the weights of a training stage (`stage_class_weights`).

The original trained with plain softmax cross-entropy (`SOFTMAX_LOSS` with
`ignore_label: 255` in `training/00{1,2}_stage_*/stage_*_train.prototxt`); class
balancing is an option for datasets where small classes drown (off by default).
Weights multiply each pixel's loss by its true class's weight; the sum is divided
by the number of non-ignored pixels, as the unweighted loss is, so weights of 1
give exactly `SparseCategoricalCrossentropy(ignore_class=255)`. The metrics are
not weighted (the weights are in the loss, not in `sample_weight`).
"""

from __future__ import annotations

import os
import warnings

import keras
import numpy as np
from keras import ops

from keras_deconvnet import atomic_io
from keras_deconvnet.labels import IGNORE_LABEL
from keras_deconvnet.training.checkpoints import read_json_file
from keras_deconvnet.training.config import TrainingConfig


@keras.saving.register_keras_serializable(package="keras_deconvnet")
class ClassWeightedCrossentropy(keras.losses.Loss):
    """Sparse softmax cross-entropy with a weight per class, ignoring one label.

    Args:
        class_weights: one float >= 0 per class.
        from_logits: whether predictions are logits. Defaults to `True`.
        ignore_class: label excluded from the loss. Defaults to `255`.
        name: the loss name. Defaults to `"class_weighted_crossentropy"`.
        **kwargs: other `keras.losses.Loss` arguments (`reduction`, `dtype`).

    Raises:
        ValueError: on an empty or negative `class_weights`.

    Example:

    >>> loss = ClassWeightedCrossentropy([1.0, 2.0])
    >>> y = np.array([[0, 1, 255]])
    >>> logits = np.zeros((1, 3, 2), "float32")
    >>> round(float(loss(y, logits)), 4)  # (1 + 2) * log(2) / 2 valid pixels
    1.0397
    """

    def __init__(self, class_weights, from_logits: bool = True,
                 ignore_class: int | None = IGNORE_LABEL,
                 name: str = "class_weighted_crossentropy", **kwargs):
        super().__init__(name=name, **kwargs)
        weights = [float(w) for w in class_weights]
        if not weights or min(weights) < 0:
            raise ValueError(
                f"`class_weights` must be non-empty and >= 0. Received: {class_weights!r}"
            )
        self.class_weights = weights
        self.from_logits = from_logits
        self.ignore_class = ignore_class

    def call(self, y_true, y_pred):
        y_true = ops.cast(y_true, "int32")
        if len(y_true.shape) == len(y_pred.shape):
            y_true = ops.squeeze(y_true, -1)
        valid = ops.ones_like(y_true, dtype="bool")
        if self.ignore_class is not None:
            valid = ops.not_equal(y_true, self.ignore_class)
        labels = ops.where(valid, y_true, 0)
        loss = keras.losses.sparse_categorical_crossentropy(
            labels, y_pred, from_logits=self.from_logits)
        weights = ops.take(ops.convert_to_tensor(self.class_weights, loss.dtype), labels)
        loss = ops.where(valid, loss * weights, 0.0)
        # Scaled by pixels / valid pixels, so that "sum_over_batch_size" divides by
        # the valid pixels, as Keras's own `ignore_class` mask does.
        size = ops.cast(ops.size(valid), loss.dtype)
        count = ops.sum(ops.cast(valid, loss.dtype))
        return loss * ops.divide_no_nan(size, count)

    def get_config(self):
        config = super().get_config()
        config.update({"class_weights": self.class_weights, "from_logits": self.from_logits,
                       "ignore_class": self.ignore_class})
        return config


def median_frequency_weights(
    dataset,
    num_classes: int,
    num_batches: int | None = 100,
    ignore_class: int = IGNORE_LABEL,
) -> list[float]:
    """Median-frequency class weights (Eigen & Fergus, ICCV 2015) from training masks.

    `freq(c)` = pixels of class `c` / pixels of the images where `c` appears;
    `weight(c) = median(freq) / freq(c)`. Classes never seen get weight 1 (with
    a warning).

    Args:
        dataset: batched `(images, masks)` pairs (or an iterable of them).
        num_classes: number of classes.
        num_batches: batches to count; `None` for all. Defaults to `100`.
        ignore_class: label not counted. Defaults to `255`.

    Returns:
        `num_classes` floats.

    Raises:
        ValueError: if no pixel of any class was seen.

    Example:

    >>> masks = np.array([[[0, 0, 0, 1]], [[0, 0, 1, 1]]])  # 2 images of 1x4
    >>> median_frequency_weights([(None, masks)], 2)  # freq 5/8 and 3/8
    [0.8, 1.3333333333333333]
    """
    pixels = np.zeros(num_classes, np.float64)
    present_total = np.zeros(num_classes, np.float64)
    for used, batch in enumerate(dataset):
        if num_batches is not None and used >= num_batches:
            break
        masks = np.asarray(batch[1])
        for mask in masks.reshape(masks.shape[0], -1):
            mask = mask[(mask != ignore_class) & (mask >= 0) & (mask < num_classes)]
            counts = np.bincount(mask.astype(np.int64), minlength=num_classes)
            pixels += counts
            present_total[counts > 0] += mask.size
    seen = pixels > 0
    if not seen.any():
        raise ValueError("No labelled pixel in the batches counted: cannot balance classes.")
    frequency = np.where(seen, pixels / np.maximum(present_total, 1.0), 0.0)
    median = float(np.median(frequency[seen]))
    if not seen.all():
        warnings.warn(
            f"classes {np.flatnonzero(~seen).tolist()} were not seen in the batches "
            "counted: their weight is 1", stacklevel=2)
    return [median / f if s else 1.0 for f, s in zip(frequency.tolist(), seen.tolist())]


def stage_class_weights(
    config: TrainingConfig,
    dataset,
    num_classes: int,
    directory: str,
    write: bool = True,
) -> list[float] | None:
    """The loss weights of one training stage, as `TrainingConfig` asks.

    `config.class_weights` when given; with `config.class_balancing ==
    "median_frequency"`, `median_frequency_weights` of the stage's first
    `config.class_balancing_batches` batches, kept in `directory/class_weights.json`
    so that a resumed stage reads the same weights instead of counting again;
    otherwise `None` (plain cross-entropy, as the original).

    Args:
        config: the `TrainingConfig`.
        dataset: the stage's batched `(images, masks)` `tf.data.Dataset` (or an
            iterable of such pairs); read only when the weights are counted.
        num_classes: the model's number of classes.
        directory: the stage's directory.
        write: write `class_weights.json` (the chief only, under a cluster).

    Returns:
        `num_classes` floats, or `None`.

    Raises:
        CheckpointError: when `class_weights.json` exists but cannot be read.

    Example:

    >>> import tempfile
    >>> masks = np.array([[[0, 0, 0, 1]], [[0, 0, 1, 1]]])
    >>> config = TrainingConfig(class_balancing="median_frequency")
    >>> stage_class_weights(config, [(None, masks)], 2, tempfile.mkdtemp())
    [0.8, 1.3333333333333333]
    """
    if config.class_weights is not None:
        return list(config.class_weights)
    if config.class_balancing is None:
        return None
    path = os.path.join(directory, "class_weights.json")
    if os.path.exists(path):  # a resumed stage keeps its weights
        return list(read_json_file(path, "class weights")["class_weights"])
    batches = dataset.as_numpy_iterator() if hasattr(dataset, "as_numpy_iterator") else dataset
    weights = median_frequency_weights(batches, num_classes, config.class_balancing_batches,
                                       IGNORE_LABEL)
    if write:
        atomic_io.write_json(path, {"class_weights": weights,
                                    "method": config.class_balancing})
    return weights
