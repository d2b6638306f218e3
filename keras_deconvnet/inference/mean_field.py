"""Mean-field inference of the fully connected CRF, on the NumPy lattice or pydensecrf2.

Each iteration sets `Q_i(l) ∝ exp(-U_i(l) + sum_k w_k m_k(i, l))`, one message `m_k` per
Gaussian kernel, normalised as densecrf's `NormalizationType` says (the messages are
described in `keras_deconvnet.inference.crf`'s docstring). `mean_field` runs it with either
backend: the NumPy / SciPy `PermutohedralLattice`, or the compiled `pydensecrf2` (the same
`densecrf` C++ code), which both run the same float32 algorithm.

Example:

>>> import numpy as np
>>> unary = unary_from_scores(np.array([[2.0, 0.0], [0.0, 0.0]], np.float32))
>>> positions = np.array([[0.0], [0.5]], np.float32)  # two close pixels
>>> marginals = mean_field(unary, [(3.0, positions)], "after", iterations=5)
>>> marginals.argmax(-1).tolist()  # the confident pixel decides its neighbour's label
[0, 0]
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

from keras_deconvnet.inference.config import check_choice
from keras_deconvnet.inference.permutohedral import PermutohedralLattice

__all__ = [
    "NORMALIZATIONS",
    "SCORES_ARE",
    "mean_field",
    "pydensecrf2_available",
    "unary_from_scores",
]

ScoresAre = Literal["logits", "probabilities"]
Normalization = Literal["none", "symmetric", "after", "before"]

SCORES_ARE = ("logits", "probabilities")
NORMALIZATIONS = ("none", "symmetric", "after", "before")

# Probabilities are clipped to [_MIN_PROBABILITY, 1] before the log: the smallest normal
# float32, so a probability from a float32 softmax gives the unary its logits would (to
# float32 precision), and a 0 gives a large but finite 87.3.
_MIN_PROBABILITY = float(np.finfo(np.float32).tiny)

# densecrf adds this to the kernel mass `K 1` before inverting it.
_NORM_EPSILON = 1e-20


def pydensecrf2_available() -> bool:
    """Whether the compiled backend imports.

    `pydensecrf2` (and the original `pydensecrf`) install the module `pydensecrf.densecrf`.

    Returns:
        True when `backend="pydensecrf2"` can be used.
    """
    return _import_pydensecrf() is not None


def _import_pydensecrf() -> Any:
    try:
        from pydensecrf import densecrf
    except ImportError:
        return None
    return densecrf


def unary_from_scores(scores: np.ndarray, scores_are: ScoresAre = "logits") -> np.ndarray:
    """The CRF's unary energy `-log p` of per-pixel class scores.

    Args:
        scores: `(..., C)` float array. Logits (any finite values; the class axis is last)
            or probabilities in `[0, 1]` (rows need not sum to 1: a per-pixel factor only
            shifts that pixel's unary by a constant, which mean field ignores).
        scores_are: `"logits"` for `-log softmax(scores)` (computed as a log-softmax, so
            large logits do not overflow) or `"probabilities"` for
            `-log(clip(scores, 1.2e-38, 1))`.

    Returns:
        float32 array of the shape of `scores`.

    Raises:
        ValueError: for an unknown `scores_are`.

    Example:

    >>> import numpy as np
    >>> unary = unary_from_scores(np.array([0.0, np.log(3.0)]))  # softmax: [1/4, 3/4]
    >>> bool(np.allclose(unary, [np.log(4.0), np.log(4.0 / 3.0)]))
    True
    >>> bool(np.allclose(unary_from_scores(np.array([0.25, 0.75]), "probabilities"), unary))
    True
    """
    check_choice("scores_are", scores_are, SCORES_ARE)
    scores = np.asarray(scores, dtype=np.float64)
    if scores_are == "probabilities":
        return (-np.log(np.clip(scores, _MIN_PROBABILITY, 1.0))).astype(np.float32)
    shifted = scores - scores.max(axis=-1, keepdims=True)
    log_sum = np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
    return (log_sum - shifted).astype(np.float32)


def mean_field(
    unary: np.ndarray,
    kernels: list[tuple[float, np.ndarray]],
    normalization: Normalization = "none",
    iterations: int = 10,
    backend: Literal["numpy", "pydensecrf2"] = "numpy",
) -> np.ndarray:
    """Mean field as densecrf's `DenseCRF::inference`: `Q = softmax(-U + sum_k w_k m_k(Q))`.

    Args:
        unary: `(N, C)` float32 unary energies (`unary_from_scores`).
        kernels: `(weight, features)` per Potts kernel, the features `(N, d)` already
            divided by the kernel's standard deviations.
        normalization: `"none"`, `"symmetric"`, `"after"` or `"before"` (densecrf's
            NO_NORMALIZATION, NORMALIZE_SYMMETRIC, NORMALIZE_AFTER, NORMALIZE_BEFORE).
        iterations: mean-field iterations; 0 returns `softmax(-unary)`.
        backend: `"numpy"` or `"pydensecrf2"` (which must be installed).

    Returns:
        `(N, C)` float32 marginals; each row sums to 1.

    Example:

    >>> unary = unary_from_scores(np.array([[1.0, 0.0]], np.float32))
    >>> mean_field(unary, [], iterations=10).round(3)  # no kernel: softmax(-unary)
    array([[0.731, 0.269]], dtype=float32)
    """
    if iterations == 0 or unary.shape[-1] == 1 or not kernels:
        return _softmax(-unary)
    if backend == "pydensecrf2":
        return _mean_field_pydensecrf(unary, kernels, normalization, iterations)
    return _mean_field_numpy(unary, kernels, normalization, iterations)


def _softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax of an `(N, C)` float32 array, in place."""
    logits -= logits.max(axis=-1, keepdims=True)
    np.exp(logits, out=logits)
    # einsum sums the short rows several times faster than ndarray.sum(axis=-1).
    logits /= np.einsum("ij->i", logits)[:, None]
    return logits


class _NumpyKernel:
    """One pairwise kernel on the NumPy lattice, with densecrf's normalisation of `K Q`."""

    def __init__(self, features: np.ndarray, normalization: str) -> None:
        self.lattice = PermutohedralLattice(features)
        self.normalization = normalization
        self.norm = None
        if normalization != "none":
            mass = self.lattice.filter(np.ones((features.shape[0], 1), np.float32))
            mass = mass.astype(np.float64) + _NORM_EPSILON
            power = 0.5 if normalization == "symmetric" else 1.0
            self.norm = (1.0 / mass**power).astype(np.float32)

    def message(self, marginals: np.ndarray) -> np.ndarray:
        """`m(Q)` for `(N, C)` float32 marginals (see the module docstring)."""
        if self.normalization in ("symmetric", "before"):
            marginals = marginals * self.norm
        filtered = self.lattice.filter(marginals)
        if self.normalization in ("symmetric", "after"):
            filtered *= self.norm
        return filtered


def _mean_field_numpy(
    unary: np.ndarray, kernels: list[tuple[float, np.ndarray]], normalization: str,
    iterations: int,
) -> np.ndarray:
    """Mean field as densecrf's `DenseCRF::inference`: `Q = softmax(-U + sum_k w_k m_k(Q))`."""
    # The lattices depend only on the image, so they are built once, for all iterations.
    built = [(np.float32(weight), _NumpyKernel(features, normalization))
             for weight, features in kernels]
    negative_unary = -unary
    marginals = _softmax(negative_unary.copy())
    for _ in range(iterations):
        logits = negative_unary.copy()
        for weight, kernel in built:
            message = kernel.message(marginals)
            message *= weight  # in place: these (N, C) temporaries are the size of the image
            logits += message
        marginals = _softmax(logits)
    return marginals


def _mean_field_pydensecrf(
    unary: np.ndarray, kernels: list[tuple[float, np.ndarray]], normalization: str,
    iterations: int,
) -> np.ndarray:
    densecrf = _import_pydensecrf()
    num_points, num_classes = unary.shape
    modes = {
        "none": densecrf.NO_NORMALIZATION,
        "symmetric": densecrf.NORMALIZE_SYMMETRIC,
        "after": densecrf.NORMALIZE_AFTER,
        "before": densecrf.NORMALIZE_BEFORE,
    }
    crf = densecrf.DenseCRF(num_points, num_classes)
    crf.setUnaryEnergy(np.ascontiguousarray(unary.T))
    for weight, features in kernels:
        # Explicit features (rather than DenseCRF2D's) so both backends filter the same
        # points; CONST_KERNEL is what meanfield-matlab asks for (it only matters when
        # learning kernel parameters).
        crf.addPairwiseEnergy(
            np.ascontiguousarray(features.T), float(weight), kernel=densecrf.CONST_KERNEL,
            normalization=modes[normalization],
        )
    return np.ascontiguousarray(np.array(crf.inference(iterations), dtype=np.float32).T)
