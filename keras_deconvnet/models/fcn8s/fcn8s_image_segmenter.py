"""The FCN-8s segmentation task: class scores of fc7, pool4 and pool3, fused and upsampled."""

from __future__ import annotations

import keras
from keras_hub.models import ImageSegmenter

from keras_deconvnet.models.fcn8s.fcn8s_backbone import FCN8sBackbone
from keras_deconvnet.models.fcn8s.fcn8s_image_segmenter_preprocessor import (
    FCN8sImageSegmenterPreprocessor,
)
from keras_deconvnet.models.fcn8s.fcn8s_layers import (
    CropToMatch,
    bilinear_kernel,
    crop_offsets,
)
from keras_deconvnet.models.segmenter_head import SegmenterMixin, output_activation


@keras.saving.register_keras_serializable(package="keras_deconvnet")
class FCN8sImageSegmenter(SegmenterMixin, ImageSegmenter):
    """FCN-8s (Long, Shelhamer, Darrell, CVPR 2015), DeconvNet's ensemble partner.

    The class layers of FCN-8s are its head: `score_fr` on fc7 upsampled 2x
    (`upscore2`, a transposed convolution initialised bilinear), fused with
    `score_pool4` on pool4, upsampled 2x (`upscore_pool4`), fused with
    `score_pool3`, and upsampled 8x (`upscore8`) to the input size. The crop offsets
    between these maps follow from the backbone's geometry (`crop_offsets`).

    Args:
        backbone: an `FCN8sBackbone`.
        num_classes: classes including the background. Defaults to `21`.
        activation: `None` (logits, default) or `"softmax"`.
        preprocessor: an `FCN8sImageSegmenterPreprocessor` or `None`.
        class_names: optional class names, background first.
        palette: optional RGB colour per class.
        **kwargs: `keras_hub.models.Task` arguments.

    Example:

    >>> import numpy as np
    >>> segmenter = FCN8sImageSegmenter.from_preset("fcn8s_edge_small", num_classes=3)
    >>> segmenter.predict(np.zeros((1, 70, 50, 3), np.uint8), verbose=0).shape
    (1, 70, 50, 3)
    """

    backbone_cls = FCN8sBackbone
    preprocessor_cls = FCN8sImageSegmenterPreprocessor

    def __init__(self, backbone, num_classes: int = 21, activation: str | None = None,
                 preprocessor=None, class_names=None, palette=None, **kwargs):
        self._set_classes(num_classes, class_names, palette, activation)
        pool4_offset, pool3_offset, final_offset = crop_offsets(
            backbone.input_padding, backbone.fc_kernel_size,
            block_depths=backbone.block_depths,
        )
        original = bool(backbone.input_padding)
        dtype = backbone.dtype_policy  # keras-hub's heads compute as their backbone
        padding = "valid" if original else "same"

        def upsample(factor, name, use_bias=False):
            size = 2 * factor
            return keras.layers.Conv2DTranspose(
                num_classes, size, strides=factor, padding=padding, use_bias=use_bias,
                kernel_initializer=keras.initializers.Constant(
                    bilinear_kernel(size, num_classes)
                ),
                dtype=dtype,
                name=name,
            )

        # === Layers ===
        self.score_fr = keras.layers.Conv2D(num_classes, 1, dtype=dtype, name="score_fr")
        self.score_pool4 = keras.layers.Conv2D(
            num_classes, 1, kernel_initializer="zeros", dtype=dtype, name="score_pool4"
        )
        self.score_pool3 = keras.layers.Conv2D(
            num_classes, 1, kernel_initializer="zeros", dtype=dtype, name="score_pool3"
        )
        # The original's score2 has a bias, score4 and upsample do not.
        self.upscore2 = upsample(2, "upscore2", use_bias=True)
        self.upscore_pool4 = upsample(2, "upscore_pool4")
        self.upscore8 = upsample(8, "upscore8")

        # === Functional model ===
        inputs = backbone.input
        features = backbone(inputs)
        up = self.upscore2(self.score_fr(features["fc7"]))
        skip = self.score_pool4(features["pool4"])
        fused = keras.layers.Add(dtype=dtype, name="fuse_pool4")(
            self._align(up, skip, pool4_offset, original, "score_pool4_crop", dtype)
        )
        up = self.upscore_pool4(fused)
        skip = self.score_pool3(features["pool3"])
        fused = keras.layers.Add(dtype=dtype, name="fuse_pool3")(
            self._align(up, skip, pool3_offset, original, "score_pool3_crop", dtype)
        )
        x = CropToMatch(final_offset, dtype=dtype, name="upscore8_crop")(
            self.upscore8(fused), inputs)
        outputs = output_activation(x, activation)
        super().__init__(inputs=inputs, outputs=outputs, **kwargs)

        # === Config ===
        self.backbone = backbone
        self.preprocessor = preprocessor

    @staticmethod
    def _align(up, skip, offset, original, name, dtype=None):
        """The original crops the skip scores to the upsampled grid; with "same"
        padding the upsampled map is the larger one and is cropped instead."""
        if original:
            return [up, CropToMatch(offset, dtype=dtype, name=name)(skip, up)]
        return [CropToMatch(0, dtype=dtype, name=name)(up, skip), skip]
