"""Segmentation models: DeconvNet, FCN-8s, their ensemble, and named configurations."""

from keras_deconvnet.models.deconvnet import DeconvNet
from keras_deconvnet.models.ensemble import EnsembleSegmenter
from keras_deconvnet.models.fcn8s import FCN8s
from keras_deconvnet.models.vgg16_weights import load_vgg16_weights

__all__ = ["DeconvNet", "EnsembleSegmenter", "FCN8s", "load_vgg16_weights"]
