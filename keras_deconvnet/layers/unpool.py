"""Unpooling with the switches of `MaxPoolWithArgmax` (DeconvNet's "unpooling")."""

from __future__ import annotations

import keras
from keras import ops

from keras_deconvnet.layers import formulations, window_ops


@keras.saving.register_keras_serializable(package="keras_deconvnet")
class Unpool(keras.layers.Layer):
    """Places each value at its pooling switch and zeros elsewhere.

    The output has the spatial size of the tensor that was pooled (odd sizes
    included), so `Unpool()(y, switches)` equals scattering `y` to the indices of
    `tf.nn.max_pool_with_argmax`: a sparse, enlarged map that the following
    (de)convolutions densify. By default it is computed as a nearest-neighbour
    enlargement of `y` (TILE + DEPTH_TO_SPACE) from which a SELECT_V2 keeps the
    switch positions, so it stays exact for infinite values (no `inf * 0`) and writes
    `+0.0` elsewhere, as the scatter does. Inside
    `keras_deconvnet.layers.switch_formulation("arithmetic")` or `"integer"` (the
    TFLite files) the switches are split into their window positions and each is a
    MUL with `y` (SPACE_TO_DEPTH, SPLIT, MUL, CONCATENATION, DEPTH_TO_SPACE): ops the
    GPU delegate and XNNPACK's int8 delegate run, exact on finite values (a zero may
    come out as `-0.0`). Gradients flow to `y` at the switch positions only; the
    switches get none.

    Args:
        pool_size: int, the `pool_size` of the `MaxPoolWithArgmax` that made the
            switches. Defaults to `2`.
        **kwargs: base layer keyword arguments, such as `name` and `dtype`.

    Call arguments:
        inputs: the values to unpool, `(batch, pooled_height, pooled_width, channels)`.
        switches: the switch mask from `MaxPoolWithArgmax`,
            `(batch, height, width, channels)`.

    Output shape:
        The shape of `switches`.

    Example:

    >>> import numpy as np
    >>> from keras_deconvnet.layers import MaxPoolWithArgmax
    >>> x = np.array([[1., 3.], [3., 2.]]).reshape(1, 2, 2, 1)
    >>> pooled, switches = MaxPoolWithArgmax()(x)
    >>> np.asarray(Unpool()(pooled * 10, switches))[0, :, :, 0].tolist()
    [[0.0, 30.0], [0.0, 0.0]]
    """

    def __init__(self, pool_size: int = 2, **kwargs):
        super().__init__(**kwargs)
        self.pool_size = window_ops.validate_pool_size(pool_size)

    def build(self, inputs_shape, switches_shape):
        window_ops.check_channels(inputs_shape)
        self._check_shapes(inputs_shape, switches_shape)

    def call(self, inputs, switches):
        k = self.pool_size
        size = window_ops.spatial_size(switches)
        if switches.dtype == "bool":
            switches = ops.cast(switches, inputs.dtype)
        if formulations.current_formulation() == "exact":
            enlarged = window_ops.from_windows([ops.tile(inputs, (1, 1, 1, k * k))], k, size)
            # Switches are exactly 0 or 1 (also after int8 quantization); 0.5 splits them.
            keep = ops.greater(switches, ops.cast(0.5, switches.dtype))
            return ops.where(keep, enlarged, ops.zeros((), enlarged.dtype))
        # Switches are exactly 0 or 1: one MUL per window position, on distinct tensors.
        height, width = window_ops.spatial_size(inputs)
        fitted = window_ops.fit_to_size(switches, (height * k, width * k), k)
        flags = window_ops.to_windows(fitted, k)
        placed = [inputs * ops.cast(flag, inputs.dtype) for flag in flags]
        return window_ops.from_windows(placed, k, size)

    def _check_shapes(self, inputs_shape, switches_shape):
        if len(inputs_shape) != 4 or len(switches_shape) != 4:
            raise ValueError(
                "`Unpool` takes 4D inputs and switches (batch, height, width, channels). "
                f"Received: inputs.shape={tuple(inputs_shape)}, "
                f"switches.shape={tuple(switches_shape)}"
            )
        if inputs_shape[-1] is not None and switches_shape[-1] is not None:
            if inputs_shape[-1] != switches_shape[-1]:
                raise ValueError(
                    "`Unpool` needs as many channels in its inputs as in the switches. "
                    f"Received: inputs.shape={tuple(inputs_shape)}, "
                    f"switches.shape={tuple(switches_shape)}"
                )
        for axis in (1, 2):
            pooled, full = inputs_shape[axis], switches_shape[axis]
            if pooled is None or full is None:
                continue
            smallest = (pooled - 1) * self.pool_size + 1
            largest = pooled * self.pool_size + self.pool_size - 1
            if not smallest <= full <= largest:
                raise ValueError(
                    "`Unpool` inputs do not come from pooling a tensor of the switches' "
                    f"size with pool_size={self.pool_size}. Received: "
                    f"inputs.shape={tuple(inputs_shape)}, "
                    f"switches.shape={tuple(switches_shape)}"
                )

    def compute_output_shape(self, inputs_shape, switches_shape):
        self._check_shapes(inputs_shape, switches_shape)
        return tuple(switches_shape[:3]) + (inputs_shape[-1],)

    def get_config(self):
        config = super().get_config()
        config.update({"pool_size": self.pool_size})
        return config
