"""fc6/fc7 and deconv-fc6 as matrix multiplies when the feature map is the kernel's size.

At the paper's 224x224 input, pool5 is 7x7, so fc6 (7x7, valid) sees exactly one
window, fc7 (1x1) a 1x1 map and deconv-fc6 a 1x1 input: each is a fully connected layer.
As convolutions they are memory-bound on CPU (a third of the paper network's time for
0.3% of its MACs); as one matmul they run ~10x faster, and TFLite gets FULLY_CONNECTED,
which the GPU delegate runs. The weights keep the convolution shapes, so checkpoints
and presets are unchanged, and larger inputs fall back to the convolution. Written in
`keras.ops`; on TensorFlow the transposed matmul reads the kernel transposed
(`transpose_b`) instead of copying it.
"""

from __future__ import annotations

import keras
from keras import ops


def _is_plain(layer) -> bool:
    return (
        tuple(layer.strides) == (1, 1)
        and tuple(layer.dilation_rate) == (1, 1)
        and layer.data_format == "channels_last"
        and getattr(layer, "groups", 1) == 1
    )


def _matmul_transposed(x, kernel):
    """`x @ kernel^T` without materialising the transpose where the backend can."""
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        return tf.matmul(x, kernel, transpose_b=True)
    # JAX and PyTorch fold a transposed operand into the matmul call.
    return ops.matmul(x, ops.transpose(kernel))


def _check_input_covers_kernel(layer, inputs) -> None:
    """A clear `ValueError` (instead of TensorFlow's shape error) for a "valid"
    kernel larger than its input map: the network's input is too small."""
    size = tuple(inputs.shape[1:3])
    if layer.padding != "valid" or not any(
            s is not None and s < k for s, k in zip(size, layer.kernel_size)):
        return
    kernel = "x".join(str(k) for k in layer.kernel_size)
    raise ValueError(
        f"The network input is too small: {layer.name}'s {kernel} kernel needs an input "
        f"map of at least {kernel}, this input gives {size[0]}x{size[1]}. The smallest "
        "input a model takes is keras_deconvnet.inference.whole_image."
        "minimum_input_size(model) (65 pixels for deconvnet_edge_small)."
    )


@keras.saving.register_keras_serializable(package="keras_deconvnet")
class FullyConnectedConv2D(keras.layers.Conv2D):
    """A `Conv2D` computed as one matmul when its input is exactly one kernel window.

    Same arguments, weights and results as `keras.layers.Conv2D`; only the
    computation differs, when the input's static height and width equal
    `kernel_size` with `"valid"` padding (or the kernel is 1x1 on a 1x1 map).

    Example:

    >>> import numpy as np
    >>> layer = FullyConnectedConv2D(8, 7, padding="valid")
    >>> tuple(layer(np.zeros((2, 7, 7, 3), "float32")).shape)
    (2, 1, 1, 8)
    """

    def _as_matmul(self, inputs) -> bool:
        size = tuple(inputs.shape[1:3])
        return (
            _is_plain(self)
            and size == tuple(self.kernel_size)
            and (self.padding == "valid" or size == (1, 1))
        )

    def call(self, inputs):
        _check_input_covers_kernel(self, inputs)
        if not self._as_matmul(inputs):
            return super().call(inputs)
        height, width, channels = inputs.shape[1:]
        flat = ops.reshape(inputs, (-1, height * width * channels))
        kernel = ops.reshape(self.kernel, (height * width * channels, self.filters))
        outputs = ops.matmul(flat, kernel)
        if self.use_bias:
            outputs = outputs + self.bias
        outputs = ops.reshape(outputs, (-1, 1, 1, self.filters))
        return self.activation(outputs) if self.activation is not None else outputs


@keras.saving.register_keras_serializable(package="keras_deconvnet")
class FullyConnectedConv2DTranspose(keras.layers.Conv2DTranspose):
    """A `Conv2DTranspose` computed as one matmul when its input is 1x1 (deconv-fc6).

    With a 1x1 input, `"valid"` padding and stride 1, the output `(k, k, filters)` is
    `x @ kernel^T` reshaped; the kernel is read transposed, not copied. A larger input
    (with stride 1 and `"valid"` padding) is the equivalent convolution of the padded
    input with the flipped kernel, which TFLite's GPU delegates run. Same arguments,
    weights and results as `keras.layers.Conv2DTranspose`.

    Example:

    >>> import numpy as np
    >>> layer = FullyConnectedConv2DTranspose(4, 7, padding="valid")
    >>> tuple(layer(np.zeros((2, 1, 1, 16), "float32")).shape)
    (2, 7, 7, 4)
    """

    def _as_matmul(self, inputs) -> bool:
        return (
            _is_plain(self)
            and tuple(inputs.shape[1:3]) == (1, 1)
            and self.padding == "valid"
            and self.output_padding is None
        )

    def _as_convolution(self, inputs) -> bool:
        return (
            _is_plain(self)
            and self.padding == "valid"
            and self.output_padding is None
            and None not in tuple(inputs.shape[1:3])
        )

    def call(self, inputs):
        if not self._as_matmul(inputs):
            if self._as_convolution(inputs):
                return self._convolution(inputs)
            return super().call(inputs)
        channels = inputs.shape[-1]
        height, width = self.kernel_size
        flat = ops.reshape(inputs, (-1, channels))
        # Keras keeps transposed-conv kernels as (kh, kw, filters, in_channels).
        kernel = ops.reshape(self.kernel, (height * width * self.filters, channels))
        outputs = _matmul_transposed(flat, kernel)
        outputs = ops.reshape(outputs, (-1, height, width, self.filters))
        if self.use_bias:
            outputs = outputs + self.bias
        return self.activation(outputs) if self.activation is not None else outputs

    def _convolution(self, inputs):
        """A stride-1 "valid" transposed convolution as the plain convolution it is: pad
        by `kernel - 1` and convolve with the spatially flipped kernel. TFLite then
        gets PAD + CONV_2D instead of TRANSPOSE_CONV, whose version 4 (a fused
        activation, what BatchNorm + ReLU after it become) the web GPU delegate
        refuses ("Max version supported: 3")."""
        height, width = self.kernel_size
        padded = ops.pad(
            inputs, [[0, 0], [height - 1, height - 1], [width - 1, width - 1], [0, 0]]
        )
        # (kh, kw, filters, in) -> flipped (kh, kw, in, filters): folded to a constant
        # in an exported graph.
        kernel = ops.transpose(ops.flip(ops.flip(self.kernel, 0), 1), (0, 1, 3, 2))
        outputs = ops.conv(padded, kernel, strides=1, padding="valid")
        if self.use_bias:
            outputs = outputs + self.bias
        return self.activation(outputs) if self.activation is not None else outputs
