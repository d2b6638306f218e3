"""Which arithmetic computes the pooling switches: one rule, three formulations.

The rule never changes: each window's switch is its first maximum in row-major order,
as `tf.nn.max_pool_with_argmax` picks it. How it is computed does, because the
runtimes that run the layers accept different ops:

- `"exact"` (the default: training, Keras inference on every backend, SavedModel,
  ONNX): running maxima, an equality test and a select per window position; equal to
  the argmax bit for bit, infinities included.
- `"arithmetic"` (the float TFLite files, for the GPU delegate): a SUB and a chain of
  clamped MULs per window position turn "below the maximum" into exactly 0 or 1; no
  comparison, select or bool tensor, which the web GPU delegate lacks. Exact on finite
  input (ties included); `inf - inf` makes a NaN, so infinities are not handled.
- `"integer"` (the int8 TFLite file): the same chain with one gain chosen for int8
  rescaling (see `_INTEGER_GAINS`); exact on int8 values, approximate in float.

`switch_formulation` selects one while a block runs (a trace, a conversion).
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator

from keras import ops

FORMULATIONS = ("exact", "arithmetic", "integer")

_FORMULATION = contextvars.ContextVar("keras_deconvnet_switch_formulation", default="exact")
# "arithmetic": ten clamped MULs by 2**15 scale any nonzero float32 difference, down to
# the smallest subnormal 2**-149, to at least 1 (2**150 >= 2**149). 2**15 and every
# intermediate stay finite in float16 (max 65504), where the GPU delegate computes:
# a gain past float16's range would become inf there and `0 * inf` a NaN at each tie.
_ARITHMETIC_GAINS = (2.0**15,) * 10
# "integer": one gain after the first clamp. A difference of one int8 step of at least
# 1 / 4096 (pooled inputs spanning 255 / 4096 = 0.06 or more) becomes a flag of exactly
# 1. The int8 MUL's rescale is then (1/255 * 4096/255) / (1/255) = 16, well inside the
# [2**-16, 2**8) XNNPACK's int8 multiply accepts (it leaves others to the slower
# builtin kernel).
_INTEGER_GAINS = (4096.0,)


def _check(name) -> str:
    if name not in FORMULATIONS:
        raise ValueError(
            f"`formulation` must be one of {FORMULATIONS}. Received: formulation={name!r}"
        )
    return name


@contextlib.contextmanager
def switch_formulation(formulation: str) -> Iterator[None]:
    """Computes the switches of `MaxPoolWithArgmax` and `Unpool` one way in a block.

    Layers called (or traced) inside the block use `formulation`; see the module
    docstring for what each gives up. Nested blocks restore the outer one on exit.

    Args:
        formulation: `"exact"`, `"arithmetic"` or `"integer"`.

    Example:

    >>> import numpy as np
    >>> from keras_deconvnet.layers import MaxPoolWithArgmax
    >>> x = np.array([[1., 3.], [3., 2.]]).reshape(1, 2, 2, 1)
    >>> with switch_formulation("arithmetic"):
    ...     _, switches = MaxPoolWithArgmax()(x)
    >>> np.asarray(switches)[0, :, :, 0].tolist()
    [[0.0, 1.0], [0.0, 0.0]]
    """
    token = _FORMULATION.set(_check(formulation))
    try:
        yield
    finally:
        _FORMULATION.reset(token)


def current_formulation() -> str:
    """The formulation in force (`"exact"` outside any `switch_formulation` block)."""
    return _FORMULATION.get()


@contextlib.contextmanager
def integer_switches(enabled: bool = True) -> Iterator[None]:
    """`switch_formulation("integer")` (or `"exact"` with `enabled=False`).

    `MaxPoolWithArgmax` and `Unpool` called (or traced) inside the block compute the
    switches with SUB and MUL clamped to [-1, 1] (TFLite fuses the clamps as
    RELU_N1_TO_1) and unpool with MULs: the ops the int8 kernels, XNNPACK's int8
    delegate and the GPU delegate all run, so a full-integer TFLite file stays in one
    accelerated graph. On int8 values (whole quantization steps apart) the result is
    the exact first-maximum switch; in float it is only approximate (values closer
    than 1/4096 count as ties), so use it for int8 conversion only.

    Args:
        enabled: `False` restores the exact formulation inside the block.

    Example:

    >>> import numpy as np
    >>> from keras_deconvnet.layers import MaxPoolWithArgmax
    >>> x = np.array([[1., 3.], [3., 2.]]).reshape(1, 2, 2, 1)
    >>> with integer_switches():
    ...     _, switches = MaxPoolWithArgmax()(x)
    >>> np.asarray(switches)[0, :, :, 0].tolist()
    [[0.0, 1.0], [0.0, 0.0]]
    """
    with switch_formulation("integer" if enabled else "exact"):
        yield


def integer_switches_enabled() -> bool:
    """Whether the `"integer"` formulation is in force."""
    return current_formulation() == "integer"


def below_max(window, pooled, gains):
    """0 where `window` equals the window maximum `pooled`, 1 where it is below.

    A first clamp bounds the difference to [0, 1] (for int8: a scale of at most 1/255
    whatever the activation range), then each gain is a MUL clamped to [-1, 1]. The
    gains are powers of two, so each product is exact until it reaches the clamp.
    """
    flag = ops.clip(pooled - window, -1.0, 1.0)
    for gain in gains:
        flag = ops.clip(flag * gain, -1.0, 1.0)
    return flag


def first_max_flags(windows: list, pooled, gains) -> list:
    """Switch flags (1 at each window's first maximum, else 0) from arithmetic only.

    `windows` are the first `pool_size**2 - 1` window positions; one more flag, for
    the last position, is returned.

    `not_yet` is 1 where no earlier window position held the maximum; position `k`
    is the switch where it is still 1 and the value is not below the maximum:
    `not_yet_k - not_yet_k * below_k`.
    """
    not_yet = None
    flags = []
    for window in windows:
        below = below_max(window, pooled, gains)
        if not_yet is None:
            flags.append(1.0 - below)
            not_yet = below
        else:
            still = not_yet * below
            flags.append(not_yet - still)
            not_yet = still
    flags.append(not_yet)
    return flags


def gains(formulation: str) -> tuple:
    """The clamped gains of an arithmetic formulation (`"arithmetic"`, `"integer"`)."""
    return _INTEGER_GAINS if formulation == "integer" else _ARITHMETIC_GAINS
