"""The authors' Caffe models in Keras: a dependency-free `.caffemodel` reader and converters.

The reader (`caffemodel.py`, with `protobuf_wire.py`, `blob_proto.py` and `caffe_net.py`)
needs only NumPy (tools may load it without TensorFlow). The converters
turn DeconvNet's, FCN-8s's and VGG16's caffemodels into our keras-hub segmenters:
`convert_caffemodel(path, arch).save(preset_dir)`, or `deconvnet convert-caffe`.
"""

from keras_deconvnet.models.caffe.caffe_net import (
    BVLC_V1_LAYER_TYPES,
    FORK_V1_LAYER_TYPES,
    CaffeLayer,
    CaffeModelError,
    CaffeNet,
)
from keras_deconvnet.models.caffe.caffemodel import describe_caffemodel, read_caffemodel
from keras_deconvnet.models.caffe.convert import (
    ARCHITECTURES,
    CaffeConversion,
    convert_caffemodel,
    load_caffe_weights,
)
from keras_deconvnet.models.caffe.deconvnet_converter import convert_deconvnet, detect_bn_form
from keras_deconvnet.models.caffe.fcn8s_converter import convert_fcn8s
from keras_deconvnet.models.caffe.vgg16_converter import convert_vgg16
from keras_deconvnet.models.caffe.weight_mapping import CaffeMappingError

__all__ = [
    "ARCHITECTURES",
    "BVLC_V1_LAYER_TYPES",
    "FORK_V1_LAYER_TYPES",
    "CaffeConversion",
    "CaffeLayer",
    "CaffeMappingError",
    "CaffeModelError",
    "CaffeNet",
    "convert_caffemodel",
    "convert_deconvnet",
    "convert_fcn8s",
    "convert_vgg16",
    "describe_caffemodel",
    "detect_bn_form",
    "load_caffe_weights",
    "read_caffemodel",
]
