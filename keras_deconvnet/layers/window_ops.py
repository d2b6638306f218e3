"""Shared window bookkeeping for `MaxPoolWithArgmax` and `Unpool`, in `keras.ops`.

Both layers view a feature map as its pooling windows: space-to-depth turns a
`(B, H, W, C)` map into `pool_size**2` slices of `(B, H/k, W/k, C)`, one per window
position in row-major order, and depth-to-space turns such slices back. On the
TensorFlow backend those two are `tf.nn.space_to_depth` / `depth_to_space` (one
SPACE_TO_DEPTH / DEPTH_TO_SPACE builtin each in TFLite, which the GPU delegate runs);
elsewhere a reshape and a transpose. Where the size is static, the padding and
cropping below are decided in Python, so a model exported with a fixed input size has
no dynamic-shape ops in it, and no op takes the same tensor twice (TFLite turns a
self-concatenation into a COPY node that the web GPU delegate lacks).
"""

from __future__ import annotations

import keras
from keras import ops

PADDINGS = ("same", "valid")


def _tensorflow():
    """The `tensorflow` module on the TensorFlow backend, else `None` (not imported)."""
    if keras.backend.backend() != "tensorflow":
        return None
    import tensorflow as tf

    return tf


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


def _dim(x, axis: int):
    """A static dimension as a Python int, else (TensorFlow only) a scalar tensor."""
    if x.shape[axis] is not None:
        return int(x.shape[axis])
    return ops.shape(x)[axis]


def spatial_size(x):
    """`(height, width)` of an NHWC tensor: Python ints where static, else tensors."""
    return _dim(x, 1), _dim(x, 2)


def _is_static(value) -> bool:
    return isinstance(value, int)


def _crop(x, axis: int, target):
    return x[:, :target] if axis == 1 else x[:, :, :target]


def _repeat_edge(x, axis: int, copies):
    """`x` followed by `copies` copies of its last row (column) along `axis`.

    A repeated value sits later in every window than the value it copies, so it can
    never become the first maximum: this pads exactly, without PADV2 and -inf, which
    edge delegates dislike. The copies come from one TILE, never from concatenating
    the edge with itself.
    """
    edge = x[:, -1:] if axis == 1 else x[:, :, -1:]
    if copies > 1:
        multiples = [1, 1, 1, 1]
        multiples[axis] = copies
        edge = ops.tile(edge, multiples)
    return ops.concatenate([x, edge], axis=axis)


def _fit_axis(x, axis: int, pool_size: int, padding: str):
    """Pads (same) or crops (valid) one spatial axis to a multiple of `pool_size`."""
    size = _dim(x, axis)
    if _is_static(size):
        if size % pool_size == 0:
            return x
        if padding == "valid":
            return _crop(x, axis, (size // pool_size) * pool_size)
        return _repeat_edge(x, axis, pool_size - size % pool_size)
    if padding == "valid":
        return _crop(x, axis, (size // pool_size) * pool_size)
    target = -(-size // pool_size) * pool_size
    return _crop(_repeat_edge(x, axis, pool_size - 1), axis, target)


def fit_to_windows(x, pool_size: int, padding: str):
    """Pads ("same") or crops ("valid") `x` to whole windows."""
    if x.shape[-1] is None:
        raise ValueError(
            "The channel dimension of the inputs must be known. "
            f"Received: inputs.shape={tuple(x.shape)}"
        )
    x = _fit_axis(x, 1, pool_size, padding)
    return _fit_axis(x, 2, pool_size, padding)


def fit_to_size(x, size, pool_size: int):
    """Crops or edge-pads the spatial size of `x` to `size` (`(height, width)`), which
    differs from it by less than `pool_size` per axis."""
    for axis, target in zip((1, 2), size):
        current = _dim(x, axis)
        if _is_static(current) and _is_static(target):
            if current > target:
                x = _crop(x, axis, target)
            elif current < target:
                x = _repeat_edge(x, axis, target - current)
            continue
        # Dynamic (TensorFlow): a window's worth of edge copies covers any shortfall.
        x = _crop(_repeat_edge(x, axis, pool_size), axis, target)
    return x


def space_to_depth(x, pool_size: int):
    """`(B, H, W, C)` -> `(B, H/k, W/k, k*k*C)`, block offsets row-major, as TF's."""
    tf = _tensorflow()
    if tf is not None:
        return tf.nn.space_to_depth(x, pool_size)
    _, height, width, channels = x.shape
    k = pool_size
    x = ops.reshape(x, (-1, height // k, k, width // k, k, channels))
    x = ops.transpose(x, (0, 1, 3, 2, 4, 5))
    return ops.reshape(x, (-1, height // k, width // k, k * k * channels))


def depth_to_space(x, pool_size: int):
    """The inverse of `space_to_depth`."""
    tf = _tensorflow()
    if tf is not None:
        return tf.nn.depth_to_space(x, pool_size)
    _, height, width, depth = x.shape
    k = pool_size
    channels = depth // (k * k)
    x = ops.reshape(x, (-1, height, width, k, k, channels))
    x = ops.transpose(x, (0, 1, 3, 2, 4, 5))
    return ops.reshape(x, (-1, height * k, width * k, channels))


def to_windows(x, pool_size: int, count: int | None = None) -> list:
    """Splits `x` (fitted to whole windows) into window-position slices, row-major
    order: all `pool_size**2` of them, or the first `count`."""
    stacked = space_to_depth(x, pool_size)
    total = pool_size * pool_size
    if count is None or count == total:
        return ops.split(stacked, total, axis=-1)
    # Slice off the positions not needed rather than leave SPLIT outputs unused: the
    # int8 quantizer cannot give an unused output a scale and keeps the SPLIT in float.
    # Explicit axes, no ellipsis: the GPU delegate takes STRIDED_SLICE without masks.
    return ops.split(stacked[:, :, :, : count * x.shape[-1]], count, axis=-1)


def from_windows(windows: list, pool_size: int, size):
    """Inverse of `to_windows`: interleaves the slices back to spatial `size`.

    Cropping undoes "same" padding; zero padding restores the rows and columns that
    "valid" pooling dropped. The slices must be distinct tensors (no self-concatenation).
    """
    x = depth_to_space(ops.concatenate(windows, axis=-1), pool_size)
    for axis, target in zip((1, 2), size):
        current = _dim(x, axis)
        if _is_static(current) and _is_static(target):
            if current > target:
                x = _crop(x, axis, target)
            elif current < target:
                pad = [[0, 0]] * 4
                pad[axis] = [0, target - current]
                x = ops.pad(x, pad)
            continue
        x = _crop(x, axis, target)
        missing = ops.maximum(target - ops.shape(x)[axis], 0)
        pad = [[0, 0], [0, 0], [0, 0], [0, 0]]
        pad[axis] = [0, missing]
        x = ops.pad(x, pad)
    return x
