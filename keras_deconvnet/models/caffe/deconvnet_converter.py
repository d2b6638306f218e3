"""The authors' DeconvNet caffemodels (trainval inference, stage 1, stage 2) as a Keras DeconvNet.

Layer names and geometry are those of HyeonwooNoh/DeconvNet's
model/DeconvNet/DeconvNet_inference_deploy.prototxt and training/00*_stage_*/ prototxts:
conv1_1 ... conv5_3 (3x3 pad 1) each with a BN (bn1_1 ...) and ReLU; pool1 ... pool5
(MAX 2x2/2, with masks); fc6 (7x7 pad 0), bnfc6, fc7 (1x1), bnfc7; fc6-deconv
(DECONVOLUTION 7x7), fc6-deconv-bn; unpool5 ... unpool1 (unpool_size 14, 28, 56, 112,
224); deconv5_1 ... deconv1_2 (DECONVOLUTION 3x3 pad 1) each with a BN (debn5_1 ...);
seg-score-voc (1x1, 21 outputs). Every convolution and deconvolution has a bias.
"""

from __future__ import annotations

import warnings

import numpy as np

from keras_deconvnet.models import vgg16_encoder
from keras_deconvnet.models.caffe.caffe_net import CaffeNet
from keras_deconvnet.models.caffe.layouts import pooling_problems
from keras_deconvnet.models.caffe.weight_mapping import (
    BN_FORMS,
    BN_INFERENCE,
    BN_TYPES,
    CAFFE_BN_EPSILON,
    BatchNorm,
    CaffeMappingError,
    Conv,
    WeightPlan,
    blob_shape,
    missing_layers,
    plan_weights,
)

DEPTHS = vgg16_encoder.VGG16_BLOCK_DEPTHS
IMAGE_SIZE = 224  # the deploy prototxt's input and the unpool sizes' origin

RECOMPUTE_NOTE = (
    "The file's BN layers hold gamma and beta only (the fork's BN normalised with each "
    "batch's statistics and kept no population statistics): the model normalises with "
    "mean 0 and variance 1 until you recompute them, e.g. "
    "`keras_deconvnet.training.recompute_batchnorm_statistics(segmenter, dataset)` over "
    "about 500 training batches (the authors used 501 batches of 28 proposal crops), "
    "and save the preset again."
)


def deconvnet_specs(block_depths=DEPTHS) -> list[Conv | BatchNorm]:
    """The Caffe -> Keras layer list of DeconvNet, in the network's order.

    Example:

    >>> [s.caffe for s in deconvnet_specs()][:3]
    ['conv1_1', 'bn1_1', 'conv1_2']
    """
    specs: list[Conv | BatchNorm] = []
    for block, depth in enumerate(block_depths, 1):
        for i in range(1, depth + 1):
            keras_name = f"block{block}_conv{i}"
            specs.append(Conv(f"conv{block}_{i}", keras_name,
                              bgr_input=(block, i) == (1, 1)))
            specs.append(BatchNorm(f"bn{block}_{i}", f"{keras_name}_bn"))
    specs += [
        Conv("fc6", "fc6"), BatchNorm("bnfc6", "fc6_bn"),
        Conv("fc7", "fc7"), BatchNorm("bnfc7", "fc7_bn"),
        Conv("fc6-deconv", "deconv_fc6", kind="deconv"),
        BatchNorm("fc6-deconv-bn", "deconv_fc6_bn"),
    ]
    for block in range(len(block_depths), 0, -1):
        for i in range(1, block_depths[block - 1] + 1):
            specs.append(Conv(f"deconv{block}_{i}", f"deconv{block}_{i}", kind="deconv_as_conv"))
            specs.append(BatchNorm(f"debn{block}_{i}", f"deconv{block}_{i}_bn"))
    specs.append(Conv("seg-score-voc", "score", on_task=True))
    return specs


def detect_bn_form(net: CaffeNet, bn: str = "auto") -> tuple[str, str]:
    """Whether the file's BN blobs are folded (scale, shift) or gamma and beta.

    The file alone does not say it in `bn_mode`: BN_make_INFERENCE_script.py saved
    DeconvNet_trainval_inference.caffemodel from DeconvNet_make_bn_layer_testable.prototxt,
    whose BN layers keep the default `bn_mode: LEARN` but output their batch mean and
    variance as two extra tops; the stage files, saved by the training solver, have BN
    layers with one top. So "auto" decides: any `bn_mode: INFERENCE` -> folded; BN
    layers with mean and variance tops -> folded; otherwise -> batch statistics.

    Args:
        net: the parsed file.
        bn: `"auto"`, `"folded"` or `"batch"` (the last two force the answer).

    Returns:
        `(form, reason)`, form `"folded"` or `"batch"`.

    Raises:
        ValueError: an unknown `bn`, or BN layers that disagree.
    """
    if bn not in BN_FORMS:
        raise ValueError(f"`bn` must be one of {BN_FORMS}. Received: bn={bn!r}")
    if bn != "auto":
        return bn, f"bn={bn!r} was requested"
    layers = [layer for layer in net.layers if layer.type_name in BN_TYPES and layer.blobs]
    if not layers:
        return "folded", "the file has no BN layers"
    inference = [layer.params.get("bn_param", {}).get("bn_mode", 0) == BN_INFERENCE
                 for layer in layers]
    with_stats = [len(layer.tops) >= 3 for layer in layers]
    for flags, what in ((inference, "bn_mode: INFERENCE"), (with_stats, "mean/variance tops")):
        if any(flags) and not all(flags):
            odd = [layer.name for layer, flag in zip(layers, flags) if not flag][:4]
            raise CaffeMappingError(
                f"{net.path}: the BN layers disagree: some have {what}, {odd} do not; "
                "pass bn='folded' or bn='batch' to say what their blobs are.")
    if all(inference):
        return "folded", "its BN layers say bn_mode: INFERENCE"
    if all(with_stats):
        return "folded", ("its BN layers output batch mean and variance tops, as the "
                          "authors' BN-folding script saved DeconvNet_trainval_inference")
    return "batch", ("its BN layers are in LEARN mode with one top, as the training "
                     "snapshots stage_1/stage_2_train_result")


def infer_deconvnet_config(net: CaffeNet) -> tuple[dict, int]:
    """The `DeconvNetBackbone` config and class count that the file's blobs imply.

    Widths come from the blob shapes (conv{b}_1, fc6, seg-score-voc), so reduced-width
    files convert too; the paper's file gives the `deconvnet_vgg16_voc` configuration.

    Raises:
        CaffeMappingError: layers needed to read the widths are missing.
    """
    names = [f"conv{b}_1" for b in range(1, len(DEPTHS) + 1)] + ["fc6", "seg-score-voc"]
    missing = missing_layers(net, names)
    if missing:
        raise CaffeMappingError(
            f"{net.path}: not a DeconvNet caffemodel: no layer {', '.join(missing[:6])} "
            "with weights (it needs conv1_1 ... conv5_3, fc6, fc7, fc6-deconv, "
            "deconv5_1 ... deconv1_2, their BN layers and seg-score-voc).")
    widths = tuple(int(blob_shape(net, f"conv{b}_1")[0]) for b in range(1, len(DEPTHS) + 1))
    fc6 = blob_shape(net, "fc6")
    if len(fc6) != 4 or fc6[2] != fc6[3]:
        raise CaffeMappingError(f"{net.path}: layer 'fc6' has a weight of shape {fc6}; "
                                "expected (units, channels, k, k)")
    config = {
        "block_filters": widths,
        "block_depths": DEPTHS,
        "fc_units": int(fc6[0]),
        "fc_kernel_size": int(fc6[2]),
        "use_batch_norm": True,
        "batch_norm_epsilon": CAFFE_BN_EPSILON,
        "image_shape": (IMAGE_SIZE, IMAGE_SIZE, 3),
    }
    return config, int(blob_shape(net, "seg-score-voc")[0])


def _structure_problems(net: CaffeNet, backbone) -> list[str]:
    """Pooling and unpooling parameters against the Keras geometry (2x2/2, sizes)."""
    problems = []
    height = backbone.image_shape[0]
    for block in range(1, len(backbone.block_filters) + 1):
        problems += pooling_problems(net, block, "DeconvNet")
        for unpool in net.layers_named(f"unpool{block}"):
            params = unpool.params.get("unpooling_param", {})
            size = params.get("unpool_size", params.get("unpool_h"))
            expected = None if height is None else height // 2 ** (block - 1)
            if size is not None and expected is not None and size != expected:
                problems.append(
                    f"layer {unpool.name!r} has unpool_size {size}; the {height}x{height} "
                    f"Keras model unpools block {block} to {expected}")
            if (params.get("kernel_size", 2), params.get("stride", 2)) != (2, 2):
                problems.append(f"layer {unpool.name!r} is not a 2x2 stride-2 unpooling")
            masks = [p.tops[1] for p in net.layers_named(f"pool{block}") if len(p.tops) > 1]
            if masks and len(unpool.bottoms) > 1 and unpool.bottoms[1] not in masks:
                problems.append(f"layer {unpool.name!r} takes the switches "
                                f"{unpool.bottoms[1]!r}, not pool{block}'s {masks[0]!r}")
    return problems


def plan_deconvnet(net: CaffeNet, segmenter, bn: str = "auto") -> tuple[WeightPlan, str]:
    """The checked-later plan that loads a DeconvNet caffemodel into `segmenter`.

    Returns:
        `(plan, bn_form)`; `plan.problems` lists what does not fit.
    """
    form, reason = detect_bn_form(net, bn)
    backbone = segmenter.backbone
    plan = plan_weights(net, segmenter, deconvnet_specs(tuple(backbone.block_depths)),
                        bn_form=form)
    plan.problems.extend(_structure_problems(net, backbone))
    if form == "batch":
        plan.notes.append(f"BN: gamma/beta ({reason}). {RECOMPUTE_NOTE}")
        if not np.isclose(backbone.batch_norm_epsilon, CAFFE_BN_EPSILON):
            plan.notes.append(
                f"The backbone's batch_norm_epsilon is {backbone.batch_norm_epsilon}; the "
                f"fork trained with {CAFFE_BN_EPSILON}.")
    else:
        plan.notes.append(f"BN: folded scale/shift, mapped exactly ({reason}).")
    return plan, form


def build_deconvnet(net: CaffeNet, class_names=None, palette=None):
    """An untrained `DeconvNetImageSegmenter` shaped like the file (VOC names for 21)."""
    from keras_deconvnet.models.deconvnet import DeconvNetBackbone, DeconvNetImageSegmenter

    config, num_classes = infer_deconvnet_config(net)
    return DeconvNetImageSegmenter.from_backbone(
        DeconvNetBackbone(**config), num_classes, class_names=class_names, palette=palette
    )


def convert_deconvnet(path, *, bn: str = "auto", progress: bool = False):
    """Converts one of the authors' DeconvNet caffemodels into a `DeconvNetImageSegmenter`.

    The widths come from the blobs (the paper's file gives `deconvnet_vgg16_voc` with
    `batch_norm_epsilon=1e-9`, the fork's); the input is RGB with the authors' mean
    subtracted by the preprocessor (conv1_1's BGR channels are reversed). The BN
    blobs of DeconvNet_trainval_inference.caffemodel are the folded scale and shift
    and load exactly; those of the stage_1/stage_2 training snapshots are gamma and
    beta, loaded with mean 0 and variance 1, and a `UserWarning` says that the
    population statistics must be recomputed
    (`keras_deconvnet.training.recompute_batchnorm_statistics`).

    Args:
        path: the `.caffemodel` file.
        bn: `"auto"` (default: see `detect_bn_form`), `"folded"` or `"batch"`.
        progress: show a progress bar over the layers.

    Returns:
        A `DeconvNetImageSegmenter` returning logits, VOC class names when the file has
        21 classes.

    Raises:
        CaffeModelError: the file is unreadable (truncated, foreign).
        CaffeMappingError: a layer is missing, unexpected or misshapen (nothing is
            loaded; the message names the layers).

    Example:

    >>> segmenter = convert_deconvnet(  # doctest: +SKIP
    ...     "DeconvNet_trainval_inference.caffemodel")
    >>> segmenter.count_params()  # doctest: +SKIP
    251839061
    """
    from keras_deconvnet.models.caffe.convert import convert_caffemodel

    conversion = convert_caffemodel(path, "deconvnet", bn=bn, progress=progress)
    if conversion.needs_batchnorm_statistics:
        warnings.warn(RECOMPUTE_NOTE, UserWarning, stacklevel=2)
    return conversion.segmenter
