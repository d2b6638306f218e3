"""Segmentation models as keras-hub families: DeconvNet, FCN-8s, their ensemble.

Each family is a `Backbone`, an `ImageSegmenter` task, an `ImageConverter` and an
`ImageSegmenterPreprocessor`, which `keras_hub`'s own `from_preset` loads and saves.
"""

from keras_deconvnet.models.deconvnet import (
    DeconvNetBackbone,
    DeconvNetImageConverter,
    DeconvNetImageSegmenter,
    DeconvNetImageSegmenterPreprocessor,
)
from keras_deconvnet.models.edeconvnet import EDeconvNetImageSegmenter
from keras_deconvnet.models.fcn8s import (
    FCN8sBackbone,
    FCN8sImageConverter,
    FCN8sImageSegmenter,
    FCN8sImageSegmenterPreprocessor,
)
from keras_deconvnet.models.loading import describe_preset, load_segmenter
from keras_deconvnet.models.preset_utils import PresetError, named_configs
from keras_deconvnet.models.vgg16_weights import load_vgg16_weights

__all__ = [
    "DeconvNetBackbone",
    "DeconvNetImageConverter",
    "DeconvNetImageSegmenter",
    "DeconvNetImageSegmenterPreprocessor",
    "EDeconvNetImageSegmenter",
    "FCN8sBackbone",
    "FCN8sImageConverter",
    "FCN8sImageSegmenter",
    "FCN8sImageSegmenterPreprocessor",
    "PresetError",
    "describe_preset",
    "load_segmenter",
    "load_vgg16_weights",
    "named_configs",
]
