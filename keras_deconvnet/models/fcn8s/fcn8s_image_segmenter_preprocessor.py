"""FCN-8s's preprocessor (raw RGB images to network input)."""

from __future__ import annotations

import keras

from keras_deconvnet.models.deconvnet.deconvnet_image_segmenter_preprocessor import (
    DeconvNetImageSegmenterPreprocessor,
)
from keras_deconvnet.models.fcn8s.fcn8s_backbone import FCN8sBackbone
from keras_deconvnet.models.fcn8s.fcn8s_image_converter import FCN8sImageConverter


@keras.saving.register_keras_serializable(package="keras_deconvnet")
class FCN8sImageSegmenterPreprocessor(DeconvNetImageSegmenterPreprocessor):
    """`DeconvNetImageSegmenterPreprocessor` with an `FCN8sImageConverter`.

    Example:

    >>> import numpy as np
    >>> FCN8sImageSegmenterPreprocessor()(np.zeros((1, 4, 4, 3), np.uint8)).shape
    TensorShape([1, 4, 4, 3])
    """

    backbone_cls = FCN8sBackbone
    image_converter_cls = FCN8sImageConverter
