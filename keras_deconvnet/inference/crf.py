"""Fully connected CRF post-processing of segmentation probabilities (DeconvNet's last step).

DeconvNet (Noh, Hong, Han, ICCV 2015) refines the network's per-pixel class probabilities
with the fully connected CRF of Krähenbühl & Koltun ("Efficient Inference in Fully Connected
CRFs with Gaussian Edge Potentials", NIPS 2011). This module is a NumPy / SciPy
implementation of that CRF with mean-field inference, so no compiled `pydensecrf` is needed.

The energy of a labelling `x` is

    E(x) = sum_i U_i(x_i) + sum_{i<j} [x_i != x_j] (w_g k_g(i, j) + w_b k_b(i, j))

with the unary `U_i(l) = -log p_i(l)` from the network (Potts compatibility) and two
Gaussian kernels:

- the *smoothness* kernel `k_g(i, j) = exp(-|p_i - p_j|^2 / (2 gaussian_sxy^2))` on pixel
  positions, applied exactly with a separable Gaussian blur (`scipy.ndimage.gaussian_filter`);
- the *appearance* (bilateral) kernel
  `k_b(i, j) = exp(-|p_i - p_j|^2 / (2 bilateral_sxy^2) - |I_i - I_j|^2 / (2 bilateral_srgb^2))`
  on positions and RGB colours, applied approximately with the permutohedral lattice
  (Adams, Baek, Davis, Eurographics 2010), as in Krähenbühl's `permutohedral.cpp`.

Each mean-field iteration computes, for each kernel, the message `(K Q) / (K 1)`: the
kernel-weighted *average* of the current marginals `Q` (the filtered marginals divided by the
filtered all-ones image, densecrf's `NORMALIZE_AFTER`). This keeps a message in `[0, 1]`
whatever the kernel's width, so the weights `w_g`, `w_b` are on the scale of the unary, and
it cancels the lattice's overall scale error (its raw output is about half the exact sum).
The filters keep the pixel's own term (`k(i, i) = 1`; `j = i` is not excluded from the sum),
as densecrf's lattice filter does. For the smoothness kernel that is about 1/57 of the weight
(`2 pi gaussian_sxy^2 ~= 57`); for the bilateral kernel it is small in uniform regions but can
dominate on noisy texture, where few pixels lie within `bilateral_srgb` in colour: there the
bilateral term mostly reinforces the pixel's current marginal (by itself, no label change).

The lattice is built once per image: the splat, the `d + 1` blurs (one per lattice direction)
and the slice are `scipy.sparse` matrices, so one iteration is a few sparse matrix products
over the `C` class channels.

Example:

>>> import numpy as np
>>> from keras_deconvnet.inference.crf import dense_crf
>>> image = np.zeros((40, 60, 3), np.uint8); image[:, 30:] = 255
>>> probabilities = np.full((40, 60, 2), 0.5, np.float32)
>>> probabilities[:, :25] = [0.9, 0.1]; probabilities[:, 35:] = [0.1, 0.9]
>>> labels = dense_crf(image, probabilities).argmax(-1)
>>> bool((labels[:, :30] == 0).all() and (labels[:, 30:] == 1).all())
True
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np
from scipy import ndimage, sparse

__all__ = ["DenseCRF", "PermutohedralLattice", "dense_crf"]

# Probabilities are clipped to [_EPSILON, 1] before the log, so a zero gives a large but
# finite unary (-log 1e-8 ~= 18.4).
_EPSILON = 1e-8


def _row_ids(rows: np.ndarray) -> np.ndarray:
    """An int64 per row of an integer matrix, equal exactly where the rows are equal.

    Packs the columns in mixed radix; when the packed value would pass 2**62, the ids so far
    are first replaced by their rank among the distinct ids (at most `len(rows)`), so any
    coordinate range works.
    """
    ids = rows[:, 0] - rows[:, 0].min()
    for column in range(1, rows.shape[1]):
        values = rows[:, column] - rows[:, column].min()
        radix = int(values.max()) + 1
        if (int(ids.max()) + 1) * radix >= 2**62:
            ids = np.unique(ids, return_inverse=True)[1].reshape(-1).astype(np.int64)
        ids = ids * radix + values
    return ids


def _lattice_vertices(keys: np.ndarray) -> tuple[np.ndarray, list[tuple[np.ndarray, np.ndarray]]]:
    """Numbers the distinct lattice vertices and finds their neighbours.

    Args:
        keys: `(M, d)` int64 keys (a vertex's first `d` coordinates in `H_d`), repeated.

    Returns:
        `inverse`, the vertex index of each key (vertices numbered in sorted-id order), and
        for each of the `d + 1` lattice directions `j` the pairs `(source, target)` of vertex
        indices with `target = source - 1 + (d + 1) e_j` (`source - 1` for `j = d`); the
        opposite neighbour of `target` is then `source`.
    """
    d = keys.shape[1]
    low = keys.min(axis=0) - (d + 1)
    radix = [int(value) for value in keys.max(axis=0) + (d + 1) - low + 1]
    if np.prod(radix, dtype=object) < 2**62:
        # Fast path: a linear mixed-radix id, so a neighbour's id is the vertex's id plus a
        # constant per direction (the margin of d + 1 keeps neighbours inside the radix).
        multiplier = np.cumprod([1, *radix[:0:-1]])[::-1].astype(np.int64)
        vertex_ids, inverse = np.unique((keys - low) @ multiplier, return_inverse=True)
        step = -int(multiplier.sum())
        offsets = [step + (d + 1) * int(multiplier[j]) for j in range(d)] + [step]
        queries = [vertex_ids + offset for offset in offsets]
        sorter = None
    else:
        # Any coordinate range: pack the keys of the vertices and of their neighbours
        # together, densifying the ids as needed.
        _, first, inverse = np.unique(_row_ids(keys), return_index=True, return_inverse=True)
        vertex_keys = keys[first]
        neighbour_keys = []
        for direction in range(d + 1):
            neighbour = vertex_keys - 1
            if direction < d:
                neighbour[:, direction] += d + 1
            neighbour_keys.append(neighbour)
        ids = _row_ids(np.concatenate([vertex_keys, *neighbour_keys])).reshape(d + 2, -1)
        sorter = np.argsort(ids[0])
        vertex_ids = ids[0][sorter]
        queries = list(ids[1:])
    num_vertices = vertex_ids.size
    edges = []
    for query in queries:
        position = np.minimum(np.searchsorted(vertex_ids, query), num_vertices - 1)
        found = vertex_ids[position] == query
        source = np.flatnonzero(found)
        target = position[found]
        if sorter is not None:
            source, target = sorter[source], sorter[target]
        edges.append((source, target))
    return inverse.reshape(-1), edges


class PermutohedralLattice:
    """Approximate Gaussian filtering in a feature space, on the permutohedral lattice.

    Filters values `v` (one row per point) with the Gaussian kernel of the features,
    `out_i ~= sum_j exp(-|f_i - f_j|^2 / 2) v_j`, in time linear in the number of points
    (Adams, Baek, Davis 2010). Features must already be divided by the kernel's standard
    deviations. The construction follows Krähenbühl's `permutohedral.cpp`: elevate each
    feature vector onto the hyperplane `H_d` in `R^(d+1)`, find its enclosing simplex with the
    rank trick, and splat it with barycentric weights onto the simplex's `d + 1` vertices;
    blur along each of the `d + 1` lattice directions with the kernel `[1/2, 1, 1/2]`; slice
    back with the same weights.

    Args:
        features: `(N, d)` float array of feature vectors, already scaled by `1 / std`.

    Attributes:
        num_points: `N`.
        num_vertices: the number of lattice vertices touched by the points.
        splat: `(V, N)` sparse matrix (points to lattice vertices).
        slice: `(N, V)` sparse matrix (lattice vertices to points), `splat.T`.
        blurs: `d + 1` sparse `(V, V)` matrices, one per lattice direction, in the order
            they are applied.

    Example:

    >>> import numpy as np
    >>> lattice = PermutohedralLattice(np.random.default_rng(0).normal(size=(100, 3)))
    >>> lattice.filter(np.ones((100, 2), np.float32)).shape
    (100, 2)
    """

    def __init__(self, features: np.ndarray) -> None:
        features = np.asarray(features, dtype=np.float64)
        if features.ndim != 2 or features.shape[0] < 1 or features.shape[1] < 1:
            raise ValueError(
                f"Lattice features must be a non-empty (N, d) array. Received: shape="
                f"{features.shape}"
            )
        if not np.isfinite(features).all():
            raise ValueError("Lattice features must be finite.")
        n, d = features.shape
        self.num_points = n
        self.dimension = d

        # Elevate onto H_d = {x in R^(d+1): sum x = 0}, scaled so that the lattice blur
        # approximates a unit-variance Gaussian (the scale of permutohedral.cpp).
        inv_std_dev = np.sqrt(2.0 / 3.0) * (d + 1)
        scale = inv_std_dev / np.sqrt((np.arange(d) + 1.0) * (np.arange(d) + 2.0))
        scaled = features * scale
        suffix = np.zeros((n, d + 1))
        suffix[:, :d] = np.cumsum(scaled[:, ::-1], axis=1)[:, ::-1]
        elevated = suffix.copy()
        elevated[:, 1:] -= np.arange(1, d + 1) * scaled

        # The closest remainder-0 lattice point, then the rank trick for the enclosing simplex.
        rounded = np.rint(elevated / (d + 1))
        rem0 = (rounded * (d + 1)).astype(np.int64)
        coordinate_sum = rounded.sum(axis=1).astype(np.int64)
        order = np.argsort(-(elevated - rem0), axis=1, kind="stable")
        rank = np.empty((n, d + 1), dtype=np.int64)
        np.put_along_axis(rank, order, np.arange(d + 1)[None, :], axis=1)
        rank += coordinate_sum[:, None]
        below = rank < 0
        rank[below] += d + 1
        rem0[below] += d + 1
        above = rank > d
        rank[above] -= d + 1
        rem0[above] -= d + 1

        # Barycentric coordinates in the simplex (rank is a permutation of 0..d in each row).
        delta = (elevated - rem0) / (d + 1)
        rows = np.arange(n)[:, None]
        barycentric = np.zeros((n, d + 2))
        barycentric[rows, d - rank] += delta
        barycentric[rows, d - rank + 1] -= delta
        barycentric[:, 0] += 1.0 + barycentric[:, d + 1]
        weights = barycentric[:, : d + 1]

        # The simplex's d + 1 vertices; a key is a vertex's first d coordinates (the last one
        # follows from the zero sum).
        remainders = np.arange(d + 1)[None, :, None]
        canonical = np.where(rank[:, None, :d] <= d - remainders, remainders, remainders - d - 1)
        keys = (rem0[:, None, :d] + canonical).reshape(n * (d + 1), d)
        inverse, edges = _lattice_vertices(keys)
        num_vertices = int(inverse.max()) + 1
        self.num_vertices = num_vertices

        self.slice = sparse.csr_matrix(
            (weights.reshape(-1).astype(np.float32), inverse,
             np.arange(0, n * (d + 1) + 1, d + 1)),
            shape=(n, num_vertices),
        )
        self.splat = self.slice.T.tocsr()

        # Blur along direction j: each vertex gets its value plus half of each neighbour's.
        identity = np.arange(num_vertices)
        ones = np.ones(num_vertices, dtype=np.float32)
        self.blurs = []
        for source, target in edges:
            half = np.full(source.size, 0.5, dtype=np.float32)
            self.blurs.append(
                sparse.csr_matrix(
                    (np.concatenate([ones, half, half]),
                     (np.concatenate([identity, source, target]),
                      np.concatenate([identity, target, source]))),
                    shape=(num_vertices, num_vertices),
                )
            )
        # A lattice vertex's own weight after the d + 1 blurs is 1 + 2^-d; dividing by it
        # makes the filter's peak weight about 1, like exp(0).
        self._alpha = np.float32(1.0 / (1.0 + 2.0**-d))

    def filter(self, values: np.ndarray) -> np.ndarray:
        """Gaussian-filters `values`: `out_i ~= sum_j exp(-|f_i - f_j|^2 / 2) values_j`.

        Args:
            values: `(N,)` or `(N, C)` array, one row per point.

        Returns:
            float32 array of the shape of `values`.
        """
        values = np.asarray(values, dtype=np.float32)
        if values.shape[0] != self.num_points:
            raise ValueError(
                f"Expected {self.num_points} rows of values, received shape {values.shape}."
            )
        lattice_values = self.splat @ values
        for blur in self.blurs:
            lattice_values = blur @ lattice_values
        return np.asarray(self.slice @ lattice_values) * self._alpha


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


def _check_inputs(image: Any, probabilities: Any) -> tuple[np.ndarray, np.ndarray]:
    if not isinstance(image, np.ndarray) or not isinstance(probabilities, np.ndarray):
        raise ValueError(
            "`image` and `probabilities` must be NumPy arrays. Received: "
            f"{type(image).__name__} and {type(probabilities).__name__}"
        )
    if image.dtype != np.uint8:
        raise ValueError(f"`image` must be uint8 RGB. Received: dtype={image.dtype}")
    if image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"`image` must be (H, W, 3) RGB. Received: shape={image.shape}")
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise ValueError(f"`image` must not be empty. Received: shape={image.shape}")
    if not np.issubdtype(probabilities.dtype, np.floating):
        raise ValueError(
            f"`probabilities` must be a float array. Received: dtype={probabilities.dtype}"
        )
    if probabilities.ndim != 3 or probabilities.shape[-1] < 1:
        raise ValueError(
            f"`probabilities` must be (H, W, C). Received: shape={probabilities.shape}"
        )
    if probabilities.shape[:2] != image.shape[:2]:
        raise ValueError(
            "`image` and `probabilities` must have the same height and width. Received: "
            f"image.shape={image.shape}, probabilities.shape={probabilities.shape}"
        )
    if not np.isfinite(probabilities).all():
        raise ValueError("`probabilities` must be finite (it has NaN or inf values).")
    low, high = float(probabilities.min()), float(probabilities.max())
    if low < 0 or high > 1:
        raise ValueError(
            f"`probabilities` must lie in [0, 1]. Received values in [{low:g}, {high:g}]"
        )
    return image, probabilities


def _softmax(logits: np.ndarray) -> np.ndarray:
    logits = logits - logits.max(axis=-1, keepdims=True)
    np.exp(logits, out=logits)
    logits /= logits.sum(axis=-1, keepdims=True)
    return logits


def dense_crf(
    image: np.ndarray,
    probabilities: np.ndarray,
    num_iterations: int = 10,
    gaussian_sxy: float = 3.0,
    gaussian_weight: float = 3.0,
    bilateral_sxy: float = 20.0,
    bilateral_srgb: float = 3.0,
    bilateral_weight: float = 5.0,
) -> np.ndarray:
    """Refines per-pixel class probabilities with a fully connected CRF (mean field).

    The unary is `-log(clip(probabilities, 1e-8, 1))` and the pairwise term is Potts with a
    smoothness Gaussian kernel on positions and a bilateral kernel on positions and colours
    (see the module docstring). The defaults are DeconvNet's published settings.

    Args:
        image: `(H, W, 3)` uint8 RGB image the probabilities were computed for.
        probabilities: `(H, W, C)` float array of class probabilities in `[0, 1]` (e.g. the
            network's softmax); rows need not sum exactly to 1.
        num_iterations: mean-field iterations; 0 returns the normalised input.
        gaussian_sxy: standard deviation, in pixels, of the smoothness kernel.
        gaussian_weight: weight of the smoothness kernel (0 turns it off).
        bilateral_sxy: spatial standard deviation, in pixels, of the bilateral kernel.
        bilateral_srgb: colour standard deviation, in 0-255 RGB units, of the bilateral kernel.
        bilateral_weight: weight of the bilateral kernel (0 turns it off).

    Returns:
        `(H, W, C)` float32 refined marginals; each pixel's values sum to 1, and
        `argmax(-1)` gives the labels.

    Raises:
        ValueError: for a non-uint8 or non-RGB image, non-float, non-finite or out-of-range
            probabilities, mismatched shapes, or bad parameters.

    Example:

    >>> import numpy as np
    >>> image = np.zeros((8, 8, 3), np.uint8)
    >>> probabilities = np.full((8, 8, 3), 1 / 3, np.float32)
    >>> dense_crf(image, probabilities, num_iterations=2).shape
    (8, 8, 3)
    """
    return DenseCRF(
        num_iterations=num_iterations,
        gaussian_sxy=gaussian_sxy,
        gaussian_weight=gaussian_weight,
        bilateral_sxy=bilateral_sxy,
        bilateral_srgb=bilateral_srgb,
        bilateral_weight=bilateral_weight,
    )(image, probabilities)


class DenseCRF:
    """A fully connected CRF with fixed parameters; call it on `(image, probabilities)`.

    Args:
        num_iterations: mean-field iterations.
        gaussian_sxy: standard deviation, in pixels, of the smoothness kernel.
        gaussian_weight: weight of the smoothness kernel.
        bilateral_sxy: spatial standard deviation, in pixels, of the bilateral kernel.
        bilateral_srgb: colour standard deviation, in 0-255 RGB units, of the bilateral kernel.
        bilateral_weight: weight of the bilateral kernel.

    Example:

    >>> import numpy as np
    >>> crf = DenseCRF(num_iterations=5)
    >>> crf.get_config()["bilateral_sxy"]
    20.0
    >>> refined = crf(np.zeros((4, 4, 3), np.uint8), np.full((4, 4, 2), 0.5, np.float32))
    >>> refined.shape, refined.dtype
    ((4, 4, 2), dtype('float32'))
    """

    def __init__(
        self,
        num_iterations: int = 10,
        gaussian_sxy: float = 3.0,
        gaussian_weight: float = 3.0,
        bilateral_sxy: float = 20.0,
        bilateral_srgb: float = 3.0,
        bilateral_weight: float = 5.0,
    ) -> None:
        if (
            isinstance(num_iterations, bool)
            or not isinstance(num_iterations, numbers.Integral)
            or num_iterations < 0
        ):
            raise ValueError(
                f"`num_iterations` must be a non-negative integer. Received: {num_iterations!r}"
            )
        self.num_iterations = int(num_iterations)
        self.gaussian_sxy = _check_positive("gaussian_sxy", gaussian_sxy)
        self.gaussian_weight = _check_non_negative("gaussian_weight", gaussian_weight)
        self.bilateral_sxy = _check_positive("bilateral_sxy", bilateral_sxy)
        self.bilateral_srgb = _check_positive("bilateral_srgb", bilateral_srgb)
        self.bilateral_weight = _check_non_negative("bilateral_weight", bilateral_weight)

    def get_config(self) -> dict[str, Any]:
        """The constructor arguments, as a JSON-serialisable dict."""
        return {
            "num_iterations": self.num_iterations,
            "gaussian_sxy": self.gaussian_sxy,
            "gaussian_weight": self.gaussian_weight,
            "bilateral_sxy": self.bilateral_sxy,
            "bilateral_srgb": self.bilateral_srgb,
            "bilateral_weight": self.bilateral_weight,
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> DenseCRF:
        """A `DenseCRF` from the dict `get_config` returns."""
        return cls(**config)

    def __repr__(self) -> str:
        arguments = ", ".join(f"{key}={value!r}" for key, value in self.get_config().items())
        return f"DenseCRF({arguments})"

    def bilateral_features(self, image: np.ndarray) -> np.ndarray:
        """`(H * W, 5)` features `(y / sxy, x / sxy, r / srgb, g / srgb, b / srgb)`."""
        height, width = image.shape[:2]
        y, x = np.mgrid[:height, :width]
        return np.concatenate(
            [
                np.stack([y, x], axis=-1).reshape(-1, 2) / self.bilateral_sxy,
                image.reshape(-1, 3).astype(np.float64) / self.bilateral_srgb,
            ],
            axis=1,
        )

    def __call__(self, image: np.ndarray, probabilities: np.ndarray) -> np.ndarray:
        """Refined `(H, W, C)` float32 marginals; see `dense_crf`."""
        image, probabilities = _check_inputs(image, probabilities)
        height, width, num_classes = probabilities.shape
        unary = -np.log(np.clip(probabilities.astype(np.float32), _EPSILON, 1.0))
        marginals = _softmax(-unary)
        if self.num_iterations == 0 or num_classes == 1:
            return marginals

        gaussian_norm = None
        if self.gaussian_weight > 0:
            gaussian_norm = ndimage.gaussian_filter(
                np.ones((height, width), np.float32), self.gaussian_sxy, mode="constant"
            )[..., None]
        lattice = bilateral_norm = None
        if self.bilateral_weight > 0:
            lattice = PermutohedralLattice(self.bilateral_features(image))
            bilateral_norm = lattice.filter(np.ones((height * width, 1), np.float32))

        for _ in range(self.num_iterations):
            logits = -unary
            if gaussian_norm is not None:
                smoothed = ndimage.gaussian_filter(
                    marginals, (self.gaussian_sxy, self.gaussian_sxy, 0), mode="constant"
                )
                logits += self.gaussian_weight * (smoothed / gaussian_norm)
            if lattice is not None:
                filtered = lattice.filter(marginals.reshape(-1, num_classes))
                filtered /= bilateral_norm
                logits += self.bilateral_weight * filtered.reshape(height, width, num_classes)
            marginals = _softmax(logits)
        return marginals
