"""Max pooling that also returns its switches, in `keras.ops` on every backend.

`tf.nn.max_pool_with_argmax` has no TFLite builtin, no XLA kernel on every device, no
JAX or PyTorch counterpart, and its flat int64 indices differ between CPU and GPU. This
layer instead returns the switches as a mask over the input, computed in one of the
formulations of `switch_formulation` (the same rule: the first maximum of each window,
in row-major order):

- `"exact"` (the default: training and Keras inference on every backend, SavedModel,
  ONNX): one max pool (a MINIMUM keeps an all -inf window at -inf), then
  space-to-depth, a split, running MAXIMUMs, EQUAL and SELECT_V2 per window position,
  a concatenation and depth-to-space; equal to the argmax bit for bit, infinities
  included.
- `"arithmetic"` (the float TFLite files): the same max pool, space-to-depth and split,
  then a SUB and ten MULs clamped to [-1, 1] per position (TFLite fuses the clamps)
  that flag "below the maximum", MULs and SUBs for the first-maximum rule, a
  concatenation and depth-to-space. Exact on finite input; every op is one the web
  GPU delegate runs (no comparison, select or bool tensor).
- `"integer"` (the int8 TFLite file): as `"arithmetic"` with one MUL per position;
  exact on int8 values, with no comparison, select or cast, so an int8 file stays
  integer and XNNPACK's int8 delegate runs the whole graph.
"""

from __future__ import annotations

import keras
from keras import ops

from keras_deconvnet.layers import formulations, window_ops


@keras.saving.register_keras_serializable(package="keras_deconvnet")
class MaxPoolWithArgmax(keras.layers.Layer):
    """2D max pooling over non-overlapping windows that also returns the switches.

    The switches are a mask with the input's shape and dtype: 1 at the position that
    each window's maximum came from and 0 elsewhere. Exactly one switch is set per
    window; when several values in a window tie for the maximum (all-zero windows after
    ReLU, repeated values after quantization, a window of `-inf`) the first in
    row-major window order wins, which is what `tf.nn.max_pool_with_argmax` picks.
    Feed the switches to `keras_deconvnet.layers.Unpool` to place values back where
    they came from.

    By default the mask is computed without multiplying values by 0/1 (which turns
    `inf` into NaN): position `k` of a window is its switch when the running maximum
    of the positions `0..k` first equals the window's maximum, a MAXIMUM, an EQUAL
    and a SELECT_V2 per position. Inside
    `keras_deconvnet.layers.switch_formulation("arithmetic")` (the float TFLite
    files, for GPU delegates) or `"integer"` (int8) it is computed with clamped
    SUB/MUL arithmetic instead (see the module docstring).

    Args:
        pool_size: int, the window size and stride (windows do not overlap).
            Defaults to `2`.
        padding: `"same"` or `"valid"`. With `"same"` (default, Caffe's ceil mode,
            as the paper's network used) odd heights and widths get a partial last
            window at the bottom/right, so the pooled size is
            `ceil(size / pool_size)`; for `pool_size=2` this is exactly TensorFlow's
            `"SAME"`. With `"valid"` the remainder rows and columns are dropped
            (their switches are 0).
        **kwargs: base layer keyword arguments, such as `name` and `dtype`.

    Input shape:
        4D tensor `(batch_size, height, width, channels)`; batch, height and width
        may be unknown, channels must be known.

    Output shape:
        A tuple `(pooled, switches)`: `pooled` is
        `(batch_size, pooled_height, pooled_width, channels)`, `switches` has the
        input's shape.

    Example:

    >>> import numpy as np
    >>> x = np.array([[1., 3.], [3., 2.]]).reshape(1, 2, 2, 1)
    >>> pooled, switches = MaxPoolWithArgmax()(x)
    >>> float(pooled[0, 0, 0, 0])
    3.0
    >>> np.asarray(switches)[0, :, :, 0].tolist()  # the first of the two 3s
    [[0.0, 1.0], [0.0, 0.0]]
    """

    def __init__(self, pool_size: int = 2, padding: str = "same", **kwargs):
        super().__init__(**kwargs)
        self.pool_size = window_ops.validate_pool_size(pool_size)
        self.padding = window_ops.validate_padding(padding)
        self.input_spec = keras.layers.InputSpec(ndim=4)

    def build(self, input_shape):
        window_ops.check_channels(input_shape)

    def call(self, inputs):
        size = window_ops.spatial_size(inputs)
        k = self.pool_size
        fitted = window_ops.fit_to_windows(inputs, k, self.padding)
        # One max pool (a single fused kernel; TFLite's MAX_POOL_2D) whose gradient goes
        # to the first maximum of each window, as TF's argmax does.
        pooled = ops.max_pool(fitted, k, k, "valid")
        formulation = formulations.current_formulation()
        if formulation != "exact":
            # The last position needs no comparison: it is the switch where no earlier
            # position held the maximum.
            windows = window_ops.to_windows(fitted, k, k * k - 1)
            switches = formulations.first_max_flags(
                windows, pooled, formulations.gains(formulation)
            )
            switches = window_ops.from_windows(switches, k, size)
            return pooled, ops.stop_gradient(switches)
        windows = window_ops.to_windows(fitted, k)
        # Running maxima over the window positions in row-major order: position k is
        # the switch where the running maximum first reaches the window's maximum.
        running = [windows[0]]
        for window in windows[1:]:
            running.append(ops.maximum(running[-1], window))
        # MINIMUM with the running maximum only changes an all -inf window, where TF's
        # CPU kernel returns the lowest finite float instead of -inf.
        pooled = ops.minimum(pooled, running[-1])
        one = ops.ones((), pooled.dtype)
        zero = ops.zeros((), pooled.dtype)
        switches = []
        reached_before = None
        for running_max in running:
            reached = ops.equal(running_max, pooled)
            switch = ops.where(reached, one, zero)
            if reached_before is not None:
                # A later tie: the maximum was already reached at an earlier position.
                switch = ops.where(reached_before, zero, switch)
            switches.append(switch)
            reached_before = reached
        switches = window_ops.from_windows(switches, k, size)
        return pooled, ops.stop_gradient(switches)

    def compute_output_shape(self, input_shape):
        batch, height, width, channels = input_shape
        pooled_shape = (
            batch,
            window_ops.pooled_dim(height, self.pool_size, self.padding),
            window_ops.pooled_dim(width, self.pool_size, self.padding),
            channels,
        )
        return pooled_shape, tuple(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update({"pool_size": self.pool_size, "padding": self.padding})
        return config
