"""Named FCN-8s configurations (`FCN8sBackbone` arguments), untrained, as DeconvNet's."""

from keras_deconvnet.models.deconvnet.deconvnet_presets import EDGE_BLOCKS, EDGE_SMALL_BLOCKS
from keras_deconvnet.models.preset_utils import named_config
from keras_deconvnet.models.vgg16_encoder import VGG16_BLOCKS

FCN8S_PRESETS = {
    "fcn8s_vgg16_voc": named_config(
        "FCN-8s as BVLC's fcn-8s-pascal, DeconvNet's ensemble partner: VGG16, fc6 "
        "7x7/4096, fc7 1x1/4096, the original geometry (conv1_1 padded by 100, crops at "
        "5, 9, 31), 21 VOC classes. Untrained: convert `fcn-8s-pascal.caffemodel` with "
        "`deconvnet convert-caffe`.",
        "fcn8s", VGG16_BLOCKS, 4096, 7, (None, None, 3), params=134_489_780,
        use_batch_norm=False, input_padding=100,
    ),
    "fcn8s_edge": named_config(
        "FCN-8s with deconvnet_edge's widths, 'same' geometry.",
        "fcn8s", EDGE_BLOCKS, 512, 7, (None, None, 3),
        use_batch_norm=False, input_padding=0,
    ),
    "fcn8s_edge_small": named_config(
        "FCN-8s with deconvnet_edge_small's widths (fc6 3x3/256), 'same' geometry, "
        "BatchNorm so it trains from scratch: the quickstart's partner.",
        "fcn8s", EDGE_SMALL_BLOCKS, 256, 3, (None, None, 3),
        use_batch_norm=True, input_padding=0,
    ),
}
