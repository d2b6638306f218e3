"""BVLC's FCN-8s caffemodel (DeconvNet's ensemble partner) as a Keras FCN-8s, original geometry.

Names and geometry are those of HyeonwooNoh/DeconvNet's model/FCN/fcn-8s-pascal-deploy.prototxt
(the file its model/get_model.sh downloads as fcn-8s-pascal.caffemodel): conv1_1 with pad
100, VGG16's other convolutions (pad 1), fc6 (7x7, pad 0), fc7 (1x1), score-fr (1x1);
score2 (DECONVOLUTION 4x4 stride 2, with a bias), score-pool4 (1x1 on pool4), crop,
fuse (SUM), score4 (DECONVOLUTION 4x4 stride 2, `bias_term: false`), score-pool3, crop,
fuse, upsample (DECONVOLUTION 16x16 stride 8, `bias_term: false`) and a crop to the input.
The crops' offsets are not in that file (Caffe derives them from the net: 5, 9 and 31);
the Keras model derives the same from its geometry (`fcn8s_layers.crop_offsets`). The
later fcn.berkeleyvision.org names (score_fr, upscore2, score_pool4, upscore_pool4,
score_pool3, upscore8) are accepted too.
"""

from __future__ import annotations

from keras_deconvnet.models import vgg16_encoder
from keras_deconvnet.models.caffe.caffe_net import CaffeNet
from keras_deconvnet.models.caffe.layouts import conv_geometry, pooling_problems
from keras_deconvnet.models.caffe.weight_mapping import (
    CaffeMappingError,
    Conv,
    WeightPlan,
    blob_shape,
    encoder_specs,
    missing_layers,
    plan_weights,
)

DEPTHS = vgg16_encoder.VGG16_BLOCK_DEPTHS
ORIGINAL_PADDING = 100
# Caffe name -> later (fcn.berkeleyvision.org) name, and the Keras layer.
HEAD = (
    ("score-fr", "score_fr", "score_fr"),
    ("score2", "upscore2", "upscore2"),
    ("score-pool4", "score_pool4", "score_pool4"),
    ("score4", "upscore_pool4", "upscore_pool4"),
    ("score-pool3", "score_pool3", "score_pool3"),
    ("upsample", "upscore8", "upscore8"),
)
_DECONVOLUTIONS = ("score2", "score4", "upsample")


def fcn8s_specs(input_padding: int = ORIGINAL_PADDING, block_depths=DEPTHS) -> list[Conv]:
    """The Caffe -> Keras layer list of FCN-8s.

    Example:

    >>> [(s.caffe, s.keras) for s in fcn8s_specs()][-1]
    ('upsample', 'upscore8')
    """
    specs = encoder_specs(block_depths, first_pad=input_padding)
    specs += [Conv("fc6", "fc6"), Conv("fc7", "fc7")]
    for caffe, alias, keras_name in HEAD:
        kind = "deconv" if caffe in _DECONVOLUTIONS else "conv"
        specs.append(Conv(caffe, keras_name, kind=kind, on_task=True, aliases=(alias,)))
    return specs


def infer_fcn8s_config(net: CaffeNet) -> tuple[dict, int]:
    """The `FCN8sBackbone` config (original geometry) and class count of the file.

    Raises:
        CaffeMappingError: layers needed to read the widths are missing, or conv1_1 is
            not padded (only the original, padded geometry has a Caffe equivalent).
    """
    names = [f"conv{b}_1" for b in range(1, len(DEPTHS) + 1)] + ["fc6", ("score-fr", "score_fr")]
    missing = missing_layers(net, names)
    if missing:
        raise CaffeMappingError(
            f"{net.path}: not an FCN-8s caffemodel: no layer {', '.join(missing[:6])} with "
            "weights (it needs conv1_1 ... conv5_3, fc6, fc7, score-fr, score2, "
            "score-pool4, score4, score-pool3 and upsample).")
    conv1 = next(layer for layer in net.layers_named("conv1_1") if layer.blobs)
    geometry = conv_geometry(conv1)
    padding = ORIGINAL_PADDING if geometry is None else int(geometry["pad"])
    if padding < 1:
        raise CaffeMappingError(
            f"{net.path}: layer 'conv1_1' has pad {padding}; FCN-8s converts in its "
            f"original geometry, conv1_1 padded (by {ORIGINAL_PADDING}).")
    fc6 = blob_shape(net, "fc6")
    if len(fc6) != 4 or fc6[2] != fc6[3]:
        raise CaffeMappingError(f"{net.path}: layer 'fc6' has a weight of shape {fc6}; "
                                "expected (units, channels, k, k)")
    config = {
        "block_filters": tuple(int(blob_shape(net, f"conv{b}_1")[0])
                               for b in range(1, len(DEPTHS) + 1)),
        "block_depths": DEPTHS,
        "fc_units": int(fc6[0]),
        "fc_kernel_size": int(fc6[2]),
        "use_batch_norm": False,
        "input_padding": padding,
        "image_shape": (None, None, 3),
    }
    return config, int(blob_shape(net, "score-fr", ("score_fr",))[0])


def _structure_problems(net: CaffeNet, segmenter) -> tuple[list[str], list[str]]:
    """Poolings, fusions and (where the file records them) crop offsets."""
    from keras_deconvnet.models.fcn8s import crop_offsets

    backbone = segmenter.backbone
    problems, notes = [], []
    for block in range(1, len(backbone.block_filters) + 1):
        problems += pooling_problems(net, block, "FCN-8s")
    for layer in net.layers:
        if layer.type_name in ("ELTWISE", "Eltwise"):
            operation = layer.params.get("eltwise_param", {}).get("operation", 1)
            if operation != 1:
                problems.append(f"layer {layer.name!r} fuses with operation {operation}, "
                                "not SUM")
    offsets = crop_offsets(backbone.input_padding, backbone.fc_kernel_size,
                           block_depths=backbone.block_depths)
    # Which crop is which: the top of the layer whose output it crops.
    sources = {}
    for (caffe, alias, _), offset in zip(
            (HEAD[2], HEAD[4], HEAD[5]), offsets):
        for name in (caffe, alias):
            for layer in net.layers_named(name):
                sources.update({top: (name, offset) for top in layer.tops})
    stored = False
    for layer in net.layers:
        if layer.type_name not in ("CROP", "Crop") or not layer.bottoms:
            continue
        params = layer.params.get("crop_param")
        if not params or "offset" not in params or layer.bottoms[0] not in sources:
            continue
        stored = True
        source, offset = sources[layer.bottoms[0]]
        got = tuple(params["offset"])
        if any(o != offset for o in got) or params.get("axis", 2) != 2:
            problems.append(f"crop layer {layer.name!r} (of {source!r}) has offset {got} on "
                            f"axis {params.get('axis', 2)}; the Keras geometry crops at "
                            f"{offset} on height and width")
    if not stored:
        notes.append(f"Crop offsets {offsets} derived from the geometry (conv1_1 pad "
                     f"{backbone.input_padding}); the file does not store them.")
    return problems, notes


def plan_fcn8s(net: CaffeNet, segmenter) -> WeightPlan:
    """The checked-later plan that loads an FCN-8s caffemodel into `segmenter`."""
    backbone = segmenter.backbone
    if not backbone.input_padding:
        raise ValueError(
            "Caffe's FCN-8s needs the original geometry: an FCN8sBackbone with "
            f"input_padding={ORIGINAL_PADDING} (e.g. the 'fcn8s_vgg16_voc' configuration).")
    specs = fcn8s_specs(backbone.input_padding, tuple(backbone.block_depths))
    plan = plan_weights(net, segmenter, specs)
    problems, notes = _structure_problems(net, segmenter)
    plan.problems.extend(problems)
    plan.notes.extend(notes)
    return plan


def build_fcn8s(net: CaffeNet, class_names=None, palette=None):
    """An untrained `FCN8sImageSegmenter` shaped like the file, original geometry."""
    from keras_deconvnet.models.fcn8s import FCN8sBackbone, FCN8sImageSegmenter

    config, num_classes = infer_fcn8s_config(net)
    return FCN8sImageSegmenter.from_backbone(
        FCN8sBackbone(**config), num_classes, class_names=class_names, palette=palette
    )


def convert_fcn8s(path, *, progress: bool = False):
    """Converts BVLC's `fcn-8s-pascal.caffemodel` into an `FCN8sImageSegmenter`.

    The model keeps the original geometry (conv1_1 padded by 100, fc6 unpadded,
    crops at 5, 9 and 31) and takes any input size; conv1_1's BGR channels are
    reversed for our RGB preprocessor, which subtracts the same Caffe mean.

    Args:
        path: the `.caffemodel` file.
        progress: show a progress bar over the layers.

    Returns:
        An `FCN8sImageSegmenter` returning logits, VOC class names for 21 classes.

    Raises:
        CaffeModelError: the file is unreadable (truncated, foreign).
        CaffeMappingError: a layer is missing, unexpected or misshapen (nothing is
            loaded; the message names the layers).

    Example:

    >>> segmenter = convert_fcn8s("fcn-8s-pascal.caffemodel")  # doctest: +SKIP
    >>> segmenter.backbone.input_padding  # doctest: +SKIP
    100
    """
    from keras_deconvnet.models.caffe.convert import convert_caffemodel

    return convert_caffemodel(path, "fcn8s", progress=progress).segmenter
