"""The FCN-8s family: backbone, image converter, preprocessor, segmenter, presets."""

from keras_deconvnet.models import preset_utils
from keras_deconvnet.models.fcn8s.fcn8s_backbone import FCN8sBackbone
from keras_deconvnet.models.fcn8s.fcn8s_image_converter import FCN8sImageConverter
from keras_deconvnet.models.fcn8s.fcn8s_image_segmenter import FCN8sImageSegmenter
from keras_deconvnet.models.fcn8s.fcn8s_image_segmenter_preprocessor import (
    FCN8sImageSegmenterPreprocessor,
)
from keras_deconvnet.models.fcn8s.fcn8s_layers import CropToMatch, crop_offsets
from keras_deconvnet.models.fcn8s.fcn8s_presets import FCN8S_PRESETS

preset_utils.register_named_configs(FCN8S_PRESETS, FCN8sBackbone)

__all__ = [
    "FCN8S_PRESETS",
    "CropToMatch",
    "FCN8sBackbone",
    "FCN8sImageConverter",
    "FCN8sImageSegmenter",
    "FCN8sImageSegmenterPreprocessor",
    "crop_offsets",
]
