"""Caffe layouts read as Keras ones: kernels, the BGR input, BN, and a layer's geometry.

Pure NumPy and views where possible: a Caffe convolution weight `(out, in, kh, kw)`, a
deconvolution weight `(in, out, kh, kw)`, the BGR first layer, the fork's folded BN, and
the kernel, stride, pad and pooling that a layer's parameters record. `weight_mapping`
applies these rules layer by layer.
"""

from __future__ import annotations

import numpy as np

from keras_deconvnet.models.caffe.caffe_net import CaffeLayer, CaffeNet

# === Layout rules (pure NumPy, views where possible) =========================


def conv_kernel(weight: np.ndarray) -> np.ndarray:
    """A Caffe CONVOLUTION weight `(out, in, kh, kw)` as a Keras `Conv2D` kernel.

    Both are cross-correlations, so only the axes move: `(kh, kw, in, out)`.

    Example:

    >>> conv_kernel(np.zeros((8, 3, 5, 4))).shape
    (5, 4, 3, 8)
    """
    return np.asarray(weight).transpose(2, 3, 1, 0)


def deconv_as_conv_kernel(weight: np.ndarray) -> np.ndarray:
    """A stride-1 Caffe DECONVOLUTION weight `(in, out, kh, kw)` as a `Conv2D` kernel.

    A stride-1 transposed convolution with pad `(k - 1) / 2` scatters `x[c] * W[c, o]`
    around each pixel; gathered instead, it is a "same" convolution whose kernel is
    `W` flipped in both spatial axes, `(kh, kw, in, out)`: output `(o, y, x)` =
    `sum x[c, y + a - p, x + b - p] * W[c, o, k - 1 - a, k - 1 - b]`.

    Example:

    >>> w = np.arange(4.0).reshape(1, 1, 2, 2)
    >>> deconv_as_conv_kernel(w)[:, :, 0, 0].tolist()
    [[3.0, 2.0], [1.0, 0.0]]
    """
    return np.asarray(weight)[:, :, ::-1, ::-1].transpose(2, 3, 0, 1)


def deconv_kernel(weight: np.ndarray) -> np.ndarray:
    """A Caffe DECONVOLUTION weight `(in, out, kh, kw)` as a `Conv2DTranspose` kernel.

    Keras keeps transposed-convolution kernels as `(kh, kw, out, in)` and scatters
    `x[c] * K[i, j, o, c]` to output `(o, h * s + i, w * s + j)`, as Caffe does with
    `W[c, o, i, j]`: no flip, only the axes move.

    Example:

    >>> deconv_kernel(np.zeros((21, 7, 4, 4))).shape
    (4, 4, 7, 21)
    """
    return np.asarray(weight).transpose(2, 3, 1, 0)


def bgr_to_rgb(kernel: np.ndarray) -> np.ndarray:
    """A first-layer Keras kernel `(kh, kw, 3, out)` trained on BGR, for RGB input.

    Caffe's VGG16 and the DeconvNet and FCN models take BGR images; our networks take
    RGB, so the input channels of conv1_1 are reversed (a view, no copy).

    Example:

    >>> bgr_to_rgb(np.arange(3.0).reshape(1, 1, 3, 1))[0, 0, :, 0].tolist()
    [2.0, 1.0, 0.0]
    """
    if kernel.shape[2] != 3:
        raise ValueError(f"conv1_1 must take 3 channels (BGR). Received: {kernel.shape}")
    return kernel[:, :, ::-1, :]


def unit_variance(epsilon: float) -> np.float32:
    """The moving variance `v` with `float32(v) + float32(epsilon) == 1` exactly.

    With mean 0 and this variance a Keras `BatchNormalization` computes
    `x * gamma * rsqrt(1) + beta`, i.e. exactly `x * gamma + beta` in float32: the
    fork's folded INFERENCE BN, `scale * x + shift`.

    Example:

    >>> float(unit_variance(1e-9)), float(unit_variance(1e-3) + np.float32(1e-3))
    (1.0, 1.0)
    """
    eps = np.float32(epsilon)
    variance = np.float32(1) - eps
    if variance + eps != np.float32(1):  # one ulp below or above: step towards 1
        variance = np.nextafter(variance, np.float32(2) if variance + eps < 1 else np.float32(0))
    if variance + eps != np.float32(1):
        raise ValueError(f"No float32 variance v gives v + {epsilon} == 1 exactly.")
    return variance


KERNEL_LAYOUTS = {"conv": conv_kernel, "deconv_as_conv": deconv_as_conv_kernel,
                  "deconv": deconv_kernel}


def caffe_weight_shape(kind: str, kernel_shape: tuple[int, ...]) -> tuple[tuple, int]:
    """The Caffe weight shape a Keras kernel needs, and its output channels.

    `(out, in, kh, kw)` for a convolution, `(in, out, kh, kw)` for a deconvolution; the
    Keras kernel is `(kh, kw, in, out)`, or `(kh, kw, out, in)` for `Conv2DTranspose`.
    """
    kh, kw, a, b = kernel_shape
    if kind == "conv":
        return (b, a, kh, kw), b
    if kind == "deconv_as_conv":
        return (a, b, kh, kw), b
    return (b, a, kh, kw), a  # Conv2DTranspose kernel (kh, kw, out, in)


# === Reading a layer's geometry ===============================================


def _first(values, default):
    if values is None:
        return default
    if isinstance(values, tuple | list):
        return int(values[0]) if values else default
    return int(values)


def conv_geometry(layer: CaffeLayer) -> dict[str, int | bool] | None:
    """`{"kernel", "stride", "pad", "group", "dilation", "bias_term"}` of a layer's params.

    Caffe's defaults fill absent fields (stride 1, pad 0, group 1, bias_term true);
    `None` when the file keeps no convolution parameters for the layer at all.
    """
    params = layer.params.get("convolution_param")
    if params is None:
        v0 = layer.params.get("v0_layer_param")
        if v0 is None:
            return None
        return {"kernel": _first(v0.get("kernelsize"), 0), "stride": _first(v0.get("stride"), 1),
                "pad": _first(v0.get("pad"), 0), "group": _first(v0.get("group"), 1),
                "dilation": 1, "bias_term": bool(v0.get("biasterm", True))}
    kernel = params.get("kernel_h", _first(params.get("kernel_size"), 0))
    return {
        "kernel": int(kernel),
        "kernel_w": int(params.get("kernel_w", _first(params.get("kernel_size"), 0))),
        "stride": int(params.get("stride_h", _first(params.get("stride"), 1))),
        "stride_w": int(params.get("stride_w", _first(params.get("stride"), 1))),
        "pad": int(params.get("pad_h", _first(params.get("pad"), 0))),
        "pad_w": int(params.get("pad_w", _first(params.get("pad"), 0))),
        "group": int(params.get("group", 1)),
        "dilation": _first(params.get("dilation"), 1),
        "bias_term": bool(params.get("bias_term", True)),
    }


def pooling_problems(net: CaffeNet, block: int, family: str) -> list[str]:
    """What keeps the `pool{block}` layers from being MAX 2x2 stride-2 poolings.

    Example:

    >>> pool = CaffeLayer("pool1", 17, ("conv1_2",), ("pool1",), (),
    ...                   {"pooling_param": {"pool": 1, "kernel_size": 2, "stride": 2}})
    >>> print(*pooling_problems(CaffeNet("<bytes>", "", "V1", (pool,), (), ()), 1, "VGG16"))
    layer 'pool1' pools (pool, kernel, stride, pad) = (1, 2, 2, 0); VGG16 pools MAX 2x2 stride 2
    """
    problems = []
    for pool in net.layers_named(f"pool{block}"):
        params = pool.params.get("pooling_param", {})
        got = (params.get("pool", 0), params.get("kernel_size", 2),
               params.get("stride", 1), params.get("pad", 0))
        if got != (0, 2, 2, 0):
            problems.append(f"layer {pool.name!r} pools (pool, kernel, stride, pad) "
                            f"= {got}; {family} pools MAX 2x2 stride 2")
    return problems
