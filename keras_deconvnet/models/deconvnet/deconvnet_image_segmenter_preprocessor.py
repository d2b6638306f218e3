"""DeconvNet's preprocessor: the one place where images become network input."""

from __future__ import annotations

import keras
from keras_hub.models import ImageSegmenterPreprocessor

from keras_deconvnet.models import preset_utils
from keras_deconvnet.models.deconvnet.deconvnet_backbone import DeconvNetBackbone
from keras_deconvnet.models.deconvnet.deconvnet_image_converter import (
    DeconvNetImageConverter,
)


@keras.saving.register_keras_serializable(package="keras_deconvnet")
class DeconvNetImageSegmenterPreprocessor(ImageSegmenterPreprocessor):
    """Raw RGB images (and masks) to DeconvNet's input, for `fit`/`predict`/export.

    `DeconvNetImageSegmenter` applies it inside `fit`, `evaluate` and `predict`, so
    those take raw RGB 0-255 images; training crops, proposal inference and the
    exporters all go through it. Masks pass unchanged unless `resize_output_mask`.

    Args:
        image_converter: a `DeconvNetImageConverter`. Defaults to one that keeps the
            image size.
        resize_output_mask: resize masks with the images (nearest). Defaults to
            `False`.

    Example:

    >>> import numpy as np
    >>> preprocessor = DeconvNetImageSegmenterPreprocessor()
    >>> x, y = preprocessor(np.zeros((1, 8, 8, 3), np.uint8), np.zeros((1, 8, 8), "int32"))
    >>> [round(float(v), 2) for v in x[0, 0, 0]]
    [-122.68, -116.67, -104.01]
    """

    backbone_cls = DeconvNetBackbone
    image_converter_cls = DeconvNetImageConverter

    def __init__(self, image_converter=None, resize_output_mask=False, **kwargs):
        if image_converter is None:
            image_converter = self.image_converter_cls()
        super().__init__(
            image_converter=image_converter, resize_output_mask=resize_output_mask, **kwargs
        )

    @classmethod
    def from_config(cls, config):
        preset_utils.check_config_is_safe(config, f"the {cls.__name__} config")
        return super().from_config(config)
