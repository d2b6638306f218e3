"""Keras layers: argmax pooling with switches and switch unpooling."""

from keras_deconvnet.layers.max_pool_with_argmax import MaxPoolWithArgmax
from keras_deconvnet.layers.unpool import Unpool

__all__ = ["MaxPoolWithArgmax", "Unpool"]
