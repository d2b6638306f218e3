"""The DeconvNet family: backbone, image converter, preprocessor, segmenter, presets."""

from keras_deconvnet.models import preset_utils
from keras_deconvnet.models.deconvnet.deconvnet_backbone import DeconvNetBackbone
from keras_deconvnet.models.deconvnet.deconvnet_image_converter import (
    DeconvNetImageConverter,
)
from keras_deconvnet.models.deconvnet.deconvnet_image_segmenter import (
    DeconvNetImageSegmenter,
)
from keras_deconvnet.models.deconvnet.deconvnet_image_segmenter_preprocessor import (
    DeconvNetImageSegmenterPreprocessor,
)
from keras_deconvnet.models.deconvnet.deconvnet_presets import DECONVNET_PRESETS

preset_utils.register_named_configs(DECONVNET_PRESETS, DeconvNetBackbone)

__all__ = [
    "DECONVNET_PRESETS",
    "DeconvNetBackbone",
    "DeconvNetImageConverter",
    "DeconvNetImageSegmenter",
    "DeconvNetImageSegmenterPreprocessor",
]
