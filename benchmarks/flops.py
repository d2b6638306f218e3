"""Counts a model's multiply-accumulates from its convolution layers (for GFLOP/s figures)."""

from __future__ import annotations

import keras


def conv_macs(model: keras.Model) -> int:
    """MACs of one forward pass of one image: Conv2D, Conv2DTranspose and Dense layers.

    Pooling, unpooling, BatchNorm and ReLU are memory-bound and not counted, as is
    usual for FLOP figures; nested models are walked.
    """
    total = 0
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            total += conv_macs(layer)
            continue
        if isinstance(layer, keras.layers.Conv2DTranspose):
            _, h, w, cin = layer.input.shape
            kh, kw = layer.kernel_size
            total += h * w * kh * kw * cin * layer.filters
        elif isinstance(layer, keras.layers.Conv2D):
            _, h, w, cout = layer.output.shape
            kh, kw = layer.kernel_size
            total += h * w * kh * kw * layer.input.shape[-1] * cout
        elif isinstance(layer, keras.layers.Dense):
            total += layer.input.shape[-1] * layer.units
    return int(total)
