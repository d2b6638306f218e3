"""Shared window bookkeeping for `MaxPoolWithArgmax` and `Unpool`.

Both layers view a feature map as its pooling windows: SPACE_TO_DEPTH turns a
`(B, H, W, C)` map into `pool_size**2` slices of `(B, H/k, W/k, C)`, one per window
position in row-major order, and DEPTH_TO_SPACE turns such slices back. Where the
size is static, the padding and cropping below are decided in Python, so a model
exported with a fixed input size has no dynamic-shape ops in it.
"""

from __future__ import annotations

import tensorflow as tf

PADDINGS = ("same", "valid")


def validate_pool_size(pool_size) -> int:
    if isinstance(pool_size, (tuple, list)):
        if len(pool_size) != 2 or pool_size[0] != pool_size[1]:
            raise ValueError(
                "`pool_size` must be an int or a tuple of two equal ints (square, "
                f"non-overlapping windows). Received: pool_size={pool_size}"
            )
        pool_size = pool_size[0]
    if isinstance(pool_size, bool) or not isinstance(pool_size, int) or pool_size < 2:
        raise ValueError(
            f"`pool_size` must be an int >= 2. Received: pool_size={pool_size!r}"
        )
    return pool_size


def validate_padding(padding) -> str:
    if not isinstance(padding, str) or padding.lower() not in PADDINGS:
        raise ValueError(
            f"`padding` must be one of {PADDINGS}. Received: padding={padding!r}"
        )
    return padding.lower()


def check_channels(input_shape) -> None:
    """Raises unless `input_shape` is 4D with a known channel dimension."""
    if len(input_shape) != 4:
        raise ValueError(
            "The inputs must be 4D (batch, height, width, channels). "
            f"Received: input_shape={tuple(input_shape)}"
        )
    if input_shape[-1] is None:
        raise ValueError(
            "The channel dimension of the inputs must be known. "
            f"Received: input_shape={tuple(input_shape)}"
        )


def pooled_dim(size, pool_size: int, padding: str):
    """The pooled length of a spatial axis (`None` stays `None`)."""
    if size is None:
        return None
    if padding == "same":
        return -(-size // pool_size)
    return size // pool_size


def spatial_size(x):
    """`(height, width)` of an NHWC tensor: Python ints where static, else tensors."""
    dynamic = tf.shape(x)
    return tuple(
        x.shape[axis] if x.shape[axis] is not None else dynamic[axis] for axis in (1, 2)
    )


def _is_static(value) -> bool:
    return isinstance(value, int)


def _fit_axis(x, axis: int, pool_size: int, padding: str):
    """Pads (same) or crops (valid) one spatial axis to a multiple of `pool_size`."""
    size = x.shape[axis] if x.shape[axis] is not None else tf.shape(x)[axis]
    if _is_static(size) and size % pool_size == 0:
        return x
    if padding == "valid":
        target = (size // pool_size) * pool_size
        return x[:, :target] if axis == 1 else x[:, :, :target]
    # "same": repeat the last row (column). A repeated value sits later in every
    # window than the value it copies, so it can never become the first maximum:
    # this is exact and avoids PADV2 with -inf, which edge delegates dislike.
    edge = x[:, -1:] if axis == 1 else x[:, :, -1:]
    if _is_static(size):
        copies = pool_size - size % pool_size
        return tf.concat([x] + [edge] * copies, axis=axis)
    target = -(-size // pool_size) * pool_size
    extended = tf.concat([x] + [edge] * (pool_size - 1), axis=axis)
    return extended[:, :target] if axis == 1 else extended[:, :, :target]


def fit_to_windows(x, pool_size: int, padding: str):
    """Pads ("same") or crops ("valid") `x` to whole windows."""
    if x.shape[-1] is None:
        raise ValueError(
            "The channel dimension of the inputs must be known. "
            f"Received: inputs.shape={tuple(x.shape)}"
        )
    x = _fit_axis(x, 1, pool_size, padding)
    return _fit_axis(x, 2, pool_size, padding)


def to_windows(x, pool_size: int) -> list:
    """Splits `x` (fitted to whole windows) into `pool_size**2` window-position
    slices, row-major order."""
    stacked = tf.nn.space_to_depth(x, pool_size)
    return tf.split(stacked, pool_size * pool_size, axis=-1)


def from_windows(windows: list, pool_size: int, size) -> tf.Tensor:
    """Inverse of `to_windows`: interleaves the slices back to spatial `size`.

    Cropping undoes "same" padding; zero padding restores the rows and columns that
    "valid" pooling dropped.
    """
    x = tf.nn.depth_to_space(tf.concat(windows, axis=-1), pool_size)
    for axis, target in zip((1, 2), size):
        current = x.shape[axis] if x.shape[axis] is not None else tf.shape(x)[axis]
        if _is_static(current) and _is_static(target):
            if current > target:
                x = x[:, :target] if axis == 1 else x[:, :, :target]
            elif current < target:
                pad = [[0, 0]] * 4
                pad[axis] = [0, target - current]
                x = tf.pad(x, pad)
            continue
        x = x[:, :target] if axis == 1 else x[:, :, :target]
        missing = tf.maximum(target - tf.shape(x)[axis], 0)
        pad = [[0, 0], [0, 0], [0, 0], [0, 0]]
        pad[axis] = [0, missing]
        x = tf.pad(x, pad)
    return x
