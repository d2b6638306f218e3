"""Max pooling that also returns its switches, built only from TFLite builtin ops.

`tf.nn.max_pool_with_argmax` has no TFLite builtin, no XLA kernel on every device, and
its flat int64 indices differ between CPU and GPU. This layer instead returns the
switches as a mask over the input, in one of two formulations of the same rule (the
first maximum of each window, in row-major order):

- exact (the default, and what training, Keras inference, SavedModel, ONNX and the
  float TFLite files use): one MAX_POOL_2D (and a MINIMUM that keeps an all -inf window
  at -inf), then SPACE_TO_DEPTH, SPLIT, running MAXIMUMs, EQUAL and SELECT_V2 per
  window position, CONCATENATION and DEPTH_TO_SPACE; equal to the argmax bit for bit,
  infinities included;
- integer (inside `integer_switches()`, what the int8 TFLite export traces): the same
  MAX_POOL_2D, SPACE_TO_DEPTH, SPLIT, then a SUB and a MUL per position clamped to
  [-1, 1] (TFLite fuses the clamps) that flag "below the maximum", MULs and SUBs for
  the first-maximum rule, CONCATENATION and DEPTH_TO_SPACE. Exact on int8 values
  (whole quantization steps apart); no comparison, select or cast, so an int8 file
  stays integer and XNNPACK's int8 delegate runs the whole graph.

Every op in both is a TFLite builtin the GPU delegate accepts.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from keras_deconvnet.layers import window_ops


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

    The mask is computed without multiplying values by 0/1 (which turns `inf` into
    NaN): position `k` of a window is its switch when the running maximum of the
    positions `0..k` first equals the window's maximum, a MAXIMUM, an EQUAL and a
    SELECT_V2 per position. Inside `keras_deconvnet.layers.integer_switches()` it is
    computed with clamped SUB/MUL arithmetic instead, for int8 conversion (see the
    module docstring).

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
    >>> switches[0, :, :, 0].numpy().tolist()  # the first of the two 3s
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
        fitted = window_ops.fit_to_windows(inputs, self.pool_size, self.padding)
        if window_ops.integer_switches_enabled():
            pooled = tf.nn.max_pool2d(fitted, self.pool_size, self.pool_size, "VALID")
            # The last position needs no comparison: it is the switch where no earlier
            # position held the maximum.
            windows = window_ops.to_windows(fitted, self.pool_size, self.pool_size**2 - 1)
            switches = window_ops.first_max_flags(windows, pooled)
            switches = window_ops.from_windows(switches, self.pool_size, size)
            return pooled, tf.stop_gradient(switches)
        windows = window_ops.to_windows(fitted, self.pool_size)
        # Running maxima over the window positions in row-major order: position k is
        # the switch where the running maximum first reaches the window's maximum.
        running = [windows[0]]
        for window in windows[1:]:
            running.append(tf.maximum(running[-1], window))
        # One MAX_POOL_2D (a single fused kernel, TFLite builtin) whose gradient goes
        # to the first maximum of each window, as TF's argmax does. MINIMUM with the
        # running maximum only changes an all -inf window, where TF's CPU kernel
        # returns the lowest finite float instead of -inf.
        pooled = tf.nn.max_pool2d(fitted, self.pool_size, self.pool_size, "VALID")
        pooled = tf.minimum(pooled, running[-1])
        one = tf.ones([], pooled.dtype)
        zero = tf.zeros([], pooled.dtype)
        switches = []
        reached_before = None
        for running_max in running:
            reached = tf.equal(running_max, pooled)
            switch = tf.where(reached, one, zero)
            if reached_before is not None:
                # A later tie: the maximum was already reached at an earlier position.
                switch = tf.where(reached_before, zero, switch)
            switches.append(switch)
            reached_before = reached
        switches = window_ops.from_windows(switches, self.pool_size, size)
        return pooled, tf.stop_gradient(switches)

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
