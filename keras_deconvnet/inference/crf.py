"""Fully connected CRF post-processing of segmentation scores (DeconvNet's last step).

DeconvNet (Noh, Hong, Han, ICCV 2015) refines its ensemble's per-pixel class scores with the
fully connected CRF of Krähenbühl & Koltun ("Efficient Inference in Fully Connected CRFs with
Gaussian Edge Potentials", NIPS 2011), through the meanfield-matlab wrapper of Krähenbühl's
`densecrf` (v2, 2013). This module does the same inference, with a NumPy / SciPy permutohedral
lattice or, when installed, the compiled `pydensecrf2` (the same `densecrf` C++ code).

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
almost every pixel. Its splat, blurs and slice are `scipy.sparse` matrices built once per
image and reused by every iteration.

Example:

>>> import numpy as np
>>> from keras_deconvnet.inference.crf import dense_crf
>>> image = np.zeros((40, 60, 3), np.uint8); image[:, 30:] = 255
>>> logits = np.zeros((40, 60, 2), np.float32)
>>> logits[:, :25] = [2.0, 0.0]; logits[:, 35:] = [0.0, 2.0]
>>> labels = dense_crf(image, logits, scores_are="logits", backend="numpy").argmax(-1)
>>> bool((labels[:, :30] == 0).all() and (labels[:, 30:] == 1).all())
True
"""

from __future__ import annotations

import numbers
from typing import Any, Literal

import numpy as np
from scipy import sparse

__all__ = [
    "BACKENDS",
    "NORMALIZATIONS",
    "SCORES_ARE",
    "DenseCRF",
    "PermutohedralLattice",
    "dense_crf",
    "pydensecrf2_available",
    "unary_from_scores",
]

ScoresAre = Literal["logits", "probabilities"]
Normalization = Literal["none", "symmetric", "after", "before"]
Backend = Literal["auto", "numpy", "pydensecrf2"]

SCORES_ARE = ("logits", "probabilities")
NORMALIZATIONS = ("none", "symmetric", "after", "before")
BACKENDS = ("auto", "numpy", "pydensecrf2")

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
    if scores_are not in SCORES_ARE:
        raise ValueError(
            f"`scores_are` must be one of {SCORES_ARE}. Received: scores_are={scores_are!r}"
        )
    scores = np.asarray(scores, dtype=np.float64)
    if scores_are == "probabilities":
        return (-np.log(np.clip(scores, _MIN_PROBABILITY, 1.0))).astype(np.float32)
    shifted = scores - scores.max(axis=-1, keepdims=True)
    log_sum = np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
    return (log_sum - shifted).astype(np.float32)


def _distinct_sorted(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The sorted distinct values of an int64 array and the index of each value among them.

    Neighbouring points often share vertices, so equal runs are dropped before sorting; the
    stable argsort (timsort, quick on these partly ordered ids) with a scattered inverse is
    about twice as fast as np.unique(return_inverse=True) here.
    """
    new_run = np.empty(ids.size, dtype=bool)
    new_run[0] = True
    np.not_equal(ids[1:], ids[:-1], out=new_run[1:])
    runs = ids[new_run]
    order = np.argsort(runs, kind="stable")
    ordered = runs[order]
    first = np.empty(ordered.size, dtype=bool)
    first[0] = True
    np.not_equal(ordered[1:], ordered[:-1], out=first[1:])
    run_index = np.empty(runs.size, dtype=np.int64)
    run_index[order] = np.cumsum(first) - 1
    return ordered[first], run_index[np.cumsum(new_run) - 1]


def _packed_vertex_ids(
    rem0: np.ndarray, rank: np.ndarray
) -> tuple[np.ndarray, list[int]] | None:
    """Linear mixed-radix ids of the vertices of each point's simplex, without their keys.

    Args:
        rem0: `(N, d + 1)` int64 remainder-0 lattice points.
        rank: `(N, d + 1)` int64 ranks (a permutation of `0..d` per row).

    Returns:
        `(N, d + 1)` int64 ids (column `r` for the vertex of remainder `r`, whose key is
        `rem0[:d] + canonical[r, rank[:d]]`) and, per lattice direction `j`, the id offset
        from a vertex to its first neighbour (`key - 1 + (d + 1) e_j`; `key - 1` for
        `j = d`); None when the ids could pass 2**62.
    """
    n, d = rem0.shape[0], rem0.shape[1] - 1
    # A key coordinate lies within d of rem0's; a margin of d + 1 more keeps the neighbours
    # inside the radix, so a neighbour's id is the vertex's id plus a constant.
    low = rem0[:, :d].min(axis=0) - (2 * d + 1)
    radix = [int(value) for value in rem0[:, :d].max(axis=0) + (2 * d + 1) - low + 1]
    if np.prod(radix, dtype=object) >= 2**62:
        return None
    multiplier = np.cumprod([1, *radix[:0:-1]])[::-1].astype(np.int64)
    base = (rem0[:, :d] - low) @ multiplier
    # canonical[r, k] = r - (d + 1) [k > d - r], so the id of vertex r is
    # base + r * sum(multiplier) - (d + 1) * (sum of the multipliers of the coordinates whose
    # rank exceeds d - r): suffix sums of the multipliers ordered by rank.
    by_rank = np.zeros((n, d + 2), dtype=np.int64)
    np.put_along_axis(by_rank, rank[:, :d], multiplier[None, :], axis=1)
    suffix = np.cumsum(by_rank[:, ::-1], axis=1)[:, ::-1]  # suffix[:, k] = sum over k' >= k
    total = int(multiplier.sum())
    ids = (base[:, None] + np.arange(d + 1) * total
           - (d + 1) * suffix[:, d + 1 - np.arange(d + 1)])
    step = -total
    offsets = [step + (d + 1) * int(multiplier[j]) for j in range(d)] + [step]
    return ids, offsets


def _lattice_vertices(
    rem0: np.ndarray, rank: np.ndarray
) -> tuple[np.ndarray, int, list[tuple[np.ndarray, np.ndarray]]]:
    """Numbers the distinct lattice vertices and finds their neighbours.

    Args:
        rem0: `(N, d + 1)` int64 remainder-0 lattice points.
        rank: `(N, d + 1)` int64 ranks of the coordinates.

    Returns:
        `inverse`, the `(N, d + 1)` vertex index of each point's vertex of each remainder;
        the number of vertices; and for each of the `d + 1` lattice directions `j` the pairs
        `(source, target)` of vertex indices with `target = source - 1 + (d + 1) e_j`
        (`source - 1` for `j = d`): `target` is `source`'s first neighbour in direction `j`
        and `source` is `target`'s second.
    """
    n, d = rem0.shape[0], rem0.shape[1] - 1
    packed = _packed_vertex_ids(rem0, rank)
    if packed is not None:
        ids, offsets = packed
        # Remainder-major order, so that the runs of equal ids along the pixels are long.
        vertex_ids, inverse = _distinct_sorted(ids.T.reshape(-1))
        inverse = inverse.reshape(d + 1, n).T
        queries = [vertex_ids + offset for offset in offsets]
        sorter = None
    else:
        # Any coordinate range: pack the keys of the vertices and of their neighbours
        # together, densifying the ids as needed.
        remainders = np.arange(d + 1)[None, :, None]
        canonical = np.where(rank[:, None, :d] <= d - remainders, remainders, remainders - d - 1)
        keys = (rem0[:, None, :d] + canonical).reshape(n * (d + 1), d)
        _, first, inverse = np.unique(_row_ids(keys), return_index=True, return_inverse=True)
        inverse = inverse.reshape(n, d + 1)
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
    return inverse, num_vertices, edges


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


class PermutohedralLattice:
    """Approximate Gaussian filtering in a feature space, on the permutohedral lattice.

    Filters values `v` (one row per point) with the Gaussian kernel of the features,
    `out_i ~= sum_j exp(-|f_i - f_j|^2 / 2) v_j`, in time linear in the number of points
    (Adams, Baek, Davis 2010). Features must already be divided by the kernel's standard
    deviations. This is Krähenbühl's `permutohedral.cpp` (densecrf v2, SSE build), step for
    step and in float32 like it: elevate each feature vector onto the hyperplane `H_d` in
    `R^(d+1)`, find its enclosing simplex with the rank trick, splat it with barycentric
    weights onto the simplex's `d + 1` vertices; blur along each of the `d + 1` lattice
    directions with the kernel `[1/2, 1, 1/2]`; slice back with the same weights, times
    `1 / (1 + 2^-d)`. The raw output is below the exact Gaussian sum (measured: about 0.9
    of it on a 2-D pixel grid, 0.4-0.5 for 5-D position and colour features); that scale
    error is part of densecrf's CRF whenever it does not normalise.

    Args:
        features: `(N, d)` float array of feature vectors, already scaled by `1 / std`
            (converted to float32, as densecrf stores them).

    Attributes:
        num_points: `N`.
        dimension: `d`.
        num_vertices: the number of lattice vertices.
        splat: `(V, N)` sparse matrix (points to lattice vertices).
        slice: `(N, V)` sparse matrix (lattice vertices to points), `splat.T` times the
            `1 / (1 + 2^-d)` scale.
        blurs: `d + 1` sparse `(V, V)` matrices `A_j`, in the order they are applied; the
            blur along direction `j` is `v + A_j v` (`A_j` holds the neighbours' halves).

    Example:

    >>> import numpy as np
    >>> lattice = PermutohedralLattice(np.random.default_rng(0).normal(size=(100, 3)))
    >>> lattice.filter(np.ones((100, 2), np.float32)).shape
    (100, 2)
    """

    def __init__(self, features: np.ndarray) -> None:
        features = np.asarray(features, dtype=np.float32)
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
        f32 = np.float32

        # Elevate onto H_d = {x in R^(d+1): sum x = 0}, scaled so that the lattice blur
        # approximates a unit-variance Gaussian. The float32 operations and their order are
        # permutohedral.cpp's, so points on a simplex boundary land on the same side.
        inv_std_dev = float(f32(np.sqrt(2.0 / 3.0) * (d + 1)))
        scale = np.array(
            [1.0 / np.sqrt((i + 2) * (i + 1)) * inv_std_dev for i in range(d)], dtype=f32
        )
        elevated = np.empty((n, d + 1), dtype=f32)
        running = np.zeros(n, dtype=f32)
        for j in range(d, 0, -1):
            scaled = features[:, j - 1] * scale[j - 1]
            elevated[:, j] = running - f32(j) * scaled
            running += scaled
        elevated[:, 0] = running

        # The closest remainder-0 lattice point (round half to even, as the SSE code), then
        # the rank trick for the enclosing simplex.
        down = np.rint(elevated * f32(1.0 / (d + 1)))
        rem0 = down * f32(d + 1)
        coordinate_sum = down.sum(axis=1, dtype=f32).astype(np.int64)
        # rank[i] = how many coordinates come before i in decreasing order of the residual,
        # ties to the lower index: permutohedral.cpp's pairwise comparisons, over contiguous
        # columns.
        residual = np.ascontiguousarray((elevated - rem0).T)
        rank_t = np.zeros((d + 1, n), dtype=np.int64)
        for i in range(d + 1):
            for j in range(i + 1, d + 1):
                i_below_j = residual[i] < residual[j]
                rank_t[i] += i_below_j
                rank_t[j] += ~i_below_j
        rank = rank_t.T + coordinate_sum[:, None]
        wrap = np.where(rank < 0, d + 1, 0) - np.where(rank > d, d + 1, 0)
        rank += wrap
        rem0 += wrap.astype(f32)

        # Barycentric coordinates in the simplex: slot p gets + the residual of rank d - p
        # and - that of rank d - p + 1, one float32 subtraction as in permutohedral.cpp.
        delta = (elevated - rem0) * f32(1.0 / (d + 1))
        by_rank = np.empty_like(delta)
        np.put_along_axis(by_rank, rank, delta, axis=1)
        descending = by_rank[:, ::-1]  # descending[:, p] = delta of rank d - p
        weights = np.empty((n, d + 1), dtype=f32)
        weights[:, 1:] = np.diff(descending, axis=1)
        weights[:, 0] = descending[:, 0] + (f32(1.0) - descending[:, d])

        inverse, num_vertices, edges = _lattice_vertices(rem0.astype(np.int64), rank)
        self.num_vertices = num_vertices

        # The scale folded into the slice weights: densecrf multiplies w * alpha in float32
        # too, and sums a point's d + 1 terms in the same order (indices left unsorted).
        alpha = f32(1.0) / (f32(1.0) + f32(2.0) ** f32(-d))
        self.splat = sparse.csr_matrix(
            (weights.reshape(-1), inverse.reshape(-1), np.arange(0, n * (d + 1) + 1, d + 1)),
            shape=(n, num_vertices),
        ).T.tocsr()
        self.slice = sparse.csr_matrix(
            ((weights * alpha).reshape(-1), inverse.reshape(-1),
             np.arange(0, n * (d + 1) + 1, d + 1)),
            shape=(n, num_vertices),
        )

        # Blur along direction j: each vertex gets its value plus half of each neighbour's.
        # Kept as `v + A_j v` (A_j holds only the halves) rather than one matrix with the
        # identity: 0.5 * a + 0.5 * b rounds like 0.5 * (a + b), so this is densecrf's float
        # arithmetic, and the identity's V products per channel are saved. Rows are built
        # directly (at most 2 entries each), without a COO sort.
        self.blurs = []
        for source, target in edges:
            neighbours = np.full((num_vertices, 2), -1, dtype=np.int64)
            neighbours[source, 0] = target
            neighbours[target, 1] = source
            present = neighbours >= 0
            self.blurs.append(
                sparse.csr_matrix(
                    (np.full(int(present.sum()), 0.5, dtype=f32), neighbours[present],
                     np.concatenate([[0], np.cumsum(present.sum(axis=1))])),
                    shape=(num_vertices, num_vertices),
                )
            )

    def filter(self, values: np.ndarray) -> np.ndarray:
        """Gaussian-filters `values`: `out_i ~= sum_j exp(-|f_i - f_j|^2 / 2) values_j`.

        Args:
            values: `(N,)` or `(N, C)` array, one row per point.

        Returns:
            float32 array of the shape of `values`.

        Raises:
            ValueError: when `values` does not have `N` rows.
        """
        values = np.asarray(values, dtype=np.float32)
        if values.shape[0] != self.num_points:
            raise ValueError(
                f"Expected {self.num_points} rows of values, received shape {values.shape}."
            )
        lattice_values = self.splat @ values
        for blur in self.blurs:
            lattice_values += blur @ lattice_values
        return np.asarray(self.slice @ lattice_values, dtype=np.float32)


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


def _check_choice(name: str, value: Any, choices: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"`{name}` must be one of {choices}. Received: {name}={value!r}")
    return value


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


class DenseCRF:
    """A fully connected CRF with fixed parameters; call it on `(image, scores)`.

    The defaults are DeconvNet's (see the module docstring), except `scores_are`, which
    defaults to `"probabilities"` because this package's inference functions return
    probabilities; DeconvNet's own script took the softmax of raw scores (`"logits"`).

    Args:
        scores_are: `"logits"` or `"probabilities"`; see `unary_from_scores`.
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

    def __init__(
        self,
        scores_are: ScoresAre = "probabilities",
        iterations: int = 10,
        gaussian_sxy: float = 3.0,
        gaussian_weight: float = 3.0,
        bilateral_sxy: float = 20.0,
        bilateral_srgb: float = 3.0,
        bilateral_weight: float = 5.0,
        normalization: Normalization = "none",
        backend: Backend = "auto",
    ) -> None:
        self.scores_are = _check_choice("scores_are", scores_are, SCORES_ARE)
        if (
            isinstance(iterations, bool)
            or not isinstance(iterations, numbers.Integral)
            or iterations < 0
        ):
            raise ValueError(
                f"`iterations` must be a non-negative integer. Received: {iterations!r}"
            )
        self.iterations = int(iterations)
        self.gaussian_sxy = _check_positive("gaussian_sxy", gaussian_sxy)
        self.gaussian_weight = _check_non_negative("gaussian_weight", gaussian_weight)
        self.bilateral_sxy = _check_positive("bilateral_sxy", bilateral_sxy)
        self.bilateral_srgb = _check_positive("bilateral_srgb", bilateral_srgb)
        self.bilateral_weight = _check_non_negative("bilateral_weight", bilateral_weight)
        self.normalization = _check_choice("normalization", normalization, NORMALIZATIONS)
        self.backend = _check_choice("backend", backend, BACKENDS)
        if backend == "pydensecrf2" and not pydensecrf2_available():
            raise ImportError(
                'backend="pydensecrf2" needs the optional package pydensecrf2 (module '
                "`pydensecrf.densecrf`): pip install pydensecrf2 (it compiles C++ with "
                'Cython), or use backend="numpy".'
            )

    def get_config(self) -> dict[str, Any]:
        """The constructor arguments, as a JSON-serialisable dict."""
        return {
            "scores_are": self.scores_are,
            "iterations": self.iterations,
            "gaussian_sxy": self.gaussian_sxy,
            "gaussian_weight": self.gaussian_weight,
            "bilateral_sxy": self.bilateral_sxy,
            "bilateral_srgb": self.bilateral_srgb,
            "bilateral_weight": self.bilateral_weight,
            "normalization": self.normalization,
            "backend": self.backend,
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> DenseCRF:
        """A `DenseCRF` from the dict `get_config` returns."""
        return cls(**config)

    def __repr__(self) -> str:
        arguments = ", ".join(f"{key}={value!r}" for key, value in self.get_config().items())
        return f"DenseCRF({arguments})"

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
        y, x = np.mgrid[:height, :width]
        positions = np.stack([y, x], axis=-1).reshape(-1, 2).astype(np.float32)
        return positions / np.float32(self.gaussian_sxy)

    def bilateral_features(self, image: np.ndarray) -> np.ndarray:
        """`(H * W, 5)` float32 features `(y / sxy, x / sxy, r / srgb, g / srgb, b / srgb)`."""
        height, width = image.shape[:2]
        y, x = np.mgrid[:height, :width]
        positions = np.stack([y, x], axis=-1).reshape(-1, 2).astype(np.float32)
        colours = image.reshape(-1, 3).astype(np.float32)
        return np.concatenate(
            [positions / np.float32(self.bilateral_sxy),
             colours / np.float32(self.bilateral_srgb)],
            axis=1,
        )

    def __call__(self, image: np.ndarray, scores: np.ndarray) -> np.ndarray:
        """Refined `(H, W, C)` float32 marginals; see `dense_crf`."""
        _check_inputs(image, scores, self.scores_are)
        height, width, num_classes = scores.shape
        unary = unary_from_scores(scores, self.scores_are).reshape(-1, num_classes)
        kernels = []
        if self.gaussian_weight > 0:
            kernels.append((self.gaussian_weight, self.gaussian_features(height, width)))
        if self.bilateral_weight > 0:
            kernels.append((self.bilateral_weight, self.bilateral_features(image)))
        if self.iterations == 0 or num_classes == 1 or not kernels:
            marginals = _softmax(-unary)
        elif self.resolved_backend == "pydensecrf2":
            marginals = _mean_field_pydensecrf(
                unary, kernels, self.normalization, self.iterations
            )
        else:
            marginals = _mean_field_numpy(unary, kernels, self.normalization, self.iterations)
        return marginals.reshape(height, width, num_classes)


def dense_crf(
    image: np.ndarray,
    scores: np.ndarray,
    *,
    scores_are: ScoresAre = "probabilities",
    iterations: int = 10,
    gaussian_sxy: float = 3.0,
    gaussian_weight: float = 3.0,
    bilateral_sxy: float = 20.0,
    bilateral_srgb: float = 3.0,
    bilateral_weight: float = 5.0,
    normalization: Normalization = "none",
    backend: Backend = "auto",
) -> np.ndarray:
    """Refines per-pixel class scores with DeconvNet's fully connected CRF (mean field).

    The unary is `-log softmax(scores)` for logits or `-log(clip(scores))` for
    probabilities; the pairwise term is Potts with a smoothness kernel on positions and an
    appearance kernel on positions and colours, unnormalised by default (see the module
    docstring). The other defaults are DeconvNet's published settings; to reproduce its
    script exactly, pass the raw ensemble scores with `scores_are="logits"`.

    Args:
        image: `(H, W, 3)` uint8 RGB image the scores were computed for.
        scores: `(H, W, C)` float array: logits, or probabilities in `[0, 1]` whose rows need
            not sum to 1 (e.g. max-aggregated proposal scores; an all-zero row is uniform).
        scores_are: `"probabilities"` (default; what this package's inference functions
            return) or `"logits"`.
        iterations: mean-field iterations; 0 returns `softmax(-unary)`, whose argmax is the
            scores' argmax.
        gaussian_sxy: standard deviation, in pixels, of the smoothness kernel.
        gaussian_weight: Potts weight of the smoothness kernel (0 turns it off).
        bilateral_sxy: spatial standard deviation, in pixels, of the appearance kernel.
        bilateral_srgb: colour standard deviation, in 0-255 RGB units, of the appearance
            kernel.
        bilateral_weight: Potts weight of the appearance kernel (0 turns it off).
        normalization: `"none"` (DeconvNet's, densecrf's NO_NORMALIZATION), `"symmetric"`,
            `"after"` (this function's behaviour before 2026) or `"before"`.
        backend: `"auto"` (pydensecrf2 when installed, else NumPy), `"numpy"` or
            `"pydensecrf2"`. Both run the same float32 algorithm and gave identical labels
            on every pixel of the 100x80 to 500x375 images measured; only float rounding
            (summation order, `exp`) differs, so an odd pixel may flip elsewhere.

    Returns:
        `(H, W, C)` float32 refined marginals; each pixel's values sum to 1, and
        `argmax(-1)` gives the labels.

    Raises:
        ValueError: for a non-uint8 or non-RGB image, non-float or non-finite scores,
            probabilities outside `[0, 1]`, mismatched shapes, or bad parameters.
        ImportError: for `backend="pydensecrf2"` without pydensecrf2 installed.

    Example:

    >>> import numpy as np
    >>> image = np.zeros((8, 8, 3), np.uint8)
    >>> logits = np.zeros((8, 8, 3), np.float32); logits[..., 1] = 1.0
    >>> refined = dense_crf(image, logits, scores_are="logits", iterations=2)
    >>> refined.shape, bool((refined.argmax(-1) == 1).all())
    ((8, 8, 3), True)
    """
    return DenseCRF(
        scores_are=scores_are,
        iterations=iterations,
        gaussian_sxy=gaussian_sxy,
        gaussian_weight=gaussian_weight,
        bilateral_sxy=bilateral_sxy,
        bilateral_srgb=bilateral_srgb,
        bilateral_weight=bilateral_weight,
        normalization=normalization,
        backend=backend,
    )(image, scores)
