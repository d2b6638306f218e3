"""The inference methods of the paper's Table 1, by name, with one settings object.

`whole`, `proposals` and `ensemble` give class scores; each `*_crf` variant feeds
them to the dense CRF (softmax of the raw scores as the unary, as the authors did).
Evaluation, `deconvnet predict` and `deconvnet evaluate` all segment through
`segment_image`, so their methods are the same code.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from keras_deconvnet.inference.ensemble import ENSEMBLE_MODES, predict_ensemble
from keras_deconvnet.inference.proposals import (
    AGGREGATIONS,
    PAPER_CONTEXT,
    PAPER_TOP_N,
    SCORE_MODES,
    predict_proposals,
)
from keras_deconvnet.inference.scores import labels_from_scores
from keras_deconvnet.inference.whole_image import MODES as WHOLE_IMAGE_MODES
from keras_deconvnet.inference.whole_image import predict_whole_image

METHODS = ("whole", "whole_crf", "proposals", "proposals_crf", "ensemble", "ensemble_crf")


@dataclasses.dataclass
class InferenceConfig:
    """How to segment: proposals, their windows, aggregation, ensemble and CRF.

    The defaults are the authors' (`generate_EDeconvNet_CRF_results.m`).

    Args:
        proposals: a proposal generator or `None` (`SlidingWindowProposals()`);
            `FileProposals(dir, box_format="edgeboxes")` reads EdgeBoxes files.
        top_n: windows actually run per image, after the size filter. Defaults to 50.
        min_box_size: skip windows with a shorter side under this; `None` is half the
            network input (112 at 224).
        context: proposal enlargement, as the training crops. Defaults to 1.2.
        score_mode: `"logits"` (raw scores, max on a zero canvas) or
            `"probabilities"` (a softmax per window first).
        aggregation: `"max"` or `"mean"`.
        ensemble_mode: `"product"` (`deconvnet * max(0, fcn)`) or `"mean"`.
        fcn_input_size: the FCN-8s input the whole image is padded to (500).
        whole_image_mode: `"resize"` or `"sliding"`.
        batch_size: windows per forward pass.
        input_size: the network input; defaults to the model's.
        crf: a callable `(image, scores, scores_are=...) -> marginals` for the
            `*_crf` methods; `None` is `keras_deconvnet.inference.dense_crf`.
    """

    proposals: object = None
    top_n: int | None = PAPER_TOP_N
    min_box_size: float | None = None
    context: float = PAPER_CONTEXT
    score_mode: str = "logits"
    aggregation: str = "max"
    ensemble_mode: str = "product"
    fcn_input_size: int = 500
    whole_image_mode: str = "resize"
    batch_size: int = 16
    input_size: tuple | None = None
    crf: object = None

    def __post_init__(self):
        for name, value, allowed in (
            ("score_mode", self.score_mode, SCORE_MODES),
            ("aggregation", self.aggregation, AGGREGATIONS),
            ("ensemble_mode", self.ensemble_mode, ENSEMBLE_MODES),
            ("whole_image_mode", self.whole_image_mode, WHOLE_IMAGE_MODES),
        ):
            if value not in allowed:
                raise ValueError(f"`{name}` must be one of {allowed}. Received: {value!r}")

    def proposal_kwargs(self) -> dict:
        return {
            "top_n": self.top_n, "min_box_size": self.min_box_size,
            "context": self.context, "score_mode": self.score_mode,
            "aggregation": self.aggregation, "batch_size": self.batch_size,
            "input_size": self.input_size,
        }


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
        scores = predict_proposals(model, image, config.proposals, image_id=image_id,
                                   **config.proposal_kwargs())
        kind = "logits" if config.score_mode == "logits" else "probabilities"
    else:
        scores = predict_ensemble(model, fcn, image, config.proposals, image_id=image_id,
                                  mode=config.ensemble_mode,
                                  fcn_input_size=config.fcn_input_size,
                                  **config.proposal_kwargs())
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
            crf = config.crf
            if crf is None:
                from keras_deconvnet.inference.crf import dense_crf as crf
            if kind == "probabilities":
                from keras_deconvnet.inference.scores import normalise_scores

                scores = normalise_scores(scores)
            scores = crf(image, scores, scores_are=kind)
        labels[method] = labels_from_scores(scores)
    return labels
