"""Keras layers: argmax pooling with switches, switch unpooling, fc layers as matmuls."""

from keras_deconvnet.layers.formulations import (
    FORMULATIONS,
    integer_switches,
    switch_formulation,
)
from keras_deconvnet.layers.fully_connected_conv import (
    FullyConnectedConv2D,
    FullyConnectedConv2DTranspose,
)
from keras_deconvnet.layers.max_pool_with_argmax import MaxPoolWithArgmax
from keras_deconvnet.layers.unpool import Unpool

__all__ = [
    "FORMULATIONS",
    "FullyConnectedConv2D",
    "FullyConnectedConv2DTranspose",
    "MaxPoolWithArgmax",
    "Unpool",
    "integer_switches",
    "switch_formulation",
]
