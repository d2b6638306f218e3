"""The inference methods of the paper's Table 1, by name, with one settings object.

`whole`, `proposals` and `ensemble` give class scores; each `*_crf` variant feeds
them to the dense CRF (softmax of the raw scores as the unary, as the authors did).
Evaluation, `deconvnet predict` and `deconvnet evaluate` all segment through
`segment_image`, so their methods are the same code.
"""

from __future__ import annotations

import numpy as np

from keras_deconvnet.inference.config import InferenceConfig
from keras_deconvnet.inference.crf import dense_crf
from keras_deconvnet.inference.ensemble import predict_ensemble
from keras_deconvnet.inference.proposals import predict_proposals
from keras_deconvnet.inference.scores import labels_from_scores, normalise_scores
from keras_deconvnet.inference.whole_image import predict_whole_image

METHODS = ("whole", "whole_crf", "proposals", "proposals_crf", "ensemble", "ensemble_crf")


def check_methods(methods, fcn=None) -> tuple:
    """`methods` as a tuple of known names; the ensemble ones need `fcn`."""
    methods = tuple(methods)
    unknown = sorted(set(methods) - set(METHODS))
    if unknown or not methods:
        raise ValueError(f"`methods` must be among {METHODS}. Received: {list(methods)}")
    if fcn is None and any(m.startswith("ensemble") for m in methods):
        raise ValueError("The ensemble methods need an FCN-8s segmenter: pass `fcn`.")
    return methods


def base_scores(base: str, model, image, config: InferenceConfig, fcn=None, image_id=None):
    """`(scores, scores_are)` of `"whole"`, `"proposals"` or `"ensemble"`."""
    if base == "whole":
        scores = predict_whole_image(model, image, mode=config.whole_image_mode,
                                     batch_size=config.batch_size,
                                     input_size=config.input_size)
        kind = "logits"
    elif base == "proposals":
        scores = predict_proposals(model, image, config=config, image_id=image_id)
        kind = "logits" if config.score_mode == "logits" else "probabilities"
    else:
        scores = predict_ensemble(model, fcn, image, config=config, image_id=image_id)
        kind = "logits" if config.ensemble_mode == "product" else "probabilities"
    if getattr(model, "activation", None) == "softmax" and base == "whole":
        kind = "probabilities"
    return scores, kind


def segment_image(
    image: np.ndarray,
    model,
    methods=("proposals",),
    config: InferenceConfig | None = None,
    fcn=None,
    image_id: str | None = None,
) -> dict[str, np.ndarray]:
    """Label maps of one image for each method, sharing the scores a CRF refines.

    Args:
        image: `(H, W, 3)` RGB.
        model: the DeconvNet segmenter.
        methods: names from `METHODS`.
        config: an `InferenceConfig` (defaults: the authors').
        fcn: the FCN-8s segmenter, for the ensemble methods.
        image_id: for proposal generators that read files.

    Returns:
        `{method: uint8 (H, W) labels}`.

    Example:

    >>> from keras_deconvnet.models import DeconvNetImageSegmenter
    >>> model = DeconvNetImageSegmenter.from_preset("deconvnet_edge_small", num_classes=3)
    >>> labels = segment_image(np.zeros((100, 100, 3), np.uint8), model,
    ...                        ("whole", "proposals"), InferenceConfig(input_size=(96, 96)))
    >>> sorted(labels), labels["whole"].shape
    (['proposals', 'whole'], (100, 100))
    """
    config = config or InferenceConfig()
    methods = check_methods(methods, fcn)
    cache, labels = {}, {}
    for method in methods:
        base = method.removesuffix("_crf")
        if base not in cache:
            cache[base] = base_scores(base, model, image, config, fcn, image_id)
        scores, kind = cache[base]
        if method.endswith("_crf"):
            crf = dense_crf if config.crf is None else config.crf
            if kind == "probabilities":
                scores = normalise_scores(scores)
            scores = crf(image, scores, scores_are=kind)
        labels[method] = labels_from_scores(scores)
    return labels
