"""Named DeconvNet configurations: the paper's network and smaller ones for the edge.

Plain data, as keras-hub's `*_presets.py`: `{name: {"metadata", "config",
"num_classes"}}`. `config` holds `DeconvNetBackbone` arguments; the names build
untrained models (`DeconvNetImageSegmenter.from_preset(name)`): trained weights come
from a preset directory, e.g. one `deconvnet convert-caffe` writes from the authors'
released Caffe model.
"""

DECONVNET_PRESETS = {
    "deconvnet_vgg16_voc": {
        "metadata": {
            "description": (
                "The paper's DeconvNet: VGG16-BN encoder, fc6 7x7/4096, fc7 1x1/4096, "
                "mirrored decoder, 21 PASCAL VOC classes, 224x224 input. Untrained: "
                "load VGG16 weights with `load_vgg16_weights`, or convert the "
                "authors' trained Caffe model with `deconvnet convert-caffe`."
            ),
            "params": 251_839_061,
            "path": "deconvnet",
        },
        "num_classes": 21,
        "config": {
            "block_filters": (64, 128, 256, 512, 512),
            "block_depths": (2, 2, 3, 3, 3),
            "fc_units": 4096,
            "fc_kernel_size": 7,
            "use_batch_norm": True,
            "image_shape": (224, 224, 3),
        },
    },
    "deconvnet_edge": {
        "metadata": {
            "description": (
                "Edge DeconvNet for phones and edge GPUs: 1/4 of VGG16's widths, "
                "fc6 7x7/512, fc7 1x1/512, 224x224 input; exports to builtin-only "
                "TFLite."
            ),
            "params": 8_542_117,
            "path": "deconvnet",
        },
        "num_classes": 21,
        "config": {
            "block_filters": (16, 32, 64, 128, 128),
            "block_depths": (2, 2, 3, 3, 3),
            "fc_units": 512,
            "fc_kernel_size": 7,
            "use_batch_norm": True,
            "image_shape": (224, 224, 3),
        },
    },
    "deconvnet_edge_small": {
        "metadata": {
            "description": (
                "The smallest DeconvNet: 1/8 widths, one convolution per block, "
                "fc6 3x3/256, any input of 96 pixels or more; for CPU demos and "
                "microcontroller-class NPUs."
            ),
            "params": 655_469,
            "path": "deconvnet",
        },
        "num_classes": 21,
        "config": {
            "block_filters": (8, 16, 32, 64, 64),
            "block_depths": (1, 1, 2, 2, 2),
            "fc_units": 256,
            "fc_kernel_size": 3,
            "use_batch_norm": True,
            "image_shape": (None, None, 3),
        },
    },
}
