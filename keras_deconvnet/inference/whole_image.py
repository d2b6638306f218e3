"""Whole-image inference, for comparison with the proposal-based one: resize or slide."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from keras_deconvnet.inference.images import to_rgb_uint8
from keras_deconvnet.inference.proposals import (
    _check_output,
    aggregate_proposals,
    crop_proposals,
    model_input_size,
    predict_crops,
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
    return np.asarray(boxes, np.float32)


def predict_whole_image(
    model,
    image: np.ndarray,
    mode: str = "resize",
    batch_size: int = 8,
    output: str | None = None,
    input_size: tuple[int, int] | None = None,
    overlap: float = 0.25,
) -> np.ndarray:
    """Class probabilities of a whole image at its own size.

    Args:
        model: a segmenter with a preprocessor (e.g. `DeconvNetImageSegmenter`).
        image: `(H, W, 3)` RGB of any size.
        mode: `"resize"` (warp the image to the model's input size and the scores
            back, bilinear) or `"sliding"` (windows of the input size with `overlap`,
            averaged; small images are warped up).
        batch_size: windows per forward pass (sliding mode).
        output: `"logits"`, `"probabilities"` or None (tell from the model).
        input_size: defaults to the model's input size (224 if unknown).
        overlap: window overlap fraction for `"sliding"`.

    Returns:
        `(H, W, num_classes)` float32 probabilities.

    Example:

    >>> import numpy as np
    >>> from keras_deconvnet.models import DeconvNetImageSegmenter
    >>> model = DeconvNetImageSegmenter.from_preset("deconvnet_edge_small", num_classes=3)
    >>> predict_whole_image(model, np.zeros((50, 70, 3), np.uint8),
    ...                     input_size=(96, 96)).shape
    (50, 70, 3)
    """
    if mode not in MODES:
        raise ValueError(f"`mode` must be one of {MODES}. Received: mode={mode!r}")
    output = _check_output(output, model)
    image = to_rgb_uint8(image)
    height, width = image.shape[:2]
    size = input_size or model_input_size(model)
    if mode == "resize" or (height <= size[0] and width <= size[1]):
        boxes = np.array([[0, 0, height, width]], np.float32)
    else:
        boxes = sliding_windows(height, width, size, overlap)
    crops = crop_proposals(image, boxes, size)
    scores = predict_crops(model, crops, batch_size, softmax=output == "logits")
    return aggregate_proposals(scores, boxes, (height, width), "mean")


def labels_from_scores(scores) -> np.ndarray:
    """Argmax over classes as a uint8 label map."""
    return np.asarray(tf.argmax(scores, axis=-1), np.uint8)
