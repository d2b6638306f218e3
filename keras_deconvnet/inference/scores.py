"""Class scores to probabilities and labels, the way every inference path finishes."""

from __future__ import annotations

import numpy as np


def softmax(scores) -> np.ndarray:
    """Softmax over the last axis, in float32 and numerically stable.

    Example:

    >>> softmax(np.array([[0.0, 0.0], [10.0, 9.0]])).round(3)
    array([[0.5  , 0.5  ],
           [0.731, 0.269]], dtype=float32)
    """
    scores = np.asarray(scores, np.float32)
    shifted = np.exp(scores - scores.max(-1, keepdims=True))
    return shifted / shifted.sum(-1, keepdims=True)


def normalise_scores(scores) -> np.ndarray:
    """Aggregated probabilities to per-pixel distributions; uncovered pixels (all
    zeros) become background. For `score_mode="probabilities"` aggregation.

    Example:

    >>> normalise_scores(np.array([[[0.0, 0.0], [0.2, 0.6]]])).tolist()
    [[[1.0, 0.0], [0.25, 0.75]]]
    """
    scores = np.asarray(scores, np.float32)
    total = scores.sum(-1, keepdims=True)
    background = np.zeros_like(scores)
    background[..., 0] = 1.0
    return np.where(total > 0, scores / np.maximum(total, 1e-12), background)


def labels_from_scores(scores) -> np.ndarray:
    """Argmax over classes as a uint8 label map (ties go to the lower class, so an
    all-zero canvas is background).

    Example:

    >>> labels_from_scores(np.array([[[0.0, 0.0], [0.1, 0.3]]])).tolist()
    [[0, 1]]
    """
    return np.asarray(np.argmax(scores, axis=-1), np.uint8)
