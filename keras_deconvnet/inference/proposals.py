"""Instance-wise inference, as the authors' code ran it: proposals -> context windows
-> batched network -> raw scores pasted back and max-aggregated.

The paper's mode (the default) follows `generate_EDeconvNet_CRF_results.m` of the
authors' release step for step:

1. each proposal is enlarged about its centre by the training context (1.2, as the
   stage-2 crops) and rounded out to whole pixels; windows may leave the image, whose
   outside reads as zeros (the original zero-pads the image by its own size);
2. windows whose shorter side is under `min_box_size` are skipped (112 for the
   paper's 224 input: half the network input) and the first `top_n` (50) windows
   that pass are run; the threshold is applied before the cut, so 50 boxes really run;
3. each window is cut out of the zero-padded image and resized to the network
   input as MATLAB's `imresize(crop, [224 224], 'bilinear')` does
   (`preprocess_image_bb.m`): antialiased when shrinking
   (`keras_deconvnet.inference.matlab_resize`); then the segmenter's preprocessor
   and the network give raw class scores (logits);
4. each score map is resized to its window the same way (`imresize(segImg,
   [box_ht box_wd], 'bilinear')`) and combined with a canvas by the element-wise
   maximum; the canvas starts at 0, so negative scores never win and pixels no
   window covers stay 0 (background after the argmax);
5. the softmax comes last, for the CRF (`keras_deconvnet.inference.dense_crf`).

`score_mode="probabilities"` is this package's earlier behaviour (a softmax per
window before aggregating); it is kept as an option, with `aggregation="mean"` and
`resampling="bilinear"` (crops by the training crops' bilinear sampler, with no
low-pass filter, as the fork's data layers resize the *training* crops).
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from keras_deconvnet.inference.config import (
    AGGREGATIONS,
    PAPER_CONTEXT,
    PAPER_TOP_N,
    RESAMPLINGS,
    InferenceConfig,
    check_choice,
)
from keras_deconvnet.inference.images import to_rgb_uint8
from keras_deconvnet.inference.matlab_resize import imresize_bilinear
from keras_deconvnet.inference.scores import softmax


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


def model_input_size(model, default=(224, 224)) -> tuple[int, int]:
    """The network's input size: fixed by the model, else its converter's, else 224."""
    height, width = model.input_shape[1:3]
    if height and width:
        return (int(height), int(width))
    converter = getattr(getattr(model, "preprocessor", None), "image_converter", None)
    size = getattr(converter, "image_size", None)
    return tuple(int(s) for s in size) if size else tuple(default)


def proposal_windows(
    boxes,
    image_size: tuple[int, int],
    context: float = PAPER_CONTEXT,
    min_box_size: float = 112.0,
    top_n: int | None = PAPER_TOP_N,
) -> np.ndarray:
    """The windows the network runs on: enlarged, whole-pixel, filtered, then cut.

    Args:
        boxes: `(N, 4)` proposals `[ymin, xmin, ymax, xmax]` (pixel edges), best first.
        image_size: `(height, width)`; windows may extend past it (read as zeros).
        context: enlargement about the centre (the training crops' 1.2; 1.0 keeps
            the proposal).
        min_box_size: windows whose shorter side is under this many pixels are
            skipped, before the `top_n` cut.
        top_n: how many windows to keep (None: all).

    Returns:
        int64 `(M, 4)` windows `[y0, x0, y1, x1]`, M <= top_n.

    Example:

    >>> proposal_windows([[0, 0, 10, 10], [10, 10, 110, 130]], (200, 200),
    ...                  min_box_size=50).tolist()
    [[0, -2, 120, 142]]
    """
    from keras_deconvnet.data.crops import enlarge_boxes

    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    if not len(boxes):
        return np.zeros((0, 4), np.int64)
    windows = enlarge_boxes(boxes, context).numpy()
    # Out to whole pixels; the tolerance keeps float32 noise (59.9999) from adding one.
    windows = np.concatenate([np.floor(windows[:, :2] + 1e-3),
                              np.ceil(windows[:, 2:] - 1e-3)], 1)
    windows = windows.astype(np.int64)
    sides = np.minimum(windows[:, 2] - windows[:, 0], windows[:, 3] - windows[:, 1])
    windows = windows[(sides >= max(min_box_size, 1))]
    return windows if top_n is None else windows[:top_n]


def crop_windows(
    image: np.ndarray,
    windows: np.ndarray,
    size: tuple[int, int],
    resampling: str = "bilinear",
) -> tf.Tensor:
    """Warps each window of `image` to `size` (zeros outside the image).

    Args:
        image: `(H, W, 3)` image.
        windows: `(N, 4)` integer windows `[y0, x0, y1, x1]`, possibly past the image.
        size: the square output `(S, S)`.
        resampling: `"bilinear"` (default: the training crops' geometry,
            `sample_windows` with no random offset or flip, no low-pass filter) or
            `"matlab"` (the window cut out of the zero-padded image, then MATLAB's
            `imresize(..., 'bilinear')`, antialiased when shrinking, as the
            authors' `preprocess_image_bb.m`; `InferenceConfig`'s default).

    Returns:
        float32 `(N, S, S, 3)`.

    Example:

    >>> image = np.zeros((20, 20, 3), np.uint8)
    >>> crop_windows(image, [[0, 0, 20, 20]], (8, 8), "matlab").shape
    TensorShape([1, 8, 8, 3])
    """
    from keras_deconvnet.data.crops import sample_windows

    check_choice("resampling", resampling, RESAMPLINGS)
    if size[0] != size[1]:
        raise ValueError(f"Windows are warped to square inputs. Received: size={size}")
    if resampling == "matlab":
        return tf.constant(_matlab_crops(np.asarray(image), windows, size))
    count = len(windows)
    images, _, _ = sample_windows(
        image, None, tf.constant(np.asarray(windows, np.float32)), size[0], size[0],
        tf.zeros([count, 2], tf.int32), tf.zeros([count], tf.bool),
    )
    return images


def _matlab_crops(image: np.ndarray, windows, size) -> np.ndarray:
    """`preprocess_image_bb.m`'s crop and `imresize` of each window, zeros outside."""
    windows = np.asarray(windows, np.int64).reshape(-1, 4)
    height, width = image.shape[:2]
    image = image.reshape(height, width, -1)
    crops = np.zeros((len(windows), size[0], size[1], image.shape[-1]), np.float32)
    for index, (y0, x0, y1, x1) in enumerate(windows):
        crop = np.zeros((y1 - y0, x1 - x0, image.shape[-1]), np.float64)
        top, left = max(y0, 0), max(x0, 0)
        bottom, right = min(y1, height), min(x1, width)
        if bottom > top and right > left:
            crop[top - y0 : bottom - y0, left - x0 : right - x0] = image[top:bottom,
                                                                         left:right]
        crops[index] = imresize_bilinear(crop, size)
    return crops


def predict_windows(model, crops, batch_size: int = 16) -> np.ndarray:
    """The segmenter on raw RGB crops in batches: its raw outputs, `(N, h, w, C)`.

    keras-hub's `predict_on_batch` applies the segmenter's preprocessor itself.
    """
    preprocessor_of(model)  # a clear error for models without one
    outputs = [
        np.asarray(model.predict_on_batch(crops[start : start + batch_size]), np.float32)
        for start in range(0, len(crops), batch_size)
    ]
    if not outputs:
        return np.zeros((0, *model.output_shape[1:3], model.output_shape[-1]), np.float32)
    return np.concatenate(outputs)


def aggregate_proposals(
    score_maps: np.ndarray,
    windows: np.ndarray,
    image_size: tuple[int, int],
    aggregation: str = "max",
    resampling: str = "bilinear",
) -> np.ndarray:
    """Resizes each window's score map to the window and aggregates them pixel-wise.

    Args:
        score_maps: `(N, h, w, C)` scores of each window.
        windows: `(N, 4)` integer windows `[y0, x0, y1, x1]`, possibly past the image.
        image_size: `(height, width)` of the canvas (the image).
        aggregation: `"max"` with a canvas starting at 0 (the authors'), or
            `"mean"` over the windows covering each pixel.
        resampling: `"bilinear"` (default: TensorFlow's bilinear resize,
            antialiased when shrinking) or `"matlab"` (MATLAB's `imresize`, the
            authors'; they differ at the borders of shrunk maps).

    Returns:
        `(height, width, C)` float32; pixels no window covers are 0.

    Example:

    >>> maps = np.ones((2, 2, 2, 1), np.float32) * np.array([1., -3.]).reshape(2, 1, 1, 1)
    >>> aggregate_proposals(maps, [[0, 0, 2, 2], [1, 1, 3, 3]], (3, 3))[..., 0].tolist()
    [[1.0, 1.0, 0.0], [1.0, 1.0, 0.0], [0.0, 0.0, 0.0]]
    """
    check_choice("aggregation", aggregation, AGGREGATIONS)
    check_choice("resampling", resampling, RESAMPLINGS)
    score_maps = np.asarray(score_maps, np.float32)
    windows = np.asarray(windows, np.int64).reshape(-1, 4)
    if score_maps.ndim != 4 or len(score_maps) != len(windows):
        raise ValueError(
            "`score_maps` must be (N, h, w, C) with one map per window. Received: "
            f"score_maps.shape={score_maps.shape}, {len(windows)} windows"
        )
    height, width = image_size
    canvas = np.zeros((height, width, score_maps.shape[-1]), np.float32)
    counts = np.zeros((height, width, 1), np.float32)
    for score_map, (y0, x0, y1, x1) in zip(score_maps, windows):
        # Only the part of the window inside the image reaches the canvas.
        top, left = max(y0, 0), max(x0, 0)
        bottom, right = min(y1, height), min(x1, width)
        if bottom <= top or right <= left:
            continue
        win_h, win_w = y1 - y0, x1 - x0
        if score_map.shape[:2] != (win_h, win_w) and resampling == "matlab":
            score_map = imresize_bilinear(score_map, (win_h, win_w)).astype(np.float32)
        elif score_map.shape[:2] != (win_h, win_w):
            shrink = bool(win_h < score_map.shape[0] or win_w < score_map.shape[1])
            # MATLAB's imresize (the authors') antialiases when it shrinks.
            score_map = tf.image.resize(score_map, (win_h, win_w), "bilinear",
                                        antialias=shrink).numpy()
        part = score_map[top - y0 : bottom - y0, left - x0 : right - x0]
        region = canvas[top:bottom, left:right]
        if aggregation == "max":
            np.maximum(region, part, out=region)
        else:
            region += part
            counts[top:bottom, left:right] += 1
    if aggregation == "mean":
        canvas /= np.maximum(counts, 1)
    return canvas


def predict_proposals(
    model,
    image: np.ndarray,
    proposals=None,
    config: InferenceConfig | None = None,
    *,
    image_id: str | None = None,
) -> np.ndarray:
    """Instance-wise prediction of one image, as the authors' code did by default.

    Args:
        model: a segmenter with a preprocessor (e.g. `DeconvNetImageSegmenter`).
        image: `(H, W, 3)` RGB image of any size (grayscale / RGBA are converted).
        proposals: a proposal generator (`callable(image[, image_id]) -> (N, 4)`, e.g.
            `SlidingWindowProposals()` or `FileProposals(dir)` with EdgeBoxes files,
            as the paper) or an `(N, 4)` array `[ymin, xmin, ymax, xmax]`, best
            first. `None` takes `config.proposals` (itself `None` by default:
            `SlidingWindowProposals(max_proposals=None)`, every window its NMS
            keeps, so that the size filter comes before the `top_n` cut). A
            generator with `boxes_extended = True` (`PaddedBoxProposals`, the
            authors' `.mat` cache) gets no context and no clipping.
        config: an `InferenceConfig`; its `top_n` (windows actually run, counted
            after the size filter: 50), `min_box_size` (`None`: half the network
            input, the authors' 112 at 224), `context` (1.2, as training),
            `score_mode` (`"logits"`: raw scores max-aggregated on a zero canvas,
            the authors'; `"probabilities"`: a softmax per window first),
            `aggregation` (`"max"` or `"mean"`), `resampling` (`"matlab"`: the
            crops and score maps resized as MATLAB's `imresize`, the authors';
            `"bilinear"`), `batch_size` and `input_size`
            (defaults to the model's, or its converter's) apply. `None` is the
            authors' inference.
        image_id: passed to proposal generators that read files.

    Returns:
        `(H, W, num_classes)` float32 aggregated scores (raw scores with
        `score_mode="logits"`); `labels_from_scores` gives the label map, `softmax`
        the CRF's input.

    Example:

    >>> from keras_deconvnet.models import DeconvNetImageSegmenter
    >>> model = DeconvNetImageSegmenter.from_preset("deconvnet_edge_small", num_classes=3)
    >>> image = np.zeros((120, 160, 3), np.uint8)
    >>> config = InferenceConfig(top_n=4, input_size=(96, 96))
    >>> predict_proposals(model, image, config=config).shape
    (120, 160, 3)
    """
    config = config or InferenceConfig()
    preprocessor_of(model)  # a clear error for models without one
    image = to_rgb_uint8(image)
    height, width = image.shape[:2]
    size = tuple(config.input_size) if config.input_size else model_input_size(model)
    min_box_size = config.min_box_size
    if min_box_size is None:
        min_box_size = min(size) / 2
    generator = config.proposals if proposals is None else proposals
    boxes = _proposal_boxes(image, generator, image_id)
    # The authors' cache (`PaddedBoxProposals`) holds boxes extended already.
    context = 1.0 if getattr(generator, "boxes_extended", False) else config.context
    windows = proposal_windows(boxes, (height, width), context, min_box_size, config.top_n)
    num_classes = model.output_shape[-1]
    if len(windows) == 0:
        return np.zeros((height, width, num_classes), np.float32)
    crops = crop_windows(image, windows, size, config.resampling)
    scores = predict_windows(model, crops, config.batch_size)
    if config.score_mode == "probabilities" and getattr(model, "activation", None) != "softmax":
        scores = softmax(scores)
    return aggregate_proposals(scores, windows, (height, width), config.aggregation,
                               config.resampling)


def _proposal_boxes(image: np.ndarray, proposals, image_id: str | None) -> np.ndarray:
    """`(N, 4)` boxes from a proposal generator (`None`: sliding windows) or an array."""
    from keras_deconvnet.data.proposals import SlidingWindowProposals, call_proposals

    if proposals is None:
        # Every window NMS keeps: the size filter and the top-N cut come after.
        proposals = SlidingWindowProposals(max_proposals=None)
    if callable(proposals):
        extended = getattr(proposals, "boxes_extended", False)
        return call_proposals(proposals, image, image_id, clip=not extended)
    return np.asarray(proposals, np.float32).reshape(-1, 4)
