"""Whole-image inference, the comparison baseline: resize (or slide) and score.

The resize convention is the one of the exported SavedModel's `predict_image_bytes`:
the segmenter's own image converter warps the image to the network input (bilinear,
half-pixel centres, aspect ratio not kept), and the raw class scores are resized back
to the image bilinearly; the argmax comes last. Local and served labels therefore
agree.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
import numpy as np
import tensorflow as tf

from keras_deconvnet.inference.config import WHOLE_IMAGE_MODES, check_choice
from keras_deconvnet.inference.images import to_rgb_uint8
from keras_deconvnet.inference.proposals import (
    aggregate_proposals,
    crop_windows,
    model_input_size,
    predict_windows,
    preprocessor_of,
)


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


def image_converter(model: keras.Model, image_size=None):
    """The segmenter's image converter, cloned with `image_size` (`None`: no resize).

    Exported graphs take images at their fixed input size, so their converter only
    normalises; `predict_image_bytes` resizes with the same converter class. A plain
    Keras model without a preprocessor gets an identity (or a bare bilinear
    `Resizing`): it is exported as it is.
    """
    if getattr(model, "preprocessor", None) is None and not hasattr(model, "backbone"):
        if image_size is None:
            return keras.layers.Identity()
        return keras.layers.Resizing(*image_size, interpolation="bilinear")
    converter = preprocessor_of(model).image_converter
    config = converter.get_config()
    config["image_size"] = tuple(image_size) if image_size is not None else None
    return type(converter).from_config(config)


def minimum_input_size(model: keras.Model) -> int:
    """The smallest input side, in pixels, that `model`'s network accepts.

    A DeconvNet's fc6 is a "valid" convolution on pool5, so pool5 must be at least
    `fc_kernel_size` wide: 65 pixels for `deconvnet_edge_small` (5 poolings, fc6
    3x3), 193 for the paper's 7x7 fc6. FCN-8s ("same" fc6, or padded input) and
    models this function does not know take any size (1).

    Example:

    >>> from keras_deconvnet.models import DeconvNetImageSegmenter
    >>> minimum_input_size(DeconvNetImageSegmenter.from_preset(
    ...     "deconvnet_edge_small", num_classes=3))
    65
    """
    from keras_deconvnet.models.vgg16_encoder import minimum_input_size as smallest

    sizes = [1]
    for part in (model, getattr(model, "deconvnet", None)):  # EDeconvNet: its DeconvNet
        backbone = getattr(part, "backbone", None)
        if backbone is None or type(backbone).__name__ != "DeconvNetBackbone":
            continue
        config = backbone.get_config()
        sizes.append(smallest(len(config["block_filters"]), config["fc_kernel_size"]))
    return max(sizes)


def check_input_size(model: keras.Model, size: Sequence[int]) -> None:
    """Raises a one-line `ValueError` when `size` `(h, w)` is under the model's minimum.

    Example:

    >>> from keras_deconvnet.models import DeconvNetImageSegmenter
    >>> model = DeconvNetImageSegmenter.from_preset("deconvnet_edge_small", num_classes=3)
    >>> check_input_size(model, (65, 80))  # fine
    >>> check_input_size(model, (64, 80))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: The network input is too small: ... at least 65x65 pixels ...
    """
    smallest = minimum_input_size(model)
    height, width = (int(s) for s in tuple(size)[:2])
    if min(height, width) < smallest:
        raise ValueError(
            f"The network input is too small: this model needs at least {smallest}x"
            f"{smallest} pixels (pool5 must cover fc6's kernel). Received: "
            f"{height}x{width}"
        )


def whole_image_scores(model: keras.Model, images, image_size: Sequence[int]):
    """The served whole-image convention, steps 1-2: resize, normalise, predict.

    Images of any size go through the model's own image converter with
    `image_size=(h, w)` (keras `Resizing`: `tf.image.resize`, bilinear, half-pixel
    centres, no antialias, aspect ratio not kept), then the model. Returns its raw
    class scores `(batch, h, w, num_classes)` in float32. An `image_size` under the
    model's minimum (`minimum_input_size`) is a `ValueError`.
    """
    check_input_size(model, image_size)
    resize = image_converter(model, image_size)
    return tf.cast(model(resize(images), training=False), tf.float32)


def scores_to_image(scores, size, logits: bool = True):
    """The served whole-image convention, step 3: class scores `(h, w, C)` ->
    probabilities `(H, W, C)` at the image's `size` (bilinear, half-pixel centres,
    then softmax when `logits`)."""
    scores = tf.image.resize(scores, size, method="bilinear")
    return tf.nn.softmax(scores, axis=-1) if logits else scores


def whole_image_probabilities(
    model: keras.Model, image, image_size: Sequence[int] | None = None
) -> np.ndarray:
    """Probabilities of a whole image at its own size, the way the exports serve it.

    The one resize convention of local inference and the SavedModel's
    `predict_image_bytes`: the image `(H, W, 3)` (RGB 0-255, any size) through the
    model's image converter with `image_size=(h, w)` -> the model -> raw scores
    `(h, w, C)` -> `tf.image.resize(scores, (H, W), "bilinear")` (half-pixel) ->
    softmax. The parity check compares `predict_image_bytes` with this.

    Args:
        model: a segmenter with a preprocessor.
        image: `(H, W, 3)` RGB, uint8 or float in [0, 255].
        image_size: the model input `(h, w)`; defaults to the model's fixed size.

    Returns:
        `(H, W, num_classes)` float32 probabilities.

    Example:

    >>> from keras_deconvnet.models import DeconvNetImageSegmenter
    >>> model = DeconvNetImageSegmenter.from_preset("deconvnet_edge_small", num_classes=3)
    >>> whole_image_probabilities(model, np.zeros((50, 70, 3), np.uint8), (96, 96)).shape
    (50, 70, 3)
    """
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"`image` must be RGB (H, W, 3). Received: shape={image.shape}")
    shape, _ = _fixed_input(model, image_size)
    scores = whole_image_scores(model, tf.cast(image[None], tf.float32), shape[:2])
    probabilities = scores_to_image(
        scores[0], image.shape[:2], logits=not outputs_probabilities(model)
    )
    return probabilities.numpy()


def outputs_probabilities(model: keras.Model) -> bool:
    """Whether `model` already ends in a softmax (else its outputs are logits)."""
    activation = getattr(model, "activation", None)
    if activation is None and model.layers:
        activation = model.layers[-1].get_config().get("activation")
    return activation == "softmax"


def _fixed_input(model, image_size):
    """`((h, w, 3), num_classes)` at the model's input size or `image_size`."""
    size = tuple(image_size)[:2] if image_size is not None else model_input_size(model)
    return (*size, 3), int(model.outputs[0].shape[-1])


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
    check_choice("mode", mode, WHOLE_IMAGE_MODES)
    image = to_rgb_uint8(image)
    height, width = image.shape[:2]
    size = tuple(input_size) if input_size else model_input_size(model)
    check_input_size(model, size)
    if mode == "resize" or (height <= size[0] and width <= size[1]):
        preprocessor_of(model)  # a clear error for models without one
        scores = whole_image_scores(model, tf.cast(image[None], tf.float32), size)
        return scores_to_image(scores[0], (height, width), logits=False).numpy()
    windows = sliding_windows(height, width, size, overlap)
    scores = predict_windows(model, crop_windows(image, windows, size), batch_size)
    return aggregate_proposals(scores, windows, (height, width), "mean")
