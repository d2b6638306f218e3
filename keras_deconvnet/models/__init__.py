"""Segmentation models: DeconvNet and its named configurations."""

from keras_deconvnet.models.deconvnet import DeconvNet
from keras_deconvnet.models.vgg16_weights import load_vgg16_weights

__all__ = ["DeconvNet", "load_vgg16_weights"]
