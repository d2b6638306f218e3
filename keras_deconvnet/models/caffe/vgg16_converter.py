"""VGG_ILSVRC_16_layers_conv.caffemodel (VGG16, fc6/fc7 as convolutions) as a training start.

The paper's stage-1 training starts from this file (training/001_stage_1/start_train.sh
passes it as `-weights`): VGG16's conv1_1 ... conv5_3 and fc6 (7x7) and fc7 (1x1) as
convolutions. Converted, it initialises the encoder and fc6/fc7 of a DeconvNet (whose
BatchNorm layers, decoder and class layer stay freshly initialised) or of an FCN-8s in
the original geometry (whose score layers keep their zero / bilinear initialisation).
The original VGG_ILSVRC_16_layers.caffemodel, with fc6/fc7 as INNER_PRODUCT, converts
the same way; fc8 (ImageNet's 1000 classes) is not used.
"""

from __future__ import annotations

from keras_deconvnet.models import vgg16_encoder
from keras_deconvnet.models.caffe.caffe_net import CaffeNet
from keras_deconvnet.models.caffe.weight_mapping import (
    INNER_PRODUCT_TYPES,
    CaffeMappingError,
    Conv,
    WeightPlan,
    blob_shape,
    encoder_specs,
    missing_layers,
    plan_weights,
)

DEPTHS = vgg16_encoder.VGG16_BLOCK_DEPTHS
TARGETS = ("deconvnet", "fcn8s")
IGNORED = ("fc8",)


def vgg16_specs(block_depths=DEPTHS) -> list[Conv]:
    """The Caffe -> Keras layer list of VGG16's convolutions, fc6 and fc7.

    conv1_1's pad is not checked: it belongs to the network being initialised
    (DeconvNet pads 1, FCN-8s 100), not to the weights.

    Example:

    >>> len(vgg16_specs())
    15
    """
    specs = encoder_specs(block_depths, first_pad=False)
    specs += [Conv("fc6", "fc6", inner_product=True), Conv("fc7", "fc7", inner_product=True)]
    return specs


def infer_vgg16_config(net: CaffeNet, target: str) -> dict:
    """The backbone config of `target` with the file's widths (VGG16's for the real file).

    Raises:
        CaffeMappingError: layers needed to read the widths are missing.
        ValueError: an unknown `target`.
    """
    if target not in TARGETS:
        raise ValueError(f"`target` must be one of {TARGETS}. Received: target={target!r}")
    names = [f"conv{b}_1" for b in range(1, len(DEPTHS) + 1)] + ["fc6", "fc7"]
    missing = missing_layers(net, names)
    if missing:
        raise CaffeMappingError(
            f"{net.path}: not a VGG16 caffemodel: no layer {', '.join(missing[:6])} with "
            "weights (it needs conv1_1 ... conv5_3, fc6 and fc7).")
    widths = tuple(int(blob_shape(net, f"conv{b}_1")[0]) for b in range(1, len(DEPTHS) + 1))
    fc6 = next(layer for layer in net.layers_named("fc6") if layer.blobs)
    shape = fc6.blob_shapes[0]
    if fc6.type_name in INNER_PRODUCT_TYPES:
        # (units, channels * k * k), legacy files padding it to (1, 1, units, ...).
        units, fan_in = (shape[-2], shape[-1]) if len(shape) >= 2 else (0, 0)
        kernel = int(round((fan_in / widths[-1]) ** 0.5))
        if units < 1 or kernel * kernel * widths[-1] != fan_in:
            raise CaffeMappingError(
                f"{net.path}: INNER_PRODUCT layer 'fc6' has a weight of shape {shape}, "
                f"not (units, {widths[-1]} * k * k)")
    elif len(shape) == 4 and shape[2] == shape[3]:
        units, kernel = shape[0], shape[2]
    else:
        raise CaffeMappingError(f"{net.path}: layer 'fc6' has a weight of shape {shape}; "
                                "expected (units, channels, k, k)")
    config = {"block_filters": widths, "block_depths": DEPTHS, "fc_units": int(units),
              "fc_kernel_size": int(kernel)}
    if target == "deconvnet":
        config.update(use_batch_norm=True, image_shape=(224, 224, 3))
    else:
        config.update(use_batch_norm=False, input_padding=100, image_shape=(None, None, 3))
    return config


def plan_vgg16(net: CaffeNet, segmenter) -> WeightPlan:
    """The checked-later plan that loads VGG16's weights into a segmenter's encoder."""
    plan = plan_weights(net, segmenter, vgg16_specs(tuple(segmenter.backbone.block_depths)),
                        ignore=IGNORED)
    ignored = [name for name in IGNORED if any(layer.blobs for layer in net.layers_named(name))]
    if ignored:
        plan.notes.append(f"Not used: {', '.join(ignored)} (ImageNet's classifier).")
    plan.notes.append("Initialised: the encoder, fc6 and fc7. The rest (BatchNorm, decoder, "
                      "class layers) is untrained: train it, e.g. `deconvnet train --model "
                      "PRESET`.")
    return plan


def build_vgg16_target(net: CaffeNet, target: str = "deconvnet", num_classes: int = 21,
                       class_names=None, palette=None):
    """An untrained segmenter of `target` with the file's encoder widths."""
    from keras_deconvnet.models.deconvnet import DeconvNetBackbone, DeconvNetImageSegmenter
    from keras_deconvnet.models.fcn8s import FCN8sBackbone, FCN8sImageSegmenter

    config = infer_vgg16_config(net, target)
    backbone_cls, task_cls = ((DeconvNetBackbone, DeconvNetImageSegmenter)
                              if target == "deconvnet" else
                              (FCN8sBackbone, FCN8sImageSegmenter))
    backbone = backbone_cls(**config)
    return task_cls(backbone=backbone, num_classes=num_classes,
                    preprocessor=task_cls.default_preprocessor(backbone),
                    class_names=class_names, palette=palette)


def convert_vgg16(path, target: str = "deconvnet", *, num_classes: int = 21,
                  progress: bool = False):
    """A DeconvNet or FCN-8s initialised from a Caffe VGG16 file, ready to train.

    As the paper's training: the encoder (conv1_1's BGR channels reversed for RGB
    input) and fc6/fc7 come from the file; everything else keeps its initialisation.
    Save it (`save_to_preset`) and continue with `deconvnet train --model PRESET`.

    Args:
        path: VGG_ILSVRC_16_layers_conv.caffemodel (or the original VGG16 file).
        target: `"deconvnet"` (the `deconvnet_vgg16_voc` configuration) or `"fcn8s"`
            (`fcn8s_vgg16_voc`, the original geometry).
        num_classes: classes of the untrained class layer. Defaults to `21` (VOC).
        progress: show a progress bar over the layers.

    Returns:
        A `DeconvNetImageSegmenter` or `FCN8sImageSegmenter`.

    Raises:
        CaffeModelError: the file is unreadable.
        CaffeMappingError: a layer is missing, unexpected or misshapen (nothing loaded).

    Example:

    >>> segmenter = convert_vgg16(  # doctest: +SKIP
    ...     "VGG_ILSVRC_16_layers_conv.caffemodel", target="deconvnet")
    >>> segmenter.save_to_preset("vgg16_init")  # doctest: +SKIP
    """
    from keras_deconvnet.models.caffe.convert import convert_caffemodel

    return convert_caffemodel(path, "vgg16", target=target, num_classes=num_classes,
                              progress=progress).segmenter
