"""Named DeconvNet configurations: the paper's network and smaller ones for the edge.

Plain data, as keras-hub's `*_presets.py`: `{name: {"metadata", "config"}}`, plus an
optional `"handle"` (a preset directory or hub handle with trained weights) that
`DeconvNet.from_preset(name)` then loads. `deconvnet.py` registers them.
"""

from __future__ import annotations

import copy

DECONVNET_PRESETS = {
    "deconvnet_vgg16_voc": {
        "metadata": {
            "description": (
                "The paper's DeconvNet: VGG16-BN encoder, fc6 7x7/4096, fc7 1x1/4096, "
                "mirrored decoder, 21 PASCAL VOC classes, 224x224 input. Untrained "
                "unless weights are given: `from_preset(name, weights='imagenet')` "
                "(VGG16 encoder) or a `.weights.h5` file."
            ),
            "params": 251_839_061,
            "path": "deconvnet",
        },
        "config": {
            "num_classes": 21,
            "image_shape": (224, 224, 3),
            "block_filters": (64, 128, 256, 512, 512),
            "block_depths": (2, 2, 3, 3, 3),
            "fc_units": 4096,
            "fc_kernel_size": 7,
            "use_batch_norm": True,
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
        "config": {
            "num_classes": 21,
            "image_shape": (224, 224, 3),
            "block_filters": (16, 32, 64, 128, 128),
            "block_depths": (2, 2, 3, 3, 3),
            "fc_units": 512,
            "fc_kernel_size": 7,
            "use_batch_norm": True,
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
        "config": {
            "num_classes": 21,
            "image_shape": (None, None, 3),
            "block_filters": (8, 16, 32, 64, 64),
            "block_depths": (1, 1, 2, 2, 2),
            "fc_units": 256,
            "fc_kernel_size": 3,
            "use_batch_norm": True,
        },
    },
}


def preset_config(name: str) -> dict:
    """A deep copy of the constructor arguments of a named configuration."""
    if name not in DECONVNET_PRESETS:
        raise ValueError(
            f"Unknown DeconvNet preset {name!r}. Known presets: "
            f"{', '.join(sorted(DECONVNET_PRESETS))}."
        )
    return copy.deepcopy(DECONVNET_PRESETS[name]["config"])
