"""Segmentation models: DeconvNet, FCN-8s, their ensemble, named configurations, presets."""

from keras_deconvnet.models.deconvnet import DeconvNet
from keras_deconvnet.models.ensemble import EnsembleSegmenter
from keras_deconvnet.models.fcn8s import FCN8s
from keras_deconvnet.models.preset_io import (
    PresetError,
    PresetModel,
    describe_preset,
    load_preset,
    preset_dataset_info,
)
from keras_deconvnet.models.vgg16_weights import load_vgg16_weights

__all__ = [
    "DeconvNet",
    "EnsembleSegmenter",
    "FCN8s",
    "PresetError",
    "PresetModel",
    "describe_preset",
    "load_preset",
    "load_vgg16_weights",
    "preset_dataset_info",
]
