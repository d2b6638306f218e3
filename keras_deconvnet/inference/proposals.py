"""Instance-wise inference: predict object proposals in batches, paste back, aggregate.

The paper's inference: run the network on every proposal crop (warped to the network's
input size), paste each class-score map back into its box in image coordinates, and
aggregate the maps pixel-wise by max (or mean); pixels no proposal covers stay
background. Proposals come from the same pluggable generators as training
(`keras_deconvnet.data.proposals`).
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from keras_deconvnet.inference.images import to_rgb_uint8

AGGREGATIONS = ("max", "mean")


def _box_pixels(boxes: np.ndarray, height: int, width: int) -> np.ndarray:
    """Float boxes to integer pixel edges `[y0, x0, y1, x1]`, at least 1 px, clipped."""
    boxes = np.asarray(boxes, np.float64)
    y0 = np.clip(np.floor(boxes[:, 0]), 0, height - 1)
    x0 = np.clip(np.floor(boxes[:, 1]), 0, width - 1)
    y1 = np.clip(np.ceil(boxes[:, 2]), y0 + 1, height)
    x1 = np.clip(np.ceil(boxes[:, 3]), x0 + 1, width)
    return np.stack([y0, x0, y1, x1], 1).astype(np.int64)


def aggregate_proposals(
    score_maps: np.ndarray,
    boxes: np.ndarray,
    image_size: tuple[int, int],
    aggregation: str = "max",
) -> np.ndarray:
    """Pastes per-proposal score maps into their boxes and aggregates them pixel-wise.

    Args:
        score_maps: `(N, h, w, C)` class scores (probabilities) of each proposal crop.
        boxes: `(N, 4)` boxes `[ymin, xmin, ymax, xmax]` in image pixels; they are
            rounded outwards to whole pixels.
        image_size: `(height, width)` of the image.
        aggregation: `"max"` (the paper's) or `"mean"` over the proposals covering
            each pixel.

    Returns:
        `(height, width, C)` float32 scores; pixels that no box covers are 0.

    Example:

    >>> import numpy as np
    >>> maps = np.ones((2, 2, 2, 1), np.float32) * np.array([1., 3.]).reshape(2, 1, 1, 1)
    >>> aggregate_proposals(maps, [[0, 0, 2, 2], [1, 1, 3, 3]], (3, 3))[..., 0]
    array([[1., 1., 0.],
           [1., 3., 3.],
           [0., 3., 3.]], dtype=float32)
    """
    if aggregation not in AGGREGATIONS:
        raise ValueError(
            f"`aggregation` must be one of {AGGREGATIONS}. Received: aggregation={aggregation!r}"
        )
    score_maps = np.asarray(score_maps, np.float32)
    if score_maps.ndim != 4 or len(score_maps) != len(boxes):
        raise ValueError(
            "`score_maps` must be (N, h, w, C) with one map per box. Received: "
            f"score_maps.shape={score_maps.shape}, {len(boxes)} boxes"
        )
    height, width = image_size
    channels = score_maps.shape[-1]
    canvas = np.zeros((height, width, channels), np.float32)
    counts = np.zeros((height, width, 1), np.float32)
    for score_map, (y0, x0, y1, x1) in zip(score_maps, _box_pixels(boxes, height, width)):
        if score_map.shape[:2] != (y1 - y0, x1 - x0):
            score_map = tf.image.resize(score_map, (y1 - y0, x1 - x0), "bilinear").numpy()
        region = canvas[y0:y1, x0:x1]
        if aggregation == "max":
            np.maximum(region, score_map, out=region)
        else:
            region += score_map
            counts[y0:y1, x0:x1] += 1
    if aggregation == "mean":
        canvas /= np.maximum(counts, 1)
    return canvas


def normalise_scores(scores: np.ndarray) -> np.ndarray:
    """Aggregated scores to per-pixel distributions (for the CRF); uncovered pixels
    (all zeros) become background.

    Example:

    >>> normalise_scores(np.array([[[0.0, 0.0], [0.2, 0.6]]])).tolist()
    [[[1.0, 0.0], [0.25, 0.75]]]
    """
    scores = np.asarray(scores, np.float32)
    total = scores.sum(-1, keepdims=True)
    background = np.zeros_like(scores)
    background[..., 0] = 1.0
    return np.where(total > 0, scores / np.maximum(total, 1e-12), background)


def preprocessor_of(model):
    """The preprocessor a segmenter applies to raw RGB images (keras-hub's `Task`)."""
    preprocessor = getattr(model, "preprocessor", None)
    if preprocessor is None:
        raise ValueError(
            "The model has no `preprocessor`: inference feeds raw RGB images through "
            "the segmenter's own preprocessor. Use a keras_deconvnet segmenter (e.g. "
            "`DeconvNetImageSegmenter.from_preset(...)`) or set `model.preprocessor`. "
            f"Received: {type(model).__name__}"
        )
    return preprocessor


def crop_proposals(image: np.ndarray, boxes: np.ndarray, size: tuple[int, int]) -> tf.Tensor:
    """Warps each box of `image` to `size` (bilinear; aspect ratio not kept, as the paper)."""
    height, width = image.shape[:2]
    pixels = _box_pixels(boxes, height, width).astype(np.float32)
    # crop_and_resize samples at pixel centres: box edges [y0, y1) map to y0 .. y1 - 1.
    normalised = np.stack(
        [pixels[:, 0] / max(height - 1, 1), pixels[:, 1] / max(width - 1, 1),
         (pixels[:, 2] - 1) / max(height - 1, 1), (pixels[:, 3] - 1) / max(width - 1, 1)], 1
    )
    images = tf.convert_to_tensor(image[None], tf.float32)
    return tf.image.crop_and_resize(
        images, normalised, tf.zeros(len(boxes), tf.int32), size, method="bilinear"
    )


def predict_crops(model, crops, batch_size: int = 16, softmax: bool = True) -> np.ndarray:
    """Runs a segmenter on raw RGB crops in batches (through its preprocessor).

    Returns class probabilities (`softmax=True`) or the model's raw outputs.
    """
    preprocessor = preprocessor_of(model)
    outputs = []
    for start in range(0, len(crops), batch_size):
        batch = preprocessor(crops[start : start + batch_size])
        scores = model.predict_on_batch(batch)
        if softmax:
            scores = tf.nn.softmax(scores, axis=-1)
        outputs.append(np.asarray(scores, np.float32))
    if not outputs:
        return np.zeros((0, *model.output_shape[1:3], model.output_shape[-1]), np.float32)
    return np.concatenate(outputs)


def model_output_kind(model) -> str:
    """`"probabilities"` for softmax models and ensembles, else `"logits"`."""
    if getattr(model, "activation", None) == "softmax":
        return "probabilities"
    return "logits"


def _check_output(output, model) -> str:
    output = output or model_output_kind(model)
    if output not in ("logits", "probabilities"):
        raise ValueError(
            f"`output` must be 'logits' or 'probabilities'. Received: output={output!r}"
        )
    return output


def model_input_size(model, default=(224, 224)) -> tuple[int, int]:
    height, width = model.input_shape[1:3]
    return (height or default[0], width or default[1])


def predict_proposals(
    model,
    image: np.ndarray,
    proposals=None,
    top_n: int = 50,
    batch_size: int = 16,
    aggregation: str = "max",
    min_box_size: float = 0.0,
    include_image_box: bool = False,
    output: str | None = None,
    input_size: tuple[int, int] | None = None,
) -> np.ndarray:
    """Instance-wise prediction of one image: proposals -> crops -> batches -> aggregate.

    Args:
        model: a segmenter with a preprocessor (e.g. `DeconvNetImageSegmenter`).
        image: `(H, W, 3)` RGB image of any size (or grayscale / RGBA, converted).
        proposals: a proposal generator (`callable(image) -> (N, 4)` boxes, e.g.
            `keras_deconvnet.data.SlidingWindowProposals()`, the default) or an
            `(N, 4)` array of boxes `[ymin, xmin, ymax, xmax]` in pixels.
        top_n: the first `top_n` proposals are used (the paper: 50).
        batch_size: crops per forward pass.
        aggregation: `"max"` (the paper's) or `"mean"`.
        min_box_size: proposals whose shorter side is below this many pixels are
            skipped (the original code skipped boxes under 112 px on VOC images).
        include_image_box: also predict the whole image as one more proposal, so that
            every pixel is covered.
        output: `"logits"` when the model outputs logits (softmax is applied),
            `"probabilities"`, or None (default) to tell from the model.
        input_size: crop size; defaults to the model's input size (224 if unknown).

    Returns:
        `(H, W, num_classes)` float32 aggregated class probabilities; argmax gives
        the label map (uncovered pixels are background).

    Example:

    >>> import numpy as np
    >>> from keras_deconvnet.models import DeconvNetImageSegmenter
    >>> model = DeconvNetImageSegmenter.from_preset("deconvnet_edge_small", num_classes=3)
    >>> image = np.zeros((120, 160, 3), np.uint8)
    >>> predict_proposals(model, image, top_n=4, input_size=(96, 96)).shape
    (120, 160, 3)
    """
    from keras_deconvnet.data.proposals import SlidingWindowProposals, call_proposals

    output = _check_output(output, model)
    image = to_rgb_uint8(image)
    height, width = image.shape[:2]
    if proposals is None:
        proposals = SlidingWindowProposals(max_proposals=max(top_n, 1))
    if callable(proposals):
        boxes = call_proposals(proposals, image)
    else:
        boxes = np.asarray(proposals, np.float32).reshape(-1, 4)
    boxes = boxes[:top_n]
    if min_box_size > 0 and len(boxes):
        sides = np.minimum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
        boxes = boxes[sides >= min_box_size]
    if include_image_box:
        boxes = np.concatenate([boxes, [[0, 0, height, width]]]).astype(np.float32)
    num_classes = model.output_shape[-1]
    if len(boxes) == 0:
        return np.zeros((height, width, num_classes), np.float32)
    size = input_size or model_input_size(model)
    crops = crop_proposals(image, boxes, size)
    scores = predict_crops(model, crops, batch_size, softmax=output == "logits")
    return aggregate_proposals(scores, boxes, (height, width), aggregation)
