"""Evaluates segmentation methods side by side, the way the paper's Table 1 does.

One pass over a dataset runs every requested method on every image at its own size and
accumulates one confusion matrix per method: whole-image inference, proposal-based
(instance-wise) inference, either followed by the dense CRF, and the EDeconvNet
ensemble with FCN-8s through the same proposal path.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import keras
import numpy as np

from keras_deconvnet.inference.proposals import normalise_scores, predict_proposals
from keras_deconvnet.inference.whole_image import predict_whole_image
from keras_deconvnet.metrics import confusion_matrix, iou_from_confusion

METHODS = ("whole", "whole_crf", "proposals", "proposals_crf", "ensemble", "ensemble_crf")


def evaluate_methods(
    model: keras.Model,
    examples: Iterable[dict],
    num_classes: int,
    methods: Sequence[str] = ("whole", "proposals"),
    fcn: keras.Model | None = None,
    proposals=None,
    top_n: int = 50,
    aggregation: str = "max",
    batch_size: int = 16,
    crf=None,
    max_examples: int | None = None,
    verbose: int = 1,
    total: int | None = None,
) -> dict:
    """Mean IoU of each method over a dataset (VOC devkit rules, 255 ignored).

    Args:
        model: the segmentation model (logits output).
        examples: iterable of dicts with `"image"` `(H, W, 3)` uint8 and
            `"class_mask"` `(H, W)` (tensors or arrays), e.g. a dataset from
            `keras_deconvnet.data`.
        num_classes: classes including background.
        methods: any of `METHODS`.
        fcn: an FCN-8s for the `ensemble*` methods (same input and classes as
            `model`).
        proposals: proposal generator or None (sliding windows).
        top_n, aggregation, batch_size: as in `predict_proposals`.
        crf: a callable `(image, probabilities) -> probabilities` for the `*_crf`
            methods; defaults to `keras_deconvnet.inference.crf.dense_crf`.
        max_examples: stop after this many images.
        verbose: 1 shows a progress bar.
        total: number of examples, for the progress bar (when `examples` has no
            length).

    Returns:
        `{method: iou_from_confusion(...) + {"confusion_matrix": list}}` plus
        `"num_images"`.
    """
    unknown = sorted(set(methods) - set(METHODS))
    if unknown or not methods:
        raise ValueError(f"`methods` must be among {METHODS}. Received: {list(methods)}")
    if any(m.startswith("ensemble") for m in methods) and fcn is None:
        raise ValueError("The ensemble methods need an FCN-8s model: pass `fcn`.")
    if any(m.endswith("_crf") for m in methods) and crf is None:
        from keras_deconvnet.inference.crf import dense_crf as crf
    ensemble = None
    if fcn is not None and any(m.startswith("ensemble") for m in methods):
        from keras_deconvnet.models import EDeconvNetImageSegmenter

        ensemble = EDeconvNetImageSegmenter(model, fcn, mode="mean")
    matrices = {m: np.zeros((num_classes, num_classes), np.int64) for m in methods}
    if total is None and hasattr(examples, "__len__"):
        total = len(examples)
    if max_examples is not None:
        total = min(total, max_examples) if total is not None else max_examples
    progress = keras.utils.Progbar(total, verbose=verbose, unit_name="image")
    count = 0
    for example in examples:
        if max_examples is not None and count >= max_examples:
            break
        image = np.asarray(example["image"])
        labels = np.asarray(example["class_mask"])
        cache = {}
        for method in methods:
            base = method.removesuffix("_crf")
            if base not in cache:
                if base == "whole":
                    cache[base] = predict_whole_image(model, image)
                else:
                    cache[base] = predict_proposals(
                        ensemble if base == "ensemble" else model, image, proposals,
                        top_n=top_n, batch_size=batch_size, aggregation=aggregation,
                    )
            scores = cache[base]
            if method.endswith("_crf"):
                scores = crf(image, normalise_scores(scores))
            matrices[method] += confusion_matrix(labels, scores.argmax(-1), num_classes)
        count += 1
        progress.update(count)
    if count == 0:
        raise ValueError("The evaluation data has no examples.")
    results = {"num_images": count}
    for method, cm in matrices.items():
        result = iou_from_confusion(cm)
        result["confusion_matrix"] = cm.tolist()
        results[method] = result
    return results
