"""DeconvNet's image converter: RGB 0-255 in, the mean subtracted, resized if needed."""

from __future__ import annotations

import keras
from keras_hub.layers import ImageConverter

from keras_deconvnet.models.deconvnet.deconvnet_backbone import DeconvNetBackbone

# The per-channel mean the DeconvNet authors subtracted (BGR, their Caffe models' and
# Caffe VGG16's), the same for FCN-8s. Keras's `vgg16.preprocess_input` uses
# (103.939, 116.779, 123.68): less than 0.3 apart, and presets record their own.
CAFFE_BGR_MEAN = (104.00698793, 116.66876762, 122.67891434)
RGB_MEAN = tuple(reversed(CAFFE_BGR_MEAN))
RGB_OFFSET = tuple(-m for m in RGB_MEAN)


@keras.saving.register_keras_serializable(package="keras_deconvnet")
class DeconvNetImageConverter(ImageConverter):
    """Raw RGB images (uint8 or float, 0-255) to DeconvNet's input.

    A keras-hub `ImageConverter` whose defaults are DeconvNet's: `scale=1.0` (a cast
    to float), `offset` = minus the authors' per-channel mean (in RGB order, so the
    network takes RGB; BGR-trained weights are permuted when loaded), and, when
    `image_size` is set, a bilinear warp to that size that does not keep the aspect
    ratio (`crop_to_aspect_ratio=False`), as the authors warped each proposal.

    Args:
        image_size: `(height, width)` to resize to, or `None` to keep the size.
        scale: multiplied first. Defaults to `1.0`.
        offset: added next, per channel. Defaults to `RGB_OFFSET`.
        crop_to_aspect_ratio: Defaults to `False`.
        interpolation: Defaults to `"bilinear"`.
        **kwargs: `keras_hub.layers.ImageConverter` arguments.

    Example:

    >>> import numpy as np
    >>> converter = DeconvNetImageConverter(image_size=(4, 4))
    >>> out = converter(np.full((1, 8, 8, 3), 255, np.uint8))
    >>> out.shape, [round(float(v), 2) for v in out[0, 0, 0]]
    (TensorShape([1, 4, 4, 3]), [132.32, 138.33, 150.99])
    """

    backbone_cls = DeconvNetBackbone

    def __init__(
        self,
        image_size=None,
        scale=1.0,
        offset=RGB_OFFSET,
        crop_to_aspect_ratio: bool = False,
        interpolation: str = "bilinear",
        **kwargs,
    ):
        super().__init__(
            image_size=image_size,
            scale=scale,
            offset=list(offset) if isinstance(offset, tuple) else offset,
            crop_to_aspect_ratio=crop_to_aspect_ratio,
            interpolation=interpolation,
            **kwargs,
        )
