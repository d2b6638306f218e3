"""Fully connected CRF post-processing of segmentation scores (DeconvNet's last step).

DeconvNet (Noh, Hong, Han, ICCV 2015) refines its ensemble's per-pixel class scores with the
fully connected CRF of Krähenbühl & Koltun ("Efficient Inference in Fully Connected CRFs with
Gaussian Edge Potentials", NIPS 2011), through the meanfield-matlab wrapper of Krähenbühl's
`densecrf` (v2, 2013). This module holds the CRF's settings and entry points, `DenseCRF` and
`dense_crf`; the inference runs in `keras_deconvnet.inference.mean_field`, with a NumPy / SciPy
permutohedral lattice (`keras_deconvnet.inference.permutohedral`) or, when installed, the
compiled `pydensecrf2` (the same `densecrf` C++ code).

What the authors' `generate_EDeconvNet_CRF_results.m` did, and the defaults here:

- unary `U_i(l) = -log softmax(scores_i)(l)`, from the raw ensemble scores;
- Potts pairwise term with a *smoothness* kernel `exp(-|p_i - p_j|^2 / (2 * 3^2))` of
  weight 3 and an *appearance* kernel
  `exp(-|p_i - p_j|^2 / (2 * 20^2) - |I_i - I_j|^2 / (2 * 3^2))` of weight 5 (positions `p`
  in pixels, colours `I` in 0-255 RGB), both filtered on the permutohedral lattice (Adams,
  Baek, Davis 2010);
- 10 mean-field iterations, then the argmax of the marginals;
- no kernel normalisation: Densecrf.m's default `NormalizationType` is `'NO_NORMALIZATION'`
  and DeconvNet does not change it.

Each iteration sets `Q_i(l) ∝ exp(-U_i(l) + sum_k w_k m_k(i, l))` with one message per kernel:

- `normalization="none"` (the authors'): `m = K Q`, the lattice's raw Gaussian-weighted sum
  of the marginals, the pixel's own term included. A message grows with the kernel's mass
  `K 1` around the pixel: about 50 for the smoothness kernel inside the image (14 in a
  corner), about 1000 for the appearance kernel inside a uniform region and under 1 on
  noisy texture. So the pairwise term outweighs any unary in flat regions and barely acts
  on texture.
- `"after"` (densecrf's NORMALIZE_AFTER, the NIPS 2011 paper's and this module's old
  behaviour): `m = (K Q) / (K 1)`, a weighted average in `[0, 1]` whatever the kernel's mass.
- `"symmetric"` (NORMALIZE_SYMMETRIC, densecrf's and pydensecrf's default):
  `m = D^-1/2 K D^-1/2 Q` with `D = diag(K 1)`.
- `"before"` (NORMALIZE_BEFORE, in densecrf for completeness): `m = K (Q / (K 1))`.

The NumPy lattice reproduces densecrf's `permutohedral.cpp` step by step in float32 (feature
elevation, rounding, barycentric weights, the `[1/2, 1, 1/2]` blur along each of the `d + 1`
lattice directions, the `1 / (1 + 2^-d)` scale), so both backends give the same labels on
almost every pixel.

Example:

>>> import numpy as np
>>> from keras_deconvnet.inference.crf import DenseCRF, dense_crf
>>> image = np.zeros((40, 60, 3), np.uint8); image[:, 30:] = 255
>>> logits = np.zeros((40, 60, 2), np.float32)
>>> logits[:, :25] = [2.0, 0.0]; logits[:, 35:] = [0.0, 2.0]
>>> refined = dense_crf(image, logits, scores_are="logits", crf=DenseCRF(backend="numpy"))
>>> labels = refined.argmax(-1)
>>> bool((labels[:, :30] == 0).all() and (labels[:, 30:] == 1).all())
True
"""

from __future__ import annotations

import dataclasses
import numbers
from typing import Any, Literal

import numpy as np

from keras_deconvnet.inference.config import check_choice
from keras_deconvnet.inference.mean_field import (
    NORMALIZATIONS,
    SCORES_ARE,
    Normalization,
    ScoresAre,
    mean_field,
    pydensecrf2_available,
    unary_from_scores,
)

__all__ = ["BACKENDS", "DenseCRF", "dense_crf"]

Backend = Literal["auto", "numpy", "pydensecrf2"]

BACKENDS = ("auto", "numpy", "pydensecrf2")


@dataclasses.dataclass
class DenseCRF:
    """A fully connected CRF with fixed parameters; call it on `(image, scores)`.

    The defaults are DeconvNet's (see the module docstring). Calling it,
    `crf(image, scores, scores_are="probabilities")`, returns the refined marginals as
    `dense_crf` does; `scores_are` defaults to `"probabilities"` because this package's
    inference functions return probabilities (DeconvNet's own script took the softmax of
    raw scores: `"logits"`). A `DenseCRF` is a valid `InferenceConfig.crf`.

    Args:
        iterations: mean-field iterations; 0 returns `softmax(-unary)`.
        gaussian_sxy: standard deviation, in pixels, of the smoothness kernel.
        gaussian_weight: Potts weight of the smoothness kernel (0 turns it off).
        bilateral_sxy: spatial standard deviation, in pixels, of the appearance kernel.
        bilateral_srgb: colour standard deviation, in 0-255 RGB units, of the appearance
            kernel.
        bilateral_weight: Potts weight of the appearance kernel (0 turns it off).
        normalization: `"none"` (DeconvNet's), `"symmetric"`, `"after"` or `"before"`;
            densecrf's NO_NORMALIZATION, NORMALIZE_SYMMETRIC, NORMALIZE_AFTER and
            NORMALIZE_BEFORE (see the module docstring).
        backend: `"numpy"`, `"pydensecrf2"` (needs the `pydensecrf2` package), or `"auto"`
            (pydensecrf2 when it imports, else NumPy).

    Raises:
        ValueError: for a bad parameter.
        ImportError: for `backend="pydensecrf2"` when pydensecrf2 is not installed.

    Example:

    >>> import numpy as np
    >>> crf = DenseCRF(iterations=5, backend="numpy")
    >>> crf.get_config()["bilateral_sxy"]
    20.0
    >>> refined = crf(np.zeros((4, 4, 3), np.uint8), np.full((4, 4, 2), 0.5, np.float32))
    >>> refined.shape, refined.dtype
    ((4, 4, 2), dtype('float32'))
    """

    iterations: int = 10
    gaussian_sxy: float = 3.0
    gaussian_weight: float = 3.0
    bilateral_sxy: float = 20.0
    bilateral_srgb: float = 3.0
    bilateral_weight: float = 5.0
    normalization: Normalization = "none"
    backend: Backend = "auto"

    def __post_init__(self) -> None:
        if (
            isinstance(self.iterations, bool)
            or not isinstance(self.iterations, numbers.Integral)
            or self.iterations < 0
        ):
            raise ValueError(
                f"`iterations` must be a non-negative integer. Received: {self.iterations!r}"
            )
        self.iterations = int(self.iterations)
        self.gaussian_sxy = _check_positive("gaussian_sxy", self.gaussian_sxy)
        self.gaussian_weight = _check_non_negative("gaussian_weight", self.gaussian_weight)
        self.bilateral_sxy = _check_positive("bilateral_sxy", self.bilateral_sxy)
        self.bilateral_srgb = _check_positive("bilateral_srgb", self.bilateral_srgb)
        self.bilateral_weight = _check_non_negative("bilateral_weight", self.bilateral_weight)
        check_choice("normalization", self.normalization, NORMALIZATIONS)
        check_choice("backend", self.backend, BACKENDS)
        if self.backend == "pydensecrf2" and not pydensecrf2_available():
            raise ImportError(
                'backend="pydensecrf2" needs the optional package pydensecrf2 (module '
                "`pydensecrf.densecrf`): pip install pydensecrf2 (it compiles C++ with "
                'Cython), or use backend="numpy".'
            )

    def get_config(self) -> dict[str, Any]:
        """The constructor arguments, as a JSON-serialisable dict."""
        return dataclasses.asdict(self)

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> DenseCRF:
        """A `DenseCRF` from the dict `get_config` returns."""
        return cls(**config)

    @property
    def resolved_backend(self) -> str:
        """`"numpy"` or `"pydensecrf2"`: the backend a call uses."""
        if self.backend == "auto":
            return "pydensecrf2" if pydensecrf2_available() else "numpy"
        return self.backend

    def gaussian_features(self, height: int, width: int) -> np.ndarray:
        """`(H * W, 2)` float32 features `(y / sxy, x / sxy)` of the smoothness kernel.

        Rows are pixels in row-major order; the first feature is the row, as in the
        meanfield-matlab wrapper (it hands densecrf MATLAB's column-major image, rows first).
        """
        return _pixel_positions(height, width) / np.float32(self.gaussian_sxy)

    def bilateral_features(self, image: np.ndarray) -> np.ndarray:
        """`(H * W, 5)` float32 features `(y / sxy, x / sxy, r / srgb, g / srgb, b / srgb)`."""
        positions = _pixel_positions(*image.shape[:2])
        colours = image.reshape(-1, 3).astype(np.float32)
        return np.concatenate(
            [positions / np.float32(self.bilateral_sxy),
             colours / np.float32(self.bilateral_srgb)],
            axis=1,
        )

    def __call__(
        self, image: np.ndarray, scores: np.ndarray, scores_are: ScoresAre = "probabilities"
    ) -> np.ndarray:
        """Refined `(H, W, C)` float32 marginals; see `dense_crf`."""
        check_choice("scores_are", scores_are, SCORES_ARE)
        _check_inputs(image, scores, scores_are)
        height, width, num_classes = scores.shape
        unary = unary_from_scores(scores, scores_are).reshape(-1, num_classes)
        kernels = []
        if self.gaussian_weight > 0:
            kernels.append((self.gaussian_weight, self.gaussian_features(height, width)))
        if self.bilateral_weight > 0:
            kernels.append((self.bilateral_weight, self.bilateral_features(image)))
        marginals = mean_field(unary, kernels, self.normalization, self.iterations,
                               self.resolved_backend)
        return marginals.reshape(height, width, num_classes)


def dense_crf(
    image: np.ndarray,
    scores: np.ndarray,
    *,
    scores_are: ScoresAre = "probabilities",
    crf: DenseCRF | None = None,
) -> np.ndarray:
    """Refines per-pixel class scores with DeconvNet's fully connected CRF (mean field).

    The unary is `-log softmax(scores)` for logits or `-log(clip(scores))` for
    probabilities; the pairwise term is Potts with a smoothness kernel on positions and an
    appearance kernel on positions and colours, unnormalised by default (see the module
    docstring). The default `crf` has DeconvNet's published settings; to reproduce its
    script exactly, pass the raw ensemble scores with `scores_are="logits"`.

    Args:
        image: `(H, W, 3)` uint8 RGB image the scores were computed for.
        scores: `(H, W, C)` float array: logits, or probabilities in `[0, 1]` whose rows need
            not sum to 1 (e.g. max-aggregated proposal scores; an all-zero row is uniform).
        scores_are: `"probabilities"` (default; what this package's inference functions
            return) or `"logits"`.
        crf: a `DenseCRF` with the CRF's parameters (iterations, kernels, normalisation,
            backend); `None` is `DenseCRF()`: DeconvNet's settings, 10 iterations, no
            normalisation, and the `"auto"` backend (pydensecrf2 when installed, else
            NumPy). Both backends run the same float32 algorithm and gave identical labels
            on every pixel of the 100x80 to 500x375 images measured; only float rounding
            (summation order, `exp`) differs, so an odd pixel may flip elsewhere.

    Returns:
        `(H, W, C)` float32 refined marginals; each pixel's values sum to 1, and
        `argmax(-1)` gives the labels.

    Raises:
        ValueError: for a non-uint8 or non-RGB image, non-float or non-finite scores,
            probabilities outside `[0, 1]`, mismatched shapes, or an unknown `scores_are`.

    Example:

    >>> import numpy as np
    >>> image = np.zeros((8, 8, 3), np.uint8)
    >>> logits = np.zeros((8, 8, 3), np.float32); logits[..., 1] = 1.0
    >>> refined = dense_crf(image, logits, scores_are="logits", crf=DenseCRF(iterations=2))
    >>> refined.shape, bool((refined.argmax(-1) == 1).all())
    ((8, 8, 3), True)
    """
    return (DenseCRF() if crf is None else crf)(image, scores, scores_are)


def _pixel_positions(height: int, width: int) -> np.ndarray:
    """`(H * W, 2)` float32 `(y, x)` of the pixels in row-major order."""
    y, x = np.mgrid[:height, :width]
    return np.stack([y, x], axis=-1).reshape(-1, 2).astype(np.float32)


def _check_positive(name: str, value: Any) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Real)
        or not np.isfinite(value)
        or value <= 0
    ):
        raise ValueError(f"`{name}` must be a positive finite number. Received: {value!r}")
    return float(value)


def _check_non_negative(name: str, value: Any) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Real)
        or not np.isfinite(value)
        or value < 0
    ):
        raise ValueError(f"`{name}` must be a non-negative finite number. Received: {value!r}")
    return float(value)


def _check_inputs(image: Any, scores: Any, scores_are: str) -> None:
    if not isinstance(image, np.ndarray):
        raise ValueError(f"`image` must be a NumPy array. Received: {type(image).__name__}")
    if not isinstance(scores, np.ndarray):
        raise ValueError(f"`scores` must be a NumPy array. Received: {type(scores).__name__}")
    if image.dtype != np.uint8:
        raise ValueError(f"`image` must be uint8 RGB. Received: dtype={image.dtype}")
    if image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"`image` must be (H, W, 3) RGB. Received: shape={image.shape}")
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise ValueError(f"`image` must not be empty. Received: shape={image.shape}")
    if not np.issubdtype(scores.dtype, np.floating):
        raise ValueError(f"`scores` must be a float array. Received: dtype={scores.dtype}")
    if scores.ndim != 3 or scores.shape[-1] < 1:
        raise ValueError(f"`scores` must be (H, W, C). Received: shape={scores.shape}")
    if scores.shape[:2] != image.shape[:2]:
        raise ValueError(
            "`image` and `scores` must have the same height and width. Received: "
            f"image.shape={image.shape}, scores.shape={scores.shape}"
        )
    if not np.isfinite(scores).all():
        raise ValueError("`scores` must be finite (it has NaN or inf values).")
    if scores_are == "probabilities":
        low, high = float(scores.min()), float(scores.max())
        if low < 0 or high > 1:
            raise ValueError(
                '`scores` must lie in [0, 1] with scores_are="probabilities" (pass '
                f'scores_are="logits" for raw scores). Received values in [{low:g}, {high:g}]'
            )
