"""Shared window bookkeeping for `MaxPoolWithArgmax` and `Unpool`.

Both layers view a feature map as its pooling windows: SPACE_TO_DEPTH turns a
`(B, H, W, C)` map into `pool_size**2` slices of `(B, H/k, W/k, C)`, one per window
position in row-major order, and DEPTH_TO_SPACE turns such slices back. Where the
size is static, the padding and cropping below are decided in Python, so a model
exported with a fixed input size has no dynamic-shape ops in it. `integer_switches`
selects the int8-friendly switch arithmetic (`first_max_flags`) for both layers.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator

import tensorflow as tf

PADDINGS = ("same", "valid")

_INTEGER_SWITCHES = contextvars.ContextVar("keras_deconvnet_integer_switches", default=False)
# Gain of the second clamp in `below_max`: a difference of one int8 step of at least
# 1 / _FLAG_GAIN (pooled inputs spanning 255 / 4096 = 0.06 or more) becomes a flag of
# exactly 1. The int8 MUL's rescale is then (1/255 * 4096/255) / (1/255) = 16, well
# inside the [2**-16, 2**8) XNNPACK's int8 multiply accepts (it leaves others to the
# slower builtin kernel).
_FLAG_GAIN = 4096.0


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


def to_windows(x, pool_size: int, count: int | None = None) -> list:
    """Splits `x` (fitted to whole windows) into window-position slices, row-major
    order: all `pool_size**2` of them, or the first `count`."""
    stacked = tf.nn.space_to_depth(x, pool_size)
    total = pool_size * pool_size
    if count is None or count == total:
        return tf.split(stacked, total, axis=-1)
    # Slice off the positions not needed rather than leave SPLIT outputs unused: the
    # int8 quantizer cannot give an unused output a scale and keeps the SPLIT in float.
    # Explicit axes, no ellipsis: the GPU delegate takes STRIDED_SLICE without masks.
    return tf.split(stacked[:, :, :, : count * x.shape[-1]], count, axis=-1)


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


@contextlib.contextmanager
def integer_switches(enabled: bool = True) -> Iterator[None]:
    """Builds the switch masks from integer-friendly arithmetic while the block runs.

    `MaxPoolWithArgmax` and `Unpool` called (or traced) inside the block compute the
    switches with SUB and MUL clamped to [-1, 1] (TFLite fuses the clamps as
    RELU_N1_TO_1) and unpool with a MUL, instead of EQUAL, SELECT_V2, MAXIMUM and
    MINIMUM. Those are the ops the int8 kernels, XNNPACK's int8 delegate and the GPU
    delegate all run, so a full-integer TFLite file stays in one accelerated graph.
    On int8 values (whose differences are whole quantization steps) the result is the
    exact first-maximum switch; in float it is only approximate (values closer than
    1/4096 count as ties), so use it for int8 conversion only.

    Args:
        enabled: `False` restores the exact float formulation inside the block.

    Example:

    >>> import numpy as np
    >>> from keras_deconvnet.layers import MaxPoolWithArgmax
    >>> x = np.array([[1., 3.], [3., 2.]]).reshape(1, 2, 2, 1)
    >>> with integer_switches():
    ...     _, switches = MaxPoolWithArgmax()(x)
    >>> switches[0, :, :, 0].numpy().tolist()
    [[0.0, 1.0], [0.0, 0.0]]
    """
    token = _INTEGER_SWITCHES.set(bool(enabled))
    try:
        yield
    finally:
        _INTEGER_SWITCHES.reset(token)


def integer_switches_enabled() -> bool:
    """Whether `integer_switches` is active."""
    return _INTEGER_SWITCHES.get()


def below_max(window, pooled):
    """0 where `window` equals the window maximum `pooled`, 1 where it is below.

    Two clamped steps rather than one large gain: the first bounds the difference to
    [0, 1] (so its int8 scale is at most 1/255 whatever the activation range), the
    second maps one quantization step to 1.
    """
    difference = tf.clip_by_value(pooled - window, -1.0, 1.0)
    return tf.clip_by_value(difference * _FLAG_GAIN, -1.0, 1.0)


def first_max_flags(windows: list, pooled) -> list:
    """Switch flags (1 at each window's first maximum, else 0) from arithmetic only.

    `windows` are the first `pool_size**2 - 1` window positions; one more flag, for
    the last position, is returned.

    `not_yet` is 1 where no earlier window position held the maximum; position `k`
    is the switch where it is still 1 and the value is not below the maximum:
    `not_yet_k - not_yet_k * below_k`.
    """
    one = tf.ones([], pooled.dtype)
    not_yet = None
    flags = []
    for window in windows:
        below = below_max(window, pooled)
        if not_yet is None:
            flags.append(one - below)
            not_yet = below
        else:
            still = not_yet * below
            flags.append(not_yet - still)
            not_yet = still
    flags.append(not_yet)
    return flags
