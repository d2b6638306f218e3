"""Reading the authors' Caffe models: a dependency-free binary `.caffemodel` reader.

Only NumPy is needed here (`caffemodel.py` imports nothing else), so the reader also works
in tools that load it without TensorFlow.
"""

from keras_deconvnet.models.caffe.caffemodel import (
    BVLC_V1_LAYER_TYPES,
    FORK_V1_LAYER_TYPES,
    CaffeLayer,
    CaffeModelError,
    CaffeNet,
    describe_caffemodel,
    read_caffemodel,
)

__all__ = [
    "BVLC_V1_LAYER_TYPES",
    "FORK_V1_LAYER_TYPES",
    "CaffeLayer",
    "CaffeModelError",
    "CaffeNet",
    "describe_caffemodel",
    "read_caffemodel",
]
