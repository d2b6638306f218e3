"""Label values every part of the package shares: the ignored label and the colour map."""

from __future__ import annotations

import numpy as np

IGNORE_LABEL = 255
"""Label of pixels that count neither as right nor wrong (VOC object borders)."""

VOC_CLASSES = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat",
    "chair", "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant",
    "sheep", "sofa", "train", "tvmonitor",
)
"""PASCAL VOC's 21 classes, background first: the paper's, and the authors' models'."""


def bitwise_palette() -> np.ndarray:
    """The PASCAL VOC colour map: 256 RGB colours from the bits of the label value.

    Label 0 is black, 1 dark red (128, 0, 0), ..., 255 (ignore) is (224, 224, 192).

    Example:

    >>> bitwise_palette()[[0, 1, 255]].tolist()
    [[0, 0, 0], [128, 0, 0], [224, 224, 192]]
    """
    palette = np.zeros((256, 3), np.uint8)
    for label in range(256):
        value, r, g, b = label, 0, 0, 0
        for bit in range(8):
            r |= ((value >> 0) & 1) << (7 - bit)
            g |= ((value >> 1) & 1) << (7 - bit)
            b |= ((value >> 2) & 1) << (7 - bit)
            value >>= 3
        palette[label] = (r, g, b)
    return palette
