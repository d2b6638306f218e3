"""Evaluates segmentation methods side by side, the way the paper's Table 1 does.

One pass over a dataset runs every requested method on every image at its own size
(`keras_deconvnet.inference.segment_image`) and accumulates one confusion matrix per
method, with the PASCAL VOC devkit's rules (label 255 ignored). `comparison_table`
prints the per-class table that `deconvnet evaluate`, `train` and `quickstart` show.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import keras
import numpy as np

from keras_deconvnet.inference.config import InferenceConfig
from keras_deconvnet.inference.methods import METHODS, check_methods, segment_image
from keras_deconvnet.metrics import confusion_matrix, iou_from_confusion

__all__ = ["METHODS", "InferenceConfig", "comparison_table", "evaluate_methods"]


def evaluate_methods(
    model: keras.Model,
    examples: Iterable[dict],
    num_classes: int,
    methods: Sequence[str] = ("whole", "proposals"),
    fcn: keras.Model | None = None,
    config: InferenceConfig | None = None,
    *,
    verbose: int = 1,
    total: int | None = None,
) -> dict:
    """Mean IoU of each method over a dataset (VOC devkit rules, 255 ignored).

    Args:
        model: the DeconvNet segmenter (logits output).
        examples: iterable of dicts with `"image"` `(H, W, 3)` uint8 and
            `"class_mask"` `(H, W)` (and optionally `"image_id"`, for proposal
            files), e.g. a dataset from `keras_deconvnet.data`; every example is
            evaluated (`itertools.islice(examples, n)` takes the first `n`).
        num_classes: classes including background.
        methods: any of `METHODS`.
        fcn: an FCN-8s segmenter for the `ensemble*` methods.
        config: an `InferenceConfig` (proposals, windows, ensemble, CRF); the
            defaults are the authors'.
        verbose: 1 shows a progress bar.
        total: number of examples, for the progress bar.

    Returns:
        `{method: iou_from_confusion(...) + {"confusion_matrix": list}}` plus
        `"num_images"`.

    Example:

    >>> from keras_deconvnet.data import synthetic_dataset
    >>> from keras_deconvnet.models import DeconvNetImageSegmenter
    >>> model = DeconvNetImageSegmenter.from_preset("deconvnet_edge_small", num_classes=6)
    >>> results = evaluate_methods(
    ...     model, synthetic_dataset("val", 1, (96, 96)).as_numpy_iterator(), 6,
    ...     methods=("whole",), verbose=0)
    >>> results["num_images"], 0.0 <= results["whole"]["mean_iou"] <= 1.0
    (1, True)
    """
    methods = check_methods(methods, fcn)
    config = config or InferenceConfig()
    matrices = {m: np.zeros((num_classes, num_classes), np.int64) for m in methods}
    if total is None and hasattr(examples, "__len__"):
        total = len(examples)
    progress = keras.utils.Progbar(total, verbose=verbose, unit_name="image")
    count = 0
    for example in examples:
        image = np.asarray(example["image"])
        truth = np.asarray(example["class_mask"])
        image_id = example.get("image_id")
        if isinstance(image_id, bytes):
            image_id = image_id.decode()
        labels = segment_image(image, model, methods, config, fcn, image_id or None)
        for method in methods:
            matrices[method] += confusion_matrix(truth, labels[method], num_classes)
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


def comparison_table(results: dict, methods, class_names) -> str:
    """One line per class, one column per method, percentages; mean IoU last.

    Example:

    >>> r = {"whole": {"per_class_iou": [0.5, 1.0], "mean_iou": 0.75, "pixel_accuracy": 0.9}}
    >>> print(comparison_table(r, ["whole"], ["background", "cat"]))
    class                whole
    background            50.0
    cat                  100.0
    --------------------------
    mean IoU              75.0
    pixel acc.            90.0
    """
    width = max(12, *(len(m) + 2 for m in methods))
    lines = [f"{'class':<14}" + "".join(f"{m:>{width}}" for m in methods)]
    for c, name in enumerate(class_names):
        cells = []
        for m in methods:
            value = results[m]["per_class_iou"][c]
            cells.append(f"{'-':>{width}}" if not np.isfinite(value)
                         else f"{100 * value:>{width}.1f}")
        lines.append(f"{name:<14}" + "".join(cells))
    lines.append("-" * len(lines[0]))
    for key, label in (("mean_iou", "mean IoU"), ("pixel_accuracy", "pixel acc.")):
        lines.append(f"{label:<14}" + "".join(
            f"{100 * results[m][key]:>{width}.1f}" for m in methods))
    return "\n".join(lines)
