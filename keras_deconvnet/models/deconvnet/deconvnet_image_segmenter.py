"""The DeconvNet segmentation task: the backbone plus the 1x1 class layer."""

from __future__ import annotations

import keras
from keras_hub.models import ImageSegmenter

from keras_deconvnet.models.deconvnet.deconvnet_backbone import DeconvNetBackbone
from keras_deconvnet.models.deconvnet.deconvnet_image_segmenter_preprocessor import (
    DeconvNetImageSegmenterPreprocessor,
)
from keras_deconvnet.models.segmenter_head import SegmenterMixin, output_activation


@keras.saving.register_keras_serializable(package="keras_deconvnet")
class DeconvNetImageSegmenter(SegmenterMixin, ImageSegmenter):
    """DeconvNet semantic segmentation (Noh, Hong, Han, ICCV 2015) as a keras-hub task.

    `DeconvNetBackbone` followed by the 1x1 score layer (`seg-score` in the
    authors' network), returning per-pixel class logits by default: the paper
    aggregates raw scores over proposals and applies the softmax last. With a
    `preprocessor`, `fit`, `evaluate` and `predict` take raw RGB images (uint8 or
    float, 0-255) and integer masks (255 ignored); calling the model directly
    (`segmenter(x)`) takes preprocessed input.

    Args:
        backbone: a `DeconvNetBackbone`.
        num_classes: int, classes including the background. Defaults to `21`.
        activation: `None` for logits (default) or `"softmax"`.
        preprocessor: a `DeconvNetImageSegmenterPreprocessor` or `None` (then inputs
            must be preprocessed already).
        class_names: optional names of the classes, background first.
        palette: optional RGB colour per class, for pictures.
        **kwargs: `keras_hub.models.Task` arguments (`name`, `compile`, ...).

    Example:

    >>> import numpy as np
    >>> segmenter = DeconvNetImageSegmenter.from_preset(
    ...     "deconvnet_edge_small", num_classes=3, image_shape=(96, 96, 3))
    >>> images = np.random.randint(0, 256, (2, 96, 96, 3), np.uint8)
    >>> segmenter.predict(images, verbose=0).shape
    (2, 96, 96, 3)
    >>> _ = segmenter.fit(images, np.zeros((2, 96, 96), "int32"), verbose=0)
    >>> import tempfile, keras_hub
    >>> path = segmenter.save_to_preset(tempfile.mkdtemp() + "/tiny")
    >>> type(keras_hub.models.ImageSegmenter.from_preset(str(path))).__name__
    'DeconvNetImageSegmenter'
    """

    backbone_cls = DeconvNetBackbone
    preprocessor_cls = DeconvNetImageSegmenterPreprocessor

    def __init__(self, backbone, num_classes: int = 21, activation: str | None = None,
                 preprocessor=None, class_names=None, palette=None, **kwargs):
        self._set_classes(num_classes, class_names, palette, activation)
        # === Layers ===
        # The authors' filler for seg-score: Gaussian std 0.01, bias 0.
        initializer = "glorot_uniform"
        if getattr(backbone, "decoder_initializer", None) == "caffe":
            initializer = keras.initializers.RandomNormal(stddev=0.01)
        self.score = keras.layers.Conv2D(
            num_classes, 1, kernel_initializer=initializer, dtype=backbone.dtype_policy,
            name="score",
        )

        # === Functional model ===
        inputs = backbone.input
        outputs = output_activation(self.score(backbone(inputs)), activation)
        super().__init__(inputs=inputs, outputs=outputs, **kwargs)

        # === Config ===
        self.backbone = backbone
        self.preprocessor = preprocessor
