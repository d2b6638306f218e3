"""An independent NumPy model of Caffe's forward layers (NCHW), the oracle for converters.

Written from Caffe's sources, not from this package (it imports neither keras_deconvnet nor
TensorFlow): BVLC/caffe and HyeonwooNoh/caffe `src/caffe/layers/` conv_layer.cpp,
deconv_layer.cpp + base_conv_layer.cpp, pooling_layer.cpp/.cu, the fork's
unpooling_layer.cpp/.cu, bn_layer.cpp/.cu, crop_layer.cpp and include/caffe/util/coords.hpp,
and DeconvNet's training/003_make_bn_layer_testable/BN_make_INFERENCE_script.py for the
BN folding.
Every function computes in float64 and returns float64 (masks: int64). Convolutions use
im2col + matmul, so a 1/16-width DeconvNet forward on 224x224 takes well under a second.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from fractions import Fraction
from typing import Any

import numpy as np

FLT_MAX = float(np.finfo(np.float32).max)  # Caffe's max pooling starts from -FLT_MAX
BN_EPS = 1e-9  # HyeonwooNoh/caffe bn_layer.cpp: var_eps_ = 1e-9, hard-coded

__all__ = [
    "BN_EPS", "bn_inference", "bn_train", "convolution", "crop", "crop_offset", "deconvolution",
    "deconvnet_layers", "eltwise", "fold_bn", "inner_product", "max_pool", "pooled_size",
    "relu", "run_net", "softmax", "unpool", "unpooled_size",
]


def _pair(value: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(value, int | np.integer):
        return int(value), int(value)
    values = tuple(int(v) for v in value)
    return (values[0], values[0]) if len(values) == 1 else (values[0], values[1])


def _f64(x: Any) -> np.ndarray:
    return np.asarray(x, dtype=np.float64)


def _bias(bias: Any, channels: int) -> np.ndarray:
    # Old files store a bias as (1, 1, 1, C); newer ones as (C,).
    return _f64(bias).reshape(1, channels, 1, 1)


def convolution(
    x: Any, weight: Any, bias: Any = None, *, stride: int | Sequence[int] = 1,
    pad: int | Sequence[int] = 0, group: int = 1,
) -> np.ndarray:
    """Caffe CONVOLUTION: cross-correlation, zero padding, floor output size.

    Args:
        x: (N, C, H, W).
        weight: (out, C / group, kh, kw).
        bias: out values in any shape ((1, 1, 1, out) in old files), or None.
        stride, pad: an int or (h, w).
        group: channel groups.

    Returns:
        (N, out, (H + 2 pad - kh) // stride + 1, ...), float64.
    """
    x, weight = _f64(x), _f64(weight)
    (sh, sw), (ph, pw) = _pair(stride), _pair(pad)
    n, c, h, w = x.shape
    out, cg, kh, kw = weight.shape
    if cg * group != c:
        raise ValueError(f"weight {weight.shape} does not take {c} channels in {group} groups")
    ho, wo = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
    padded = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    cols = np.empty((n, c, kh, kw, ho, wo))
    for i in range(kh):  # im2col: one strided slice per kernel tap
        for j in range(kw):
            cols[:, :, i, j] = padded[:, :, i:i + sh * (ho - 1) + 1:sh, j:j + sw * (wo - 1) + 1:sw]
    og = out // group
    y = np.empty((n, out, ho * wo))
    for g in range(group):
        w_g = weight[g * og:(g + 1) * og].reshape(og, cg * kh * kw)
        y[:, g * og:(g + 1) * og] = w_g @ cols[:, g * cg:(g + 1) * cg].reshape(n, -1, ho * wo)
    y = y.reshape(n, out, ho, wo)
    return y if bias is None else y + _bias(bias, out)


def deconvolution(
    x: Any, weight: Any, bias: Any = None, *, stride: int | Sequence[int] = 1,
    pad: int | Sequence[int] = 0, group: int = 1,
) -> np.ndarray:
    """Caffe DECONVOLUTION: the transposed convolution (col2im of weight^T @ x).

    Each input pixel (h, w) of channel c adds `x[c, h, w] * weight[c, o, i, j]` to output
    (o, h * stride + i - pad, w * stride + j - pad); taps falling outside are dropped.

    Args:
        x: (N, C, H, W).
        weight: (C, out / group, kh, kw) -- input channels first, unlike convolution.
        bias: out values in any shape, or None (`bias_term: false`).
        stride, pad: an int or (h, w).
        group: channel groups.

    Returns:
        (N, out, (H - 1) * stride + kh - 2 pad, ...), float64.
    """
    x, weight = _f64(x), _f64(weight)
    (sh, sw), (ph, pw) = _pair(stride), _pair(pad)
    n, c, h, w = x.shape
    cw, og, kh, kw = weight.shape
    if cw != c or c % group:
        raise ValueError(f"weight {weight.shape} does not take {c} channels in {group} groups")
    out, cg = og * group, c // group
    full = np.zeros((n, out, (h - 1) * sh + kh, (w - 1) * sw + kw))
    for g in range(group):
        w_g = weight[g * cg:(g + 1) * cg].reshape(cg, og * kh * kw)
        cols = (w_g.T @ x[:, g * cg:(g + 1) * cg].reshape(n, cg, h * w))
        cols = cols.reshape(n, og, kh, kw, h, w)
        for i in range(kh):  # col2im: scatter-add each tap at its strided offset
            for j in range(kw):
                full[:, g * og:(g + 1) * og, i:i + sh * (h - 1) + 1:sh,
                     j:j + sw * (w - 1) + 1:sw] += cols[:, :, i, j]
    ho, wo = (h - 1) * sh + kh - 2 * ph, (w - 1) * sw + kw - 2 * pw
    y = full[:, :, ph:ph + ho, pw:pw + wo]
    return y if bias is None else y + _bias(bias, out)


def pooled_size(size: int, kernel: int, stride: int, pad: int = 0) -> int:
    """Caffe pooling output size: ceil mode, minus one if the last window starts in the pad.

    pooling_layer.cpp Reshape: `ceil((size + 2 pad - kernel) / stride) + 1`, then, with
    padding, decremented when `(out - 1) * stride >= size + pad`.
    """
    out = -(-(size + 2 * pad - kernel) // stride) + 1
    if pad and (out - 1) * stride >= size + pad:
        out -= 1
    return out


def max_pool(
    x: Any, kernel: int | Sequence[int], stride: int | Sequence[int] | None = None,
    pad: int | Sequence[int] = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Caffe MAX pooling with its mask (the second top the DeconvNet pools output).

    Windows start at `p * stride - pad` and are clipped to the input. Each window scans
    rows then columns and keeps a value only if it is strictly greater (`>`) than the
    running max, which starts at -FLT_MAX: the FIRST maximum in scan order wins ties,
    and NaN or values <= -FLT_MAX never win (a window with no winner gives -FLT_MAX and
    mask -1, as Caffe does).

    Args:
        x: (N, C, H, W).
        kernel, stride (default: kernel), pad: an int or (h, w).

    Returns:
        (values, mask): values (N, C, Ho, Wo) float64 with Ho from `pooled_size`; mask
        int64, the flat index `h * W + w` of the winner inside its own (H, W) input plane
        (Caffe stores it as a float in the mask top).
    """
    x = _f64(x)
    (kh, kw) = _pair(kernel)
    (sh, sw) = _pair(kernel if stride is None else stride)
    (ph, pw) = _pair(pad)
    n, c, h, w = x.shape
    ho, wo = pooled_size(h, kh, sh, ph), pooled_size(w, kw, sw, pw)
    # Lay the input into a -inf canvas that holds every (clipped) window.
    rows, cols = (ho - 1) * sh + kh, (wo - 1) * sw + kw
    canvas = np.full((n, c, rows, cols), -np.inf)
    index = np.full((rows, cols), -1, dtype=np.int64)
    hh, ww = min(h, rows - ph), min(w, cols - pw)
    canvas[:, :, ph:ph + hh, pw:pw + ww] = x[:, :, :hh, :ww]
    index[ph:ph + hh, pw:pw + ww] = (np.arange(hh)[:, None] * w + np.arange(ww)[None, :])
    windows = np.lib.stride_tricks.sliding_window_view(canvas, (kh, kw), axis=(2, 3))
    windows = windows[:, :, ::sh, ::sw].reshape(n, c, ho, wo, kh * kw)
    window_index = np.lib.stride_tricks.sliding_window_view(index, (kh, kw))
    window_index = window_index[::sh, ::sw].reshape(ho, wo, kh * kw)
    eligible = windows > -FLT_MAX  # False for NaN, -inf and the canvas border
    scores = np.where(eligible, windows, -np.inf)
    winner = np.argmax(scores, axis=-1)  # np.argmax returns the first maximum
    found = np.take_along_axis(eligible, winner[..., None], -1)[..., 0]
    values = np.take_along_axis(windows, winner[..., None], -1)[..., 0]
    mask = np.take_along_axis(
        np.broadcast_to(window_index, (n, c, ho, wo, kh * kw)), winner[..., None], -1)[..., 0]
    values = np.where(found, values, -FLT_MAX)
    mask = np.where(found, mask, -1)
    return values, mask


def unpooled_size(size: int, kernel: int, stride: int, pad: int = 0) -> int:
    """The fork's default unpooled size, used only when `unpool_size`/`unpool_h` is absent.

    unpooling_layer.cpp Reshape: `max((size - 1) * stride + kernel - 2 pad,
    size * stride - pad + 1)`. Note the second term: 7 -> 15 (not 14) for kernel 2,
    stride 2, which is why the DeconvNet prototxts always give `unpool_size`.
    """
    return max((size - 1) * stride + kernel - 2 * pad, size * stride - pad + 1)


def unpool(
    x: Any, mask: Any = None, *, kernel: int | Sequence[int] = 2,
    stride: int | Sequence[int] | None = None, pad: int | Sequence[int] = 0,
    out_size: int | Sequence[int] | None = None,
) -> np.ndarray:
    """The fork's MAX UNPOOLING: zeros, then each input value written at its mask index.

    unpooling_layer.cpp Forward_cpu: `top[mask[i]] = bottom[i]` per (n, c) plane, where
    `mask[i]` (a float, truncated to int) is a flat index into the (out_h, out_w) output
    plane. The pooling mask indexes the pooling INPUT plane (width W_in), so the two agree
    only when out_w == W_in, as `unpool_size` makes them in DeconvNet. Values are
    written, not added: where two inputs share an index the later one in scan order
    wins (CPU code; the GPU kernel races). Without a mask, input (ph, pw) goes to
    (clip(ph * stride - pad), clip(pw * stride - pad)).

    Args:
        x: (N, C, H, W) values.
        mask: (N, C, H, W) flat indices from `max_pool`, or None.
        kernel, stride (default: kernel), pad: the unpooling_param (pad must be 0 in
            the fork; kept for the size formula).
        out_size: (out_h, out_w) or one int (`unpool_size`); default `unpooled_size`.

    Returns:
        (N, C, out_h, out_w), float64.

    Raises:
        ValueError: a mask index outside the output plane (Caffe would write out of
            bounds, e.g. for the -1 of an empty pooling window).
    """
    x = _f64(x)
    (kh, kw) = _pair(kernel)
    (sh, sw) = _pair(kernel if stride is None else stride)
    (ph, pw) = _pair(pad)
    n, c, h, w = x.shape
    if out_size is None:
        uh, uw = unpooled_size(h, kh, sh, ph), unpooled_size(w, kw, sw, pw)
    else:
        uh, uw = _pair(out_size)
    if mask is None:
        rows = np.clip(np.arange(h) * sh - ph, 0, uh - 1)
        cols = np.clip(np.arange(w) * sw - pw, 0, uw - 1)
        flat = np.broadcast_to(rows[:, None] * uw + cols[None, :], x.shape)
    else:
        flat = np.trunc(np.asarray(mask, dtype=np.float64)).astype(np.int64)  # C float->int
        if flat.shape != x.shape:
            raise ValueError(f"mask shape {flat.shape} != values shape {x.shape}")
    if flat.size and (flat.min() < 0 or flat.max() >= uh * uw):
        raise ValueError(f"mask indices must lie in [0, {uh * uw}); got {flat.min()}..{flat.max()}")
    plane = np.arange(n * c).reshape(n, c, 1, 1) * (uh * uw)
    target = (plane + flat).reshape(-1)
    values = x.reshape(-1)
    # Keep the last write per target: the first occurrence in the reversed order.
    _, last = np.unique(target[::-1], return_index=True)
    keep = target.size - 1 - last
    y = np.zeros(n * c * uh * uw)
    y[target[keep]] = values[keep]
    return y.reshape(n, c, uh, uw)


def bn_inference(x: Any, scale: Any, shift: Any) -> np.ndarray:
    """The fork's BN with `bn_mode: INFERENCE` (the DeconvNet_trainval_inference file).

    `y = scale[c] * x + shift[c]`: the batch statistics are already folded into the two
    (1, C, 1, 1) blobs (`fold_bn`).
    """
    x = _f64(x)
    c = x.shape[1]
    return x * _bias(scale, c) + _bias(shift, c)


def bn_train(
    x: Any, scale: Any, shift: Any, *, eps: float = BN_EPS, return_stats: bool = False
) -> np.ndarray | tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The fork's BN with `bn_mode: LEARN` (the default; the stage_1/stage_2 files).

    Uses the statistics of the batch it is given, in every phase (it has no running
    averages): per channel, mean = E[x] and var = E[x^2] - E[x]^2 over N, H, W (biased,
    divided by N*H*W), then `y = scale * (x - mean) / sqrt(var + eps) + shift`, eps 1e-9.

    Args:
        x: (N, C, H, W).
        scale, shift: the layer's two blobs (gamma, beta), C values each.
        eps: the variance epsilon.
        return_stats: also return (mean, var), the layer's optional 2nd and 3rd tops.

    Returns:
        y, or (y, mean, var) with mean and var of shape (C,).
    """
    x = _f64(x)
    c = x.shape[1]
    mean = x.mean(axis=(0, 2, 3))
    var = (x * x).mean(axis=(0, 2, 3)) - mean * mean  # Caffe's E(X^2) - (EX)^2 form
    normalized = (x - mean.reshape(1, c, 1, 1)) / np.sqrt(var.reshape(1, c, 1, 1) + eps)
    y = normalized * _bias(scale, c) + _bias(shift, c)
    return (y, mean, var) if return_stats else y


def fold_bn(
    gamma: Any, beta: Any, mean: Any, var: Any, *, eps: float = BN_EPS,
    samples_per_channel: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """How DeconvNet's BN_make_INFERENCE_script.py turned LEARN blobs into INFERENCE ones.

    The script averages the batch mean and (biased) variance tops over its forward
    passes, multiplies the variance by m / (m - 1) with m = N*H*W of the blob
    (`samples_per_channel`; None skips that correction), then returns
    `scale = gamma / sqrt(var + eps)`, `shift = beta - gamma * mean / sqrt(var + eps)`.

    Returns:
        (scale, shift), flat float64 arrays of C values.
    """
    gamma, beta = _f64(gamma).reshape(-1), _f64(beta).reshape(-1)
    mean, var = _f64(mean).reshape(-1), _f64(var).reshape(-1)
    if samples_per_channel is not None:
        var = var * samples_per_channel / (samples_per_channel - 1)
    std = np.sqrt(var + eps)
    return gamma / std, beta - gamma * mean / std


def relu(x: Any, negative_slope: float = 0.0) -> np.ndarray:
    """Caffe RELU: `max(x, 0) + negative_slope * min(x, 0)`."""
    x = _f64(x)
    return np.maximum(x, 0) + negative_slope * np.minimum(x, 0)


def crop(x: Any, reference: Any, offset: int | Sequence[int]) -> np.ndarray:
    """The FCN-era CROP (HyeonwooNoh/caffe crop_layer.cpp, from longjon's FCN Caffe).

    Crops bottom[0] to bottom[1]'s height and width, starting at (offset_h, offset_w):
    `top[n, c, h, w] = bottom0[n, c, offset_h + h, offset_w + w]`. Caffe derives the
    offset from the net's coordinate maps (it is not stored in the file; `crop_offset`
    reproduces that), so it is an argument here.

    Args:
        x: (N, C, H, W) to crop.
        reference: an array whose last two axes give the size, or an (h, w) pair.
        offset: an int or (offset_h, offset_w).
    """
    x = _f64(x)
    if isinstance(reference, np.ndarray):
        th, tw = reference.shape[-2:]
    else:
        th, tw = _pair(reference)
    oh, ow = _pair(offset)
    if oh < 0 or ow < 0 or oh + th > x.shape[2] or ow + tw > x.shape[3]:
        raise ValueError(f"crop {th}x{tw} at ({oh}, {ow}) does not fit in {x.shape[2:]}")
    return x[:, :, oh:oh + th, ow:ow + tw].copy()


def crop_offset(
    path0: Sequence[tuple[str, int, int, int]], path1: Sequence[tuple[str, int, int, int]]
) -> int:
    """The offset Caffe's CROP computes from the net (crop_layer.cpp LayerSetUp).

    Each layer maps coordinates affinely, bottom -> top (include/caffe/util/coords.hpp):
    CONVOLUTION and POOLING `FilterMap(k, s, p).inv()`, i.e. `x / s - ((k - 1) / 2 - p) / s`;
    DECONVOLUTION `FilterMap(k, s, p)`, i.e. `s * x + (k - 1) / 2 - p`; element-wise
    layers the identity. Composing the layers from the blob where both bottoms' paths
    meet gives maps M0, M1 into bottom0 and bottom1; the crop is `-round(b)` of
    `M1 o M0^-1 = x + b`, which must have slope 1.

    Args:
        path0, path1: the layers from the shared blob to bottom[0] (cropped) and to
            bottom[1] (reference), in forward order, as ("conv" | "pool" | "deconv" |
            "identity", kernel, stride, pad).

    Returns:
        The offset, in both height and width (square kernels).
    """

    def compose(path: Sequence[tuple[str, int, int, int]]) -> tuple[Fraction, Fraction]:
        a, b = Fraction(1), Fraction(0)  # x -> a x + b
        for kind, kernel, stride, pad in path:
            shift = Fraction(kernel - 1, 2) - pad
            if kind in ("conv", "pool"):
                a, b = a / stride, (b - shift) / stride
            elif kind == "deconv":
                a, b = a * stride, b * stride + shift
            elif kind != "identity":
                raise ValueError(f"unknown layer kind {kind!r}")
        return a, b

    (a0, b0), (a1, b1) = compose(path0), compose(path1)
    slope, intercept = a1 / a0, b1 - a1 * b0 / a0
    if slope != 1 or intercept > 0 or intercept.denominator != 1:
        raise ValueError(f"the paths do not align by an integer crop: x * {slope} + {intercept}")
    return int(-intercept)


def eltwise(
    *xs: Any, operation: int | str = "SUM", coeffs: Sequence[float] | None = None
) -> np.ndarray:
    """Caffe ELTWISE: SUM (with optional per-input coefficients), PROD or MAX."""
    arrays = [_f64(x) for x in xs]
    op = {0: "PROD", 1: "SUM", 2: "MAX"}.get(operation, operation)
    if op == "SUM":
        coeffs = [1.0] * len(arrays) if coeffs is None or not len(coeffs) else coeffs
        return sum(c * a for c, a in zip(coeffs, arrays, strict=True))
    if op == "PROD":
        return np.prod(np.stack(arrays), axis=0)
    if op == "MAX":
        return np.max(np.stack(arrays), axis=0)
    raise ValueError(f"unknown eltwise operation {operation!r}")


def softmax(x: Any, axis: int = 1) -> np.ndarray:
    """Caffe SOFTMAX over the channel axis: `exp(x - max) / sum(exp(x - max))`."""
    x = _f64(x)
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def inner_product(x: Any, weight: Any, bias: Any = None) -> np.ndarray:
    """Caffe INNER_PRODUCT: `x.reshape(N, K) @ W.T + b`, W of (out, K) values."""
    x = _f64(x)
    flat = x.reshape(x.shape[0], -1)
    weight = _f64(weight).reshape(-1, flat.shape[1])
    y = flat @ weight.T
    return y if bias is None else y + _f64(bias).reshape(1, -1)


# -- a tiny net runner ---------------------------------------------------------------


def _param(params: Mapping[str, Any], key: str, default: Any) -> Any:
    value = params.get(key, default)
    if isinstance(value, tuple | list):
        return value[0] if len(value) == 1 else tuple(value)
    return value


def _kernel_params(params: Mapping[str, Any], kernel_default: Any = None) -> dict[str, Any]:
    def pick(name: str, default: Any) -> Any:
        if f"{name}_h" in params:
            return (params[f"{name}_h"], params[f"{name}_w"])
        return _param(params, name, default)

    return {"stride": pick("stride", 1), "pad": pick("pad", 0),
            "kernel": pick("kernel_size", kernel_default)}


def run_net(
    layers: Sequence[Mapping[str, Any]], inputs: Mapping[str, Any]
) -> dict[str, np.ndarray]:
    """Runs layers in order, Caffe style (in-place layers overwrite their blob).

    Args:
        layers: dicts with `name`, `type` (a Caffe name: CONVOLUTION, DECONVOLUTION,
            POOLING (MAX), UNPOOLING (MAX), BN, RELU, CROP, ELTWISE, SOFTMAX, DROPOUT
            (test phase: identity), INNER_PRODUCT; case-insensitive), `bottoms`, `tops`,
            `blobs` and `params` shaped like the caffemodel's: `convolution_param`
            (`pad`, `stride`, `group`), `pooling_param` (`kernel_size`, `stride`, `pad`),
            `unpooling_param` (`kernel_size`, `stride`, `unpool_size` or
            `unpool_h`/`unpool_w`), `bn_param` (`bn_mode` 0 LEARN / 1 INFERENCE),
            `eltwise_param`, `relu_param`, and for CROP an explicit `crop_offset` (h, w)
            (Caffe computes it from the graph).
        inputs: blob name -> (N, C, H, W) array.

    Returns:
        Every blob by name, float64.
    """
    blobs = {name: _f64(value) for name, value in inputs.items()}
    for layer in layers:
        kind = str(layer["type"]).upper().replace("_", "")
        bottoms = [blobs[b] for b in layer.get("bottoms", ())]
        tops = list(layer.get("tops", ()))
        weights = list(layer.get("blobs", ()))
        params = layer.get("params", {})
        if kind in ("CONVOLUTION", "DECONVOLUTION"):
            conv = params.get("convolution_param", {})
            op = convolution if kind == "CONVOLUTION" else deconvolution
            outputs = [op(bottoms[0], weights[0], weights[1] if len(weights) > 1 else None,
                          stride=_param(conv, "stride", 1), pad=_param(conv, "pad", 0),
                          group=conv.get("group", 1))]
        elif kind == "POOLING":
            pool = params.get("pooling_param", {})
            if pool.get("pool", 0) != 0:
                raise NotImplementedError("only MAX pooling is modelled")
            outputs = list(max_pool(bottoms[0], **_kernel_params(pool)))
        elif kind == "UNPOOLING":
            spec = params.get("unpooling_param", {})
            if "unpool_size" in spec:
                size = spec["unpool_size"]
            elif "unpool_h" in spec:
                size = (spec["unpool_h"], spec["unpool_w"])
            else:
                size = None
            outputs = [unpool(bottoms[0], bottoms[1] if len(bottoms) > 1 else None,
                              out_size=size, **_kernel_params(spec))]
        elif kind == "BN":
            mode = params.get("bn_param", {}).get("bn_mode", 0)
            if mode in (1, "INFERENCE"):
                outputs = [bn_inference(bottoms[0], weights[0], weights[1])]
            else:
                outputs = list(bn_train(bottoms[0], weights[0], weights[1], return_stats=True))
        elif kind == "RELU":
            slope = params.get("relu_param", {}).get("negative_slope", 0.0)
            outputs = [relu(bottoms[0], slope)]
        elif kind == "CROP":
            outputs = [crop(bottoms[0], bottoms[1], layer["crop_offset"])]
        elif kind == "ELTWISE":
            spec = params.get("eltwise_param", {})
            outputs = [eltwise(*bottoms, operation=spec.get("operation", 1),
                               coeffs=spec.get("coeff"))]
        elif kind == "SOFTMAX":
            outputs = [softmax(bottoms[0])]
        elif kind == "DROPOUT":
            outputs = [bottoms[0]]
        elif kind == "INNERPRODUCT":
            outputs = [inner_product(bottoms[0], weights[0],
                                     weights[1] if len(weights) > 1 else None)]
        else:
            raise NotImplementedError(f"layer {layer['name']!r}: type {layer['type']!r}")
        for name, value in zip(tops, outputs, strict=False):
            blobs[name] = value
    return blobs


def deconvnet_layers(
    rng: np.random.Generator,
    *,
    widths: Sequence[int] = (64, 128, 256, 512, 512),
    fc: int = 4096,
    classes: int = 21,
    bn_mode: int = 1,
    size: int = 224,
    constant: float | None = None,
) -> list[dict[str, Any]]:
    """The DeconvNet inference net's layer list (names, types, wiring, blob shapes).

    Mirrors the layer names and blob layouts of DeconvNet_trainval_inference.caffemodel
    (V1 legacy 4-D blobs: bias (1, 1, 1, out), BN scale/shift (1, C, 1, 1)) with random
    weights, at any width, so tests can write it with `write_caffemodel` and run it with
    `run_net`. `bn_mode` 1 is the inference file's folded BN; 0 the stage files' LEARN.

    Args:
        rng: source of the random weights.
        widths: filters of the five VGG blocks (the decoder mirrors them).
        fc: fc6/fc7 width.
        classes: seg-score outputs.
        bn_mode: 1 INFERENCE (folded scale/shift) or 0 LEARN (gamma/beta).
        size: input height = width (a multiple of 32, at least 224 for fc6's 7x7).
        constant: if given, every blob is this value as a read-only broadcast view (no
            memory: for writing full-size files).
    """
    net = _LayerList(rng, bn_mode, constant)
    previous, cin, sizes = _encoder_layers(net, widths, size)
    net.conv("fc6", previous, "fc6", cin, fc, 7, 0)
    net.bn_relu("bnfc6", "relu6", "fc6", fc)
    net.conv("fc7", "fc6", "fc7", fc, fc, 1, 0)
    net.bn_relu("bnfc7", "relu7", "fc7", fc)
    net.conv("fc6-deconv", "fc7", "fc6-deconv", fc, widths[4], 7, 0, deconv=True)
    net.bn_relu("fc6-deconv-bn", "fc6-deconv-relu", "fc6-deconv", widths[4])
    previous, cin = _decoder_layers(net, widths, sizes)
    net.conv("seg-score-voc", previous, "seg-score", cin, classes, 1, 0)
    return net.layers


class _LayerList:
    """DeconvNet's layer dicts, appended in file order, with random (or constant) blobs."""

    def __init__(self, rng: np.random.Generator, bn_mode: int, constant: float | None) -> None:
        self.rng = rng
        self.bn_mode = bn_mode
        self.constant = constant
        self.layers: list[dict[str, Any]] = []

    def make(self, shape: tuple[int, ...], draw: Any) -> np.ndarray:
        if self.constant is not None:
            return np.broadcast_to(np.float32(self.constant), shape)
        return np.asarray(draw(), dtype=np.float32)

    def conv(self, name: str, bottom: str, top: str, cin: int, cout: int, kernel: int,
             pad: int, deconv: bool = False) -> None:
        rng = self.rng
        fan_in = cin * kernel * kernel
        shape = (cin, cout, kernel, kernel) if deconv else (cout, cin, kernel, kernel)
        weight = self.make(shape, lambda: rng.standard_normal(shape) * np.sqrt(2.0 / fan_in))
        bias = self.make((1, 1, 1, cout), lambda: rng.standard_normal((1, 1, 1, cout)) * 0.1)
        self.layers.append({
            "name": name, "type": "DECONVOLUTION" if deconv else "CONVOLUTION",
            "bottoms": [bottom], "tops": [top], "blobs": [weight, bias],
            "params": {"convolution_param": {"num_output": cout, "pad": pad,
                                             "kernel_size": kernel}}})

    def bn_relu(self, bn_name: str, relu_name: str, blob: str, channels: int) -> None:
        rng = self.rng
        shape = (1, channels, 1, 1)
        scale = self.make(shape, lambda: rng.uniform(0.5, 1.5, shape))
        shift = self.make(shape, lambda: rng.standard_normal(shape) * 0.1)
        self.layers.append({"name": bn_name, "type": "BN", "bottoms": [blob], "tops": [blob],
                            "blobs": [scale, shift],
                            "params": {"bn_param": {"bn_mode": self.bn_mode}}})
        self.layers.append({"name": relu_name, "type": "RELU", "bottoms": [blob],
                            "tops": [blob], "blobs": []})


def _encoder_layers(
    net: _LayerList, widths: Sequence[int], size: int
) -> tuple[str, int, list[int]]:
    """VGG16's five blocks with BN; returns the last blob, its channels, block sizes."""
    depth = (2, 2, 3, 3, 3)
    previous, cin, spatial = "data", 3, size
    sizes = []
    for block, (width, count) in enumerate(zip(widths, depth, strict=True), start=1):
        for k in range(1, count + 1):
            name = f"conv{block}_{k}"
            net.conv(name, previous, name, cin, width, 3, 1)
            net.bn_relu(f"bn{block}_{k}", f"relu{block}_{k}", name, width)
            previous, cin = name, width
        sizes.append(spatial)
        spatial //= 2
        net.layers.append({
            "name": f"pool{block}", "type": "POOLING", "bottoms": [previous],
            "tops": [f"pool{block}", f"pool{block}_mask"], "blobs": [],
            "params": {"pooling_param": {"pool": 0, "kernel_size": 2, "stride": 2}}})
        previous = f"pool{block}"
    return previous, cin, sizes


def _decoder_layers(net: _LayerList, widths: Sequence[int], sizes: list[int]) -> tuple[str, int]:
    """Unpooling and deconvolution blocks 5 to 1; returns the last blob and its channels."""
    previous, cin = "fc6-deconv", widths[4]
    # Each block's last deconv narrows to the next block's width.
    outs = {5: (widths[4], widths[4], widths[4]), 4: (widths[3], widths[3], widths[2]),
            3: (widths[2], widths[2], widths[1]), 2: (widths[1], widths[0]),
            1: (widths[0], widths[0])}
    for block in (5, 4, 3, 2, 1):
        net.layers.append({"name": f"unpool{block}", "type": "UNPOOLING",
                           "bottoms": [previous, f"pool{block}_mask"],
                           "tops": [f"unpool{block}"], "blobs": [],
                           "params": {"unpooling_param": {
                               "unpool": 0, "kernel_size": 2, "stride": 2,
                               "unpool_size": sizes[block - 1]}}})
        previous = f"unpool{block}"
        for k, width in enumerate(outs[block], start=1):
            name = f"deconv{block}_{k}"
            net.conv(name, previous, name, cin, width, 3, 1, deconv=True)
            net.bn_relu(f"debn{block}_{k}", f"derelu{block}_{k}", name, width)
            previous, cin = name, width
    return previous, cin
