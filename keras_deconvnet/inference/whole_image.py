"""Whole-image inference, the comparison baseline: resize (or slide) and score.

The resize convention is the one of the exported SavedModel's `predict_image_bytes`:
the segmenter's own image converter warps the image to the network input (bilinear,
half-pixel centres, aspect ratio not kept), and the raw class scores are resized back
to the image bilinearly; the argmax comes last. Local and served labels therefore
agree.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from keras_deconvnet.inference.images import to_rgb_uint8
from keras_deconvnet.inference.proposals import (
    aggregate_proposals,
    crop_windows,
    model_input_size,
    predict_windows,
    preprocessor_of,
)

MODES = ("resize", "sliding")


def sliding_windows(height: int, width: int, size: tuple[int, int], overlap: float = 0.25):
    """Windows of `size` covering the image with at least `overlap`, edges included."""
    boxes = []
    win_h, win_w = min(size[0], height), min(size[1], width)
    step_h = max(1, int(win_h * (1 - overlap)))
    step_w = max(1, int(win_w * (1 - overlap)))
    ys = list(range(0, max(height - win_h, 0) + 1, step_h))
    xs = list(range(0, max(width - win_w, 0) + 1, step_w))
    if ys[-1] + win_h < height:
        ys.append(height - win_h)
    if xs[-1] + win_w < width:
        xs.append(width - win_w)
    for y in ys:
        for x in xs:
            boxes.append([y, x, y + win_h, x + win_w])
    return np.asarray(boxes, np.int64)


def resize_scores(scores, size: tuple[int, int]) -> np.ndarray:
    """Scores `(h, w, C)` resized to `size` bilinearly (half-pixel centres), the
    convention of the exported `predict_image_bytes` signature."""
    scores = tf.convert_to_tensor(scores, tf.float32)
    if tuple(scores.shape[:2]) == tuple(size):
        return scores.numpy()
    return tf.image.resize(scores, size, "bilinear").numpy()


def predict_whole_image(
    model,
    image: np.ndarray,
    mode: str = "resize",
    batch_size: int = 8,
    input_size: tuple[int, int] | None = None,
    overlap: float = 0.25,
) -> np.ndarray:
    """Raw class scores of a whole image at its own size.

    Args:
        model: a segmenter with a preprocessor (e.g. `DeconvNetImageSegmenter`).
        image: `(H, W, 3)` RGB of any size.
        mode: `"resize"` (the image warped to the network input and the scores back,
            as the exported SavedModel does) or `"sliding"` (windows of the input
            size with `overlap`, scores averaged; small images are warped up).
        batch_size: windows per forward pass (sliding mode).
        input_size: defaults to the model's input size (or its converter's, else 224).
        overlap: window overlap fraction for `"sliding"`.

    Returns:
        `(H, W, num_classes)` float32 scores (logits for a logits model).

    Example:

    >>> from keras_deconvnet.models import DeconvNetImageSegmenter
    >>> model = DeconvNetImageSegmenter.from_preset("deconvnet_edge_small", num_classes=3)
    >>> predict_whole_image(model, np.zeros((50, 70, 3), np.uint8),
    ...                     input_size=(96, 96)).shape
    (50, 70, 3)
    """
    if mode not in MODES:
        raise ValueError(f"`mode` must be one of {MODES}. Received: mode={mode!r}")
    image = to_rgb_uint8(image)
    height, width = image.shape[:2]
    size = tuple(input_size) if input_size else model_input_size(model)
    if mode == "resize" or (height <= size[0] and width <= size[1]):
        preprocessor_of(model)  # a clear error for models without one
        resized = tf.image.resize(image[None].astype(np.float32), size, "bilinear")
        # keras-hub's `predict_on_batch` applies the segmenter's preprocessor itself.
        scores = model.predict_on_batch(resized)
        return resize_scores(np.asarray(scores, np.float32)[0], (height, width))
    windows = sliding_windows(height, width, size, overlap)
    scores = predict_windows(model, crop_windows(image, windows, size), batch_size)
    return aggregate_proposals(scores, windows, (height, width), "mean")
