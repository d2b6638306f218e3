"""Synthetic layer lists of FCN-8s and VGG16 with the real files' names, and file variants.

Like the oracle's `deconvnet_layers`, written from the authors' prototxts
(model/FCN/fcn-8s-pascal-deploy.prototxt; VGG16 as training/001_stage_1 loads it), not
from keras_deconvnet: CROP offsets come from the oracle's own `crop_offset`.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import numpy as np
from models.caffe.caffe_oracle import crop_offset

DEPTHS = (2, 2, 3, 3, 3)


def _maker(rng: np.random.Generator, constant: float | None):
    def make(shape: tuple[int, ...], scale: float) -> np.ndarray:
        if constant is not None:
            return np.broadcast_to(np.float32(constant), shape)
        return (rng.standard_normal(shape) * scale).astype(np.float32)

    return make


def _vgg_encoder(make, widths, first_pad: int, masks: bool) -> list[dict[str, Any]]:
    layers: list[dict[str, Any]] = []
    previous, cin = "data", 3
    for block, (width, depth) in enumerate(zip(widths, DEPTHS, strict=True), start=1):
        for k in range(1, depth + 1):
            name = f"conv{block}_{k}"
            pad = first_pad if (block, k) == (1, 1) else 1
            layers.append({
                "name": name, "type": "CONVOLUTION", "bottoms": [previous], "tops": [name],
                "blobs": [make((width, cin, 3, 3), np.sqrt(2.0 / (9 * cin))),
                          make((1, 1, 1, width), 0.1)],
                "params": {"convolution_param": {"num_output": width, "pad": pad,
                                                 "kernel_size": 3}}})
            layers.append({"name": f"relu{block}_{k}", "type": "RELU", "bottoms": [name],
                           "tops": [name]})
            previous, cin = name, width
        tops = [f"pool{block}", f"pool{block}_mask"] if masks else [f"pool{block}"]
        layers.append({"name": f"pool{block}", "type": "POOLING", "bottoms": [previous],
                       "tops": tops, "params": {"pooling_param": {
                           "pool": 0, "kernel_size": 2, "stride": 2}}})
        previous = f"pool{block}"
    return layers


def _fc(make, name: str, bottom: str, cin: int, cout: int, kernel: int,
        inner_product: bool) -> list[dict[str, Any]]:
    fan_in = cin * kernel * kernel
    weight = make((cout, cin, kernel, kernel), np.sqrt(2.0 / fan_in))
    layer = {"name": name, "type": "CONVOLUTION", "bottoms": [bottom], "tops": [name],
             "blobs": [weight, make((1, 1, 1, cout), 0.1)],
             "params": {"convolution_param": {"num_output": cout, "kernel_size": kernel}}}
    if inner_product:
        # The original VGG16 file: (1, 1, out, in * k * k) blobs, INNER_PRODUCT layers.
        layer["type"] = "INNER_PRODUCT"
        layer["blobs"][0] = weight.reshape(1, 1, cout, fan_in)
        layer["params"] = {"inner_product_param": {"num_output": cout}}
    return [layer]


def vgg16_layers(
    rng: np.random.Generator,
    *,
    widths: Sequence[int] = (64, 128, 256, 512, 512),
    fc: int = 4096,
    classes: int = 1000,
    inner_product: bool = False,
    constant: float | None = None,
) -> list[dict[str, Any]]:
    """VGG_ILSVRC_16_layers_conv: conv1_1 ... conv5_3 (pad 1), fc6 7x7, fc7, fc8, dropout."""
    make = _maker(rng, constant)
    layers = _vgg_encoder(make, widths, first_pad=1, masks=False)
    previous, cin, kernel = "pool5", widths[-1], 7
    for name, cout in (("fc6", fc), ("fc7", fc), ("fc8", classes)):
        layers += _fc(make, name, previous, cin, cout, kernel, inner_product)
        if name != "fc8":
            number = name[2:]
            layers.append({"name": f"relu{number}", "type": "RELU", "bottoms": [name],
                           "tops": [name]})
            layers.append({"name": f"drop{number}", "type": "DROPOUT", "bottoms": [name],
                           "tops": [name], "params": {"dropout_param": {"dropout_ratio": 0.5}}})
        previous, cin, kernel = name, cout, 1
    layers.append({"name": "prob", "type": "SOFTMAX", "bottoms": ["fc8"], "tops": ["prob"]})
    return layers


def fcn8s_offsets(first_pad: int = 100, fc_kernel: int = 7) -> tuple[int, int, int]:
    """The three CROP offsets of FCN-8s, from the oracle's coordinate maps (5, 9, 31)."""
    conv3, pool = ("conv", 3, 1, 1), ("pool", 2, 2, 0)
    blocks = []
    for block, depth in enumerate(DEPTHS, 1):
        convs = [("conv", 3, 1, first_pad) if block == 1 and k == 0 else conv3
                 for k in range(depth)]
        blocks.append([*convs, pool])
    to_pool3 = [layer for block in blocks[:3] for layer in block]
    score2 = [*blocks[4], ("conv", fc_kernel, 1, 0), ("conv", 1, 1, 0), ("conv", 1, 1, 0),
              ("deconv", 4, 2, 0)]
    fuse_up = [("identity", 1, 1, 0), ("deconv", 4, 2, 0)]
    score_pool = [("conv", 1, 1, 0)]
    pool4 = crop_offset(score_pool, score2)
    pool3 = crop_offset(score_pool, [*blocks[3], *score2, *fuse_up])
    final = crop_offset([*to_pool3, *blocks[3], *score2, *fuse_up, ("identity", 1, 1, 0),
                         ("deconv", 16, 8, 0)], [])
    return pool4, pool3, final


def fcn8s_layers(
    rng: np.random.Generator,
    *,
    widths: Sequence[int] = (64, 128, 256, 512, 512),
    fc: int = 4096,
    classes: int = 21,
    constant: float | None = None,
) -> list[dict[str, Any]]:
    """fcn-8s-pascal: the deploy prototxt's layers, names and bias terms, any width."""
    make = _maker(rng, constant)
    layers = _vgg_encoder(make, widths, first_pad=100, masks=False)
    previous, cin, kernel = "pool5", widths[-1], 7
    for name in ("fc6", "fc7"):
        layers += _fc(make, name, previous, cin, fc, kernel, False)
        number = name[2:]
        layers.append({"name": f"relu{number}", "type": "RELU", "bottoms": [name],
                       "tops": [name]})
        layers.append({"name": f"drop{number}", "type": "DROPOUT", "bottoms": [name],
                       "tops": [name], "params": {"dropout_param": {"dropout_ratio": 0.5}}})
        previous, cin, kernel = name, fc, 1
    pool4, pool3, final = fcn8s_offsets()

    def score(name, bottom, top, cin):
        return {"name": name, "type": "CONVOLUTION", "bottoms": [bottom], "tops": [top],
                "blobs": [make((classes, cin, 1, 1), np.sqrt(1.0 / cin)),
                          make((1, 1, 1, classes), 0.1)],
                "params": {"convolution_param": {"num_output": classes, "kernel_size": 1}}}

    def deconv(name, bottom, top, kernel, stride, bias):
        blobs = [make((classes, classes, kernel, kernel), 1.0 / kernel)]
        params = {"num_output": classes, "kernel_size": kernel, "stride": stride}
        if bias:
            blobs.append(make((1, 1, 1, classes), 0.1))
        else:
            params["bias_term"] = False
        return {"name": name, "type": "DECONVOLUTION", "bottoms": [bottom], "tops": [top],
                "blobs": blobs, "params": {"convolution_param": params}}

    def crop(bottom, reference, top, offset):
        return {"name": "crop", "type": "CROP", "bottoms": [bottom, reference], "tops": [top],
                "crop_offset": (offset, offset)}

    def fuse(a, b, top):
        return {"name": "fuse", "type": "ELTWISE", "bottoms": [a, b], "tops": [top],
                "params": {"eltwise_param": {"operation": 1}}}

    layers += [
        score("score-fr", "fc7", "score", fc),
        deconv("score2", "score", "score2", 4, 2, bias=True),
        score("score-pool4", "pool4", "score-pool4", widths[3]),
        crop("score-pool4", "score2", "score-pool4c", pool4),
        fuse("score2", "score-pool4c", "score-fused"),
        deconv("score4", "score-fused", "score4", 4, 2, bias=False),
        score("score-pool3", "pool3", "score-pool3", widths[2]),
        crop("score-pool3", "score4", "score-pool3c", pool3),
        fuse("score4", "score-pool3c", "score-final"),
        deconv("upsample", "score-final", "bigscore", 16, 8, bias=False),
        crop("bigscore", "data", "upscore", final),
    ]
    return layers


def as_folding_script_saved_it(layers: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """DeconvNet_trainval_inference as the authors' BN-folding script wrote it.

    BN_make_INFERENCE_script.py saved the folded blobs from
    DeconvNet_make_bn_layer_testable.prototxt, whose BN layers have no `bn_mode` (LEARN
    by default) and two more tops, `<bn>-mean` and `<bn>-var`: the blobs are the folded
    scale and shift all the same.
    """
    out = []
    for layer in layers:
        layer = dict(layer)
        if layer["type"] == "BN":
            layer["params"] = {}
            layer["tops"] = [layer["tops"][0], f"{layer['name']}-mean", f"{layer['name']}-var"]
        out.append(layer)
    return out


def renamed(layers: Sequence[dict[str, Any]], old: str, new: str) -> list[dict[str, Any]]:
    """A copy with the layer `old` renamed `new` (blobs shared, not copied)."""
    out = [copy.copy(layer) for layer in layers]
    for layer in out:
        if layer["name"] == old:
            layer["name"] = new
    return out


def caffe_input(images_rgb: np.ndarray, mean_bgr: Sequence[float]) -> np.ndarray:
    """Caffe's input for RGB uint8 images: BGR, mean subtracted, NCHW, float64."""
    bgr = np.asarray(images_rgb, np.float64)[..., ::-1] - np.asarray(mean_bgr, np.float64)
    return bgr.transpose(0, 3, 1, 2)


def oracle_scores(blobs: dict[str, np.ndarray], top: str) -> np.ndarray:
    """An oracle top as NHWC, to compare with Keras."""
    return blobs[top].transpose(0, 2, 3, 1)
