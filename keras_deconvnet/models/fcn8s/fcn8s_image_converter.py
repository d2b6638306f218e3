"""FCN-8s's image converter: DeconvNet's (the same Caffe mean), for the FCN-8s backbone."""

from __future__ import annotations

import keras

from keras_deconvnet.models.deconvnet.deconvnet_image_converter import (
    DeconvNetImageConverter,
)
from keras_deconvnet.models.fcn8s.fcn8s_backbone import FCN8sBackbone


@keras.saving.register_keras_serializable(package="keras_deconvnet")
class FCN8sImageConverter(DeconvNetImageConverter):
    """Raw RGB 0-255 images to FCN-8s's input: `DeconvNetImageConverter`'s defaults.

    BVLC's FCN-8s subtracted the same Caffe mean as DeconvNet; a separate class
    only tells keras-hub which backbone it belongs to.

    Example:

    >>> import numpy as np
    >>> FCN8sImageConverter()(np.zeros((1, 2, 2, 3), np.uint8)).shape
    TensorShape([1, 2, 2, 3])
    """

    backbone_cls = FCN8sBackbone
