"""FCN-8s's crop layer and the geometry that decides its offsets."""

from __future__ import annotations

from fractions import Fraction

import keras
import numpy as np


@keras.saving.register_keras_serializable(package="keras_deconvnet")
class CropToMatch(keras.layers.Layer):
    """Crops the first input's height and width to the second's, from `offset`.

    FCN's `crop` layers: the fused score maps of FCN-8s line up only after
    cropping. Works with unknown sizes, so FCN-8s accepts any input size.

    Args:
        offset: rows and columns skipped at the top-left. Defaults to `0`.

    Example:

    >>> import numpy as np
    >>> x = np.arange(36.0).reshape(1, 6, 6, 1)
    >>> CropToMatch(offset=1)(x, np.zeros((1, 2, 3, 5)))[0, :, :, 0].numpy().tolist()
    [[7.0, 8.0, 9.0], [13.0, 14.0, 15.0]]
    """

    def __init__(self, offset: int = 0, **kwargs):
        super().__init__(**kwargs)
        if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
            raise ValueError(f"`offset` must be an int >= 0. Received: offset={offset!r}")
        self.offset = offset

    def build(self, inputs_shape, reference_shape):
        if len(inputs_shape) != 4 or len(reference_shape) != 4:
            raise ValueError(
                "`CropToMatch` takes two 4D tensors. Received: "
                f"{tuple(inputs_shape)} and {tuple(reference_shape)}"
            )

    def call(self, inputs, reference):
        size = keras.ops.shape(reference)
        o = self.offset
        return inputs[:, o : o + size[1], o : o + size[2], :]

    def compute_output_shape(self, inputs_shape, reference_shape):
        return (inputs_shape[0], reference_shape[1], reference_shape[2], inputs_shape[3])

    def get_config(self):
        config = super().get_config()
        config.update({"offset": self.offset})
        return config


def bilinear_kernel(size: int, channels: int) -> np.ndarray:
    """FCN's bilinear upsampling initialisation of a `(size, size, c, c)` kernel."""
    factor = (size + 1) // 2
    center = factor - 1 if size % 2 == 1 else factor - 0.5
    og = np.ogrid[:size, :size]
    filt = (1 - abs(og[0] - center) / factor) * (1 - abs(og[1] - center) / factor)
    kernel = np.zeros((size, size, channels, channels), np.float32)
    for c in range(channels):
        kernel[:, :, c, c] = filt
    return kernel


def _conv_map(kernel: int, stride: int, pad: Fraction):
    """`x_in = a * x_out + b` of a convolution or pooling (Caffe's coord_map)."""
    return Fraction(stride), Fraction(kernel - 1, 2) - pad


def _deconv_map(kernel: int, stride: int, pad: Fraction):
    a, b = _conv_map(kernel, stride, pad)
    return 1 / a, -b / a


def _compose(outer, inner):
    """The map of `inner` applied after `outer` (coordinates flow towards the input)."""
    a1, b1 = outer
    a2, b2 = inner
    return a1 * a2, a1 * b2 + b1


def crop_offsets(input_padding: int, fc_kernel_size: int, upsample_kernels=(4, 4, 16),
                 block_depths=(2, 2, 3, 3, 3)) -> tuple[int, int, int]:
    """The offsets of FCN-8s's three crops, derived from the network's geometry.

    Follows the coordinate mapping of Caffe's FCN `coord_map` (each layer maps an
    output coordinate to `a * x + b` in its input): pool4's scores are cropped to
    `upscore2`'s grid, pool3's to `upscore_pool4`'s, and `upscore8` to the image.
    With "same" padding everywhere (`input_padding=0`) all offsets are 0.

    Example:

    >>> crop_offsets(100, 7)
    (5, 9, 31)
    >>> crop_offsets(0, 7)
    (0, 0, 0)
    """
    half = Fraction(1, 2)
    identity = (Fraction(1), Fraction(0))
    same = not input_padding
    maps = identity
    pool_maps = []
    for block, depth in enumerate(block_depths, 1):
        for i in range(depth):
            pad = Fraction(input_padding) if (block == 1 and i == 0 and not same) else Fraction(1)
            maps = _compose(maps, _conv_map(3, 1, pad))
        # 2x2/2 pooling; TF's "same" pads nothing at the top-left, like Caffe.
        maps = _compose(maps, _conv_map(2, 2, Fraction(0)))
        pool_maps.append(maps)
    fc6_pad = Fraction(fc_kernel_size - 1, 2) if same else Fraction(0)
    score = _compose(pool_maps[4], _conv_map(fc_kernel_size, 1, fc6_pad))

    def upsample(source, kernel, stride):
        # Keras "same" transposed convolutions pad (kernel - stride) / 2 on the top-left.
        pad = Fraction(kernel - stride) * half if same else Fraction(0)
        pad = Fraction(int(pad))  # TF puts the odd pixel at the end
        return _compose(source, _deconv_map(kernel, stride, pad))

    offsets = []
    up = score
    for skip, kernel, stride in ((pool_maps[3], upsample_kernels[0], 2),
                                 (pool_maps[2], upsample_kernels[1], 2)):
        up = upsample(up, kernel, stride)
        offset = (up[1] - skip[1]) / skip[0]
        offsets.append(offset)
    final = upsample(up, upsample_kernels[2], 8)
    offsets.append(-final[1])
    for offset in offsets:
        if offset.denominator != 1 or offset < 0:
            raise ValueError(
                f"FCN-8s's score maps do not align on whole pixels: offsets {offsets} "
                f"(input_padding={input_padding}, fc_kernel_size={fc_kernel_size})."
            )
    return tuple(int(o) for o in offsets)
