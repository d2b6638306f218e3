"""Named FCN-8s configurations (`FCN8sBackbone` arguments), untrained, as DeconvNet's."""

FCN8S_PRESETS = {
    "fcn8s_vgg16_voc": {
        "metadata": {
            "description": (
                "FCN-8s as BVLC's fcn-8s-pascal, DeconvNet's ensemble partner: VGG16, "
                "fc6 7x7/4096, fc7 1x1/4096, the original geometry (conv1_1 padded by "
                "100, crops at 5, 9, 31), 21 VOC classes. Untrained: convert "
                "`fcn-8s-pascal.caffemodel` with `deconvnet convert-caffe`."
            ),
            "path": "fcn8s",
        },
        "num_classes": 21,
        "config": {
            "block_filters": (64, 128, 256, 512, 512),
            "block_depths": (2, 2, 3, 3, 3),
            "fc_units": 4096,
            "fc_kernel_size": 7,
            "use_batch_norm": False,
            "input_padding": 100,
            "image_shape": (None, None, 3),
        },
    },
    "fcn8s_edge": {
        "metadata": {
            "description": "FCN-8s with deconvnet_edge's widths, 'same' geometry.",
            "path": "fcn8s",
        },
        "num_classes": 21,
        "config": {
            "block_filters": (16, 32, 64, 128, 128),
            "block_depths": (2, 2, 3, 3, 3),
            "fc_units": 512,
            "fc_kernel_size": 7,
            "use_batch_norm": False,
            "input_padding": 0,
            "image_shape": (None, None, 3),
        },
    },
    "fcn8s_edge_small": {
        "metadata": {
            "description": (
                "FCN-8s with deconvnet_edge_small's widths (fc6 3x3/256), 'same' "
                "geometry, BatchNorm so it trains from scratch: the quickstart's partner."
            ),
            "path": "fcn8s",
        },
        "num_classes": 21,
        "config": {
            "block_filters": (8, 16, 32, 64, 64),
            "block_depths": (1, 1, 2, 2, 2),
            "fc_units": 256,
            "fc_kernel_size": 3,
            "use_batch_norm": True,
            "input_padding": 0,
            "image_shape": (None, None, 3),
        },
    },
}
