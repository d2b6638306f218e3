"""FCN-8s (Long, Shelhamer, Darrell, CVPR 2015): DeconvNet's partner in the EDeconvNet ensemble."""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from keras_deconvnet.models.deconvnet import (
    VGG16_BLOCK_DEPTHS,
    VGG16_BLOCK_FILTERS,
    VGGSegmenterConfig,
    _validate,
)
from keras_deconvnet.models.preset_io import PresetModel


@keras.saving.register_keras_serializable(package="keras_deconvnet")
class CropToMatch(keras.layers.Layer):
    """Crops the first input's height and width to the second's (FCN's `crop` layers).

    Works with unknown sizes, so FCN-8s accepts any input size, not only multiples of 32.

    Example:

    >>> import numpy as np
    >>> CropToMatch()(np.zeros((1, 6, 6, 2)), np.zeros((1, 5, 4, 3))).shape
    TensorShape([1, 5, 4, 2])
    """

    def call(self, inputs, reference):
        size = tf.shape(reference)
        return inputs[:, : size[1], : size[2], :]

    def compute_output_shape(self, inputs_shape, reference_shape):
        return (inputs_shape[0], reference_shape[1], reference_shape[2], inputs_shape[3])


def _bilinear_kernel(size: int, channels: int) -> np.ndarray:
    """FCN's bilinear upsampling initialisation for a (size, size, c, c) transposed conv."""
    factor = (size + 1) // 2
    center = factor - 1 if size % 2 == 1 else factor - 0.5
    og = np.ogrid[:size, :size]
    filt = (1 - abs(og[0] - center) / factor) * (1 - abs(og[1] - center) / factor)
    kernel = np.zeros((size, size, channels, channels), np.float32)
    for c in range(channels):
        kernel[:, :, c, c] = filt
    return kernel


@keras.saving.register_keras_serializable(package="keras_deconvnet")
class FCN8s(VGGSegmenterConfig, PresetModel):
    """FCN-8s: VGG16 encoder, fc6/fc7, and skip connections from pool3 and pool4.

    Scores from fc7 are upsampled 2x (bilinear-initialised transposed convolution),
    fused with 1x1 scores of pool4, upsampled 2x, fused with scores of pool3, and
    upsampled 8x to the input size. The configuration arguments are DeconvNet's, so
    the two members of the EDeconvNet ensemble are configured alike. fc6 uses "same"
    padding (instead of the original's 100-pixel input padding), so any input size
    works and the output has the input's size.

    Args:
        num_classes: int, classes including background. Defaults to `21`.
        image_shape: `(height, width, channels)`, height/width may be `None`.
            Defaults to `(224, 224, 3)`.
        block_filters: encoder widths. Defaults to VGG16's.
        block_depths: convolutions per block (5 blocks: the skips need pool3 and
            pool4). Defaults to VGG16's.
        fc_units: width of fc6/fc7. Defaults to `4096`.
        fc_kernel_size: kernel of fc6. Defaults to `7`.
        use_batch_norm: BatchNorm after each convolution. Defaults to `False` (the
            original FCN had none).
        activation: `None` (logits, default) or `"softmax"`.

    Example:

    >>> import numpy as np
    >>> model = FCN8s(num_classes=3, image_shape=(64, 64, 3),
    ...               block_filters=(8, 8, 8, 8, 8), fc_units=16)
    >>> model.predict(np.zeros((1, 64, 64, 3)), verbose=0).shape
    (1, 64, 64, 3)
    >>> import tempfile
    >>> path = model.save_to_preset(tempfile.mkdtemp() + "/fcn")
    >>> FCN8s.from_preset(path).count_params() == model.count_params()
    True
    """

    def __init__(
        self,
        num_classes: int = 21,
        image_shape: tuple = (224, 224, 3),
        block_filters: tuple = VGG16_BLOCK_FILTERS,
        block_depths: tuple = VGG16_BLOCK_DEPTHS,
        fc_units: int = 4096,
        fc_kernel_size: int = 7,
        use_batch_norm: bool = False,
        activation: str | None = None,
        **kwargs,
    ):
        image_shape = tuple(image_shape)
        block_filters = tuple(int(f) for f in block_filters)
        block_depths = tuple(int(d) for d in block_depths)
        if len(block_filters) != 5:
            raise ValueError(
                "FCN8s needs 5 encoder blocks (its skips come from pool3 and pool4). "
                f"Received: block_filters={block_filters}"
            )
        # "same" fc6 works at any pool5 size: validate as if fc_kernel_size were 1.
        _validate(num_classes, image_shape, block_filters, block_depths, fc_units, 1,
                  activation)

        def conv(x, filters, kernel, name):
            x = keras.layers.Conv2D(filters, kernel, padding="same", name=name)(x)
            if use_batch_norm:
                x = keras.layers.BatchNormalization(name=f"{name}_bn")(x)
            return keras.layers.ReLU(name=f"{name}_relu")(x)

        def upsample(x, factor, name):
            size = 2 * factor
            layer = keras.layers.Conv2DTranspose(
                num_classes, size, strides=factor, padding="same", use_bias=False,
                kernel_initializer=keras.initializers.Constant(
                    _bilinear_kernel(size, num_classes)
                ),
                name=name,
            )
            return layer(x)

        # === Functional model ===
        inputs = keras.Input(shape=image_shape, name="images")
        x = inputs
        pools = []
        for block, (filters, depth) in enumerate(zip(block_filters, block_depths), 1):
            for i in range(1, depth + 1):
                x = conv(x, filters, 3, f"block{block}_conv{i}")
            x = keras.layers.MaxPooling2D(2, padding="same", name=f"block{block}_pool")(x)
            pools.append(x)
        x = conv(x, fc_units, fc_kernel_size, "fc6")
        x = conv(x, fc_units, 1, "fc7")
        score = keras.layers.Conv2D(num_classes, 1, name="score_fr")(x)

        score_pool4 = keras.layers.Conv2D(num_classes, 1, name="score_pool4",
                                          kernel_initializer="zeros")(pools[3])
        up = CropToMatch(name="upscore2_crop")(upsample(score, 2, "upscore2"), score_pool4)
        fuse_pool4 = keras.layers.Add(name="fuse_pool4")([up, score_pool4])

        score_pool3 = keras.layers.Conv2D(num_classes, 1, name="score_pool3",
                                          kernel_initializer="zeros")(pools[2])
        up = CropToMatch(name="upscore_pool4_crop")(
            upsample(fuse_pool4, 2, "upscore_pool4"), score_pool3
        )
        fuse_pool3 = keras.layers.Add(name="fuse_pool3")([up, score_pool3])
        x = CropToMatch(name="upscore8_crop")(upsample(fuse_pool3, 8, "upscore8"), inputs)
        outputs = keras.layers.Activation(
            activation or "linear", dtype="float32", name=activation or "logits"
        )(x)
        kwargs.setdefault("name", "fcn8s")
        super().__init__(inputs=inputs, outputs=outputs, **kwargs)

        # === Config ===
        self._set_config(
            num_classes=num_classes, image_shape=image_shape, block_filters=block_filters,
            block_depths=block_depths, fc_units=fc_units, fc_kernel_size=fc_kernel_size,
            use_batch_norm=use_batch_norm, activation=activation,
        )
