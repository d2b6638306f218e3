"""MATLAB's `imresize(..., 'bilinear')`, the resampling of the authors' inference.

`inference/util/preprocess_image_bb.m` (HyeonwooNoh/DeconvNet) resizes every
proposal crop to 224x224 with `imresize(crop, [224 224], 'bilinear')`, and
`generate_EDeconvNet_CRF_results.m` resizes each score map back to its box the same
way. MATLAB's documented algorithm (its `imresize` help and the `contributions`
step of its implementation), one dimension at a time:

- `scale = out / in`; output pixel `x` (1-based) maps to input coordinate
  `u = x / scale + 0.5 * (1 - 1 / scale)`;
- the kernel is the triangle `h(t) = max(0, 1 - |t|)`, width 2; when *shrinking*
  (`scale < 1`) with antialiasing (MATLAB's default), it is stretched:
  `h(t) = scale * triangle(scale * t)`, width `2 / scale`: a low-pass filter;
- input pixels `floor(u - width / 2) + (0 .. ceil(width) + 1)` contribute with
  weights `h(u - index)`, normalised to sum 1; indices outside `1..in` are
  mirrored (symmetric padding: `in + 1` reads pixel `in`, `0` reads pixel 1).

Enlarging is then plain bilinear with half-pixel centres and replicated edges, as
`tf.image.resize(..., "bilinear")`; shrinking is not: TensorFlow's resize without
`antialias` samples two pixels (noise survives), and with `antialias=True` it drops
the samples past the border and renormalises, where MATLAB mirrors them. Inputs are
resampled in float64, as MATLAB resamples `double` images (no rounding).
"""

from __future__ import annotations

import numpy as np


def resize_weights(in_size: int, out_size: int, antialias: bool = True) -> np.ndarray:
    """The `(out_size, in_size)` matrix of MATLAB's bilinear resize along one axis.

    Args:
        in_size: input length (>= 1).
        out_size: output length (>= 1).
        antialias: stretch the kernel when shrinking (MATLAB's default).

    Returns:
        float64 matrix `W` with `output = W @ input`; each row sums to 1.

    Example:

    >>> resize_weights(4, 2) @ np.array([1.0, 2.0, 3.0, 4.0])
    array([1.625, 3.375])
    """
    if in_size < 1 or out_size < 1:
        raise ValueError(
            f"Sizes must be >= 1. Received: in_size={in_size}, out_size={out_size}")
    scale = out_size / in_size
    stretch = scale if (antialias and scale < 1) else 1.0
    width = 2.0 / stretch
    u = np.arange(1, out_size + 1, dtype=np.float64) / scale + 0.5 * (1 - 1 / scale)
    left = np.floor(u - width / 2)
    indices = left[:, None] + np.arange(int(np.ceil(width)) + 2)[None, :]
    weights = stretch * np.maximum(0.0, 1.0 - np.abs(stretch * (u[:, None] - indices)))
    weights /= weights.sum(axis=1, keepdims=True)
    mirror = np.concatenate([np.arange(in_size), np.arange(in_size)[::-1]])
    columns = mirror[np.mod(indices.astype(np.int64) - 1, 2 * in_size)]
    matrix = np.zeros((out_size, in_size), np.float64)
    rows = np.repeat(np.arange(out_size), indices.shape[1])
    np.add.at(matrix, (rows, columns.ravel()), weights.ravel())
    return matrix


def imresize_bilinear(image, size: tuple[int, int], antialias: bool = True) -> np.ndarray:
    """`imresize(image, size, 'bilinear')` of MATLAB on an `(H, W[, C])` array.

    Args:
        image: `(H, W)` or `(H, W, C)` array of any real dtype.
        size: output `(height, width)`.
        antialias: MATLAB's `'Antialiasing'` (true by default for bilinear).

    Returns:
        float64 array `(height, width[, C])`.

    Example:

    >>> imresize_bilinear(np.arange(16.0).reshape(4, 4), (2, 2)).tolist()
    [[3.125, 4.875], [10.125, 11.875]]
    """
    image = np.asarray(image, np.float64)
    if image.ndim not in (2, 3) or 0 in image.shape[:2]:
        raise ValueError(f"`image` must be (H, W) or (H, W, C). Received: {image.shape}")
    rows = resize_weights(image.shape[0], int(size[0]), antialias)
    cols = resize_weights(image.shape[1], int(size[1]), antialias)
    if image.ndim == 2:
        return rows @ image @ cols.T
    return np.einsum("ij,jkc,lk->ilc", rows, image, cols, optimize=True)
