"""Named DeconvNet configurations: the paper's network and smaller ones for the edge.

Plain data, as keras-hub's `*_presets.py`: `{name: {"metadata", "config",
"num_classes"}}`. `config` holds `DeconvNetBackbone` arguments; the names build
untrained models (`DeconvNetImageSegmenter.from_preset(name)`): trained weights come
from a preset directory, e.g. one `deconvnet convert-caffe` writes from the authors'
released Caffe model.
"""

from keras_deconvnet.models.preset_utils import named_config
from keras_deconvnet.models.vgg16_encoder import VGG16_BLOCKS, minimum_input_size

EDGE_BLOCKS = ((16, 32, 64, 128, 128), (2, 2, 3, 3, 3))
EDGE_SMALL_BLOCKS = ((8, 16, 32, 64, 64), (1, 1, 2, 2, 2))

DECONVNET_PRESETS = {
    "deconvnet_vgg16_voc": named_config(
        "The paper's DeconvNet: VGG16-BN encoder, fc6 7x7/4096, fc7 1x1/4096, mirrored "
        "decoder, 21 PASCAL VOC classes, 224x224 input. Untrained: load VGG16 weights "
        "with `load_vgg16_weights`, or convert the authors' trained Caffe model with "
        "`deconvnet convert-caffe`.",
        "deconvnet", VGG16_BLOCKS, 4096, 7, (224, 224, 3), params=251_839_061,
        # The fork's BN epsilon (HyeonwooNoh/caffe bn_layer.cpp `var_eps_`); trains
        # stably (the README's training table says what was measured).
        batch_norm_epsilon=1e-9,
    ),
    "deconvnet_edge": named_config(
        "Edge DeconvNet for phones and edge GPUs: 1/4 of VGG16's widths, fc6 7x7/512, "
        "fc7 1x1/512, 224x224 input; exports to builtin-only TFLite.",
        "deconvnet", EDGE_BLOCKS, 512, 7, (224, 224, 3), params=8_542_117,
    ),
    "deconvnet_edge_small": named_config(
        "The smallest DeconvNet: 1/8 widths, one convolution per block, fc6 3x3/256, "
        f"any input of {minimum_input_size(len(EDGE_SMALL_BLOCKS[0]), 3)} pixels or more; "
        "for CPU demos and microcontroller-class NPUs.",
        "deconvnet", EDGE_SMALL_BLOCKS, 256, 3, (None, None, 3), params=655_469,
    ),
}
