"""Pieces shared by every dataset: `DatasetInfo`, the label constants, box helpers.

See `keras_deconvnet.data` for the common example format.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow as tf

from keras_deconvnet.labels import IGNORE_LABEL, bitwise_palette  # noqa: F401 (data API)


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """Names and display colours of a dataset's classes.

    Args:
        name: str, the dataset's name.
        class_names: tuple of str, index = class id; index 0 is the background.
        palette: uint8 array `(256, 3)`, RGB colour of each label value; row 255
            is the colour of ignored pixels.

    Example:

    >>> info = DatasetInfo("toy", ("background", "thing"), default_palette(2))
    >>> info.num_classes
    2
    """

    name: str
    class_names: tuple
    palette: np.ndarray

    def __post_init__(self):
        palette = np.asarray(self.palette)
        if palette.shape != (256, 3):
            raise ValueError(
                "`palette` must have shape (256, 3), one RGB row per label value. "
                f"Received: shape={palette.shape}"
            )
        if len(self.class_names) < 2:
            raise ValueError(
                "`class_names` must name the background and at least one class. "
                f"Received: class_names={self.class_names!r}"
            )

    @property
    def num_classes(self) -> int:
        """Classes including the background: the width of a model's score layer."""
        return len(self.class_names)


def default_palette(num_classes: int) -> np.ndarray:
    """`bitwise_palette()`, the same colours VOC uses, for any number of classes."""
    del num_classes  # Every label value has a colour already.
    return bitwise_palette()


def boxes_from_instance_mask(instance_mask: np.ndarray, instance_ids) -> np.ndarray:
    """Tight boxes around instances, as float32 `(N, 4)` `[ymin, xmin, ymax, xmax]`.

    Boxes are pixel edges: an instance covering rows 3..7 gets `ymin=3, ymax=8`. An id
    with no pixels gets an all-zero box.

    Args:
        instance_mask: int array `(H, W)` of instance ids.
        instance_ids: the ids to box, in the order of the returned rows.
    """
    instance_mask = np.asarray(instance_mask)
    boxes = np.zeros((len(instance_ids), 4), np.float32)
    for row, instance_id in enumerate(instance_ids):
        ys, xs = np.nonzero(instance_mask == instance_id)
        if ys.size:
            boxes[row] = (ys.min(), xs.min(), ys.max() + 1, xs.max() + 1)
    return boxes


def tf_box_from_mask(mask: tf.Tensor) -> tf.Tensor:
    """The tight box around the true pixels of a boolean `(H, W)` mask, as `(N, 4)`.

    Returns shape `(1, 4)` float32 pixel edges, or `(0, 4)` when the mask is empty.
    """
    rows = tf.reduce_any(mask, axis=1)
    cols = tf.reduce_any(mask, axis=0)
    height = tf.shape(mask, out_type=tf.int64)[0]
    width = tf.shape(mask, out_type=tf.int64)[1]
    ymin = tf.argmax(tf.cast(rows, tf.int32), output_type=tf.int64)
    xmin = tf.argmax(tf.cast(cols, tf.int32), output_type=tf.int64)
    ymax = height - tf.argmax(tf.cast(rows[::-1], tf.int32), output_type=tf.int64)
    xmax = width - tf.argmax(tf.cast(cols[::-1], tf.int32), output_type=tf.int64)
    box = tf.cast(tf.stack([ymin, xmin, ymax, xmax])[tf.newaxis], tf.float32)
    count = tf.cast(tf.reduce_any(mask), tf.int32)
    return box[:count]


def output_signature() -> dict:
    """The `tf.TensorSpec`s of one example in the common format."""
    return {
        "image_id": tf.TensorSpec((), tf.string),
        "image": tf.TensorSpec((None, None, 3), tf.uint8),
        "class_mask": tf.TensorSpec((None, None), tf.uint8),
        "instance_mask": tf.TensorSpec((None, None), tf.int32),
        "boxes": tf.TensorSpec((None, 4), tf.float32),
        "box_classes": tf.TensorSpec((None,), tf.int32),
        "box_instances": tf.TensorSpec((None,), tf.int32),
    }
