"""The DeconvNet encoder-decoder (Noh, Hong, Han, ICCV 2015) as a functional Keras model."""

from __future__ import annotations

import keras

from keras_deconvnet.layers import (
    FullyConnectedConv2D,
    FullyConnectedConv2DTranspose,
    MaxPoolWithArgmax,
    Unpool,
)
from keras_deconvnet.models import deconvnet_presets
from keras_deconvnet.models.preset_io import PresetModel, register_presets

VGG16_BLOCK_FILTERS = (64, 128, 256, 512, 512)
VGG16_BLOCK_DEPTHS = (2, 2, 3, 3, 3)


def _conv_block(x, filters, kernel_size, name, use_batch_norm, padding="same",
                conv=keras.layers.Conv2D):
    """Conv (or stride-1 "deconvolution") + BatchNorm + ReLU, named after the paper."""
    x = conv(filters, kernel_size, padding=padding, name=name)(x)
    if use_batch_norm:
        x = keras.layers.BatchNormalization(name=f"{name}_bn")(x)
    return keras.layers.ReLU(name=f"{name}_relu")(x)


def _decoder_filters(block_filters, block_depths, block):
    """Filters of the convolutions of decoder block `block` (1-based), mirroring VGG16.

    All but the last keep the block's width; the last one narrows to the width of the
    block below (deconv4: 512, 512, 256), as in the paper's Table 1.
    """
    width = block_filters[block - 1]
    below = block_filters[block - 2] if block > 1 else width
    depth = block_depths[block - 1]
    return [width] * (depth - 1) + [below]


class VGGSegmenterConfig:
    """Config bookkeeping shared by `DeconvNet` and `FCN8s`, which take the same arguments.

    `get_config()` returns exactly the constructor arguments (plus `name` and
    `trainable`), so `from_config(get_config())` rebuilds the model.
    """

    CONFIG_KEYS = (
        "num_classes", "image_shape", "block_filters", "block_depths", "fc_units",
        "fc_kernel_size", "use_batch_norm", "activation",
    )

    def _set_config(self, **values):
        for key in self.CONFIG_KEYS:
            setattr(self, key, values[key])

    def get_config(self):
        config = {"name": self.name, "trainable": self.trainable}
        config.update({key: getattr(self, key) for key in self.CONFIG_KEYS})
        return config

    @classmethod
    def from_config(cls, config):
        return cls(**config)


@keras.saving.register_keras_serializable(package="keras_deconvnet")
class DeconvNet(VGGSegmenterConfig, PresetModel):
    """DeconvNet: VGG16-BN encoder with pooling switches, fc6/fc7, mirrored decoder.

    The encoder is VGG16's convolutions, each followed by BatchNorm and ReLU; every
    2x2 max pooling keeps its switches. fc6 (a `fc_kernel_size` convolution, valid)
    and fc7 (1x1) are the fully connected layers as convolutions. The decoder mirrors
    it: `deconv_fc6` (transposed convolution back to the pool5 size), then per block
    an `Unpool` with that block's switches and 3x3 deconvolutions, and a 1x1 `score`
    layer. Stride-1 3x3 deconvolutions are computed as convolutions (the same
    function, up to a kernel flip absorbed by training) because they run faster
    everywhere, TFLite included.

    The paper's configuration (`DeconvNet.from_preset("deconvnet_vgg16_voc")`, the
    defaults here) has about 252M parameters, 103M each in fc6 and deconv_fc6.
    `DeconvNet.presets()` lists the named configurations, including small ones for
    phones and edge GPUs. `model.save_to_preset(path)` writes a trained model as a
    keras-hub-style preset directory that `DeconvNet.from_preset(path)` loads.

    Inputs are float images preprocessed as for Keras's VGG16 ("caffe": BGR, mean
    subtracted); see `keras_deconvnet.preprocessing`. Any height and width work as
    long as the pool5 map is at least `fc_kernel_size` wide (224 and up for the
    paper's configuration); sizes need not be multiples of 32.

    Args:
        num_classes: int, classes of the score layer, background included.
            Defaults to `21` (PASCAL VOC).
        image_shape: tuple `(height, width, channels)`; height and width may be
            `None` for fully convolutional use. Defaults to `(224, 224, 3)`.
        block_filters: widths of the encoder blocks. Defaults to VGG16's
            `(64, 128, 256, 512, 512)`.
        block_depths: convolutions per encoder block, same length as
            `block_filters`. Defaults to VGG16's `(2, 2, 3, 3, 3)`.
        fc_units: width of fc6, fc7. Defaults to `4096`.
        fc_kernel_size: kernel of fc6 and deconv_fc6. Defaults to `7`.
        use_batch_norm: bool, BatchNorm after every convolution but the score layer.
            Defaults to `True` (the paper found it essential).
        activation: `None` for logits (default, what the losses expect) or
            `"softmax"` for class probabilities.
        **kwargs: `keras.Model` keyword arguments such as `name`.

    Example:

    >>> import numpy as np
    >>> model = DeconvNet(num_classes=3, image_shape=(64, 64, 3),
    ...                   block_filters=(8, 8, 8, 8, 8), fc_units=16, fc_kernel_size=2)
    >>> model.predict(np.zeros((1, 64, 64, 3)), verbose=0).shape
    (1, 64, 64, 3)
    >>> model.compile(optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(
    ...     from_logits=True, ignore_class=255))
    >>> _ = model.fit(np.zeros((2, 64, 64, 3)), np.zeros((2, 64, 64)), verbose=0)
    >>> import tempfile
    >>> path = model.save_to_preset(tempfile.mkdtemp() + "/tiny")
    >>> DeconvNet.from_preset(path).predict(np.zeros((1, 64, 64, 3)), verbose=0).shape
    (1, 64, 64, 3)
    """

    def __init__(
        self,
        num_classes: int = 21,
        image_shape: tuple = (224, 224, 3),
        block_filters: tuple = VGG16_BLOCK_FILTERS,
        block_depths: tuple = VGG16_BLOCK_DEPTHS,
        fc_units: int = 4096,
        fc_kernel_size: int = 7,
        use_batch_norm: bool = True,
        activation: str | None = None,
        **kwargs,
    ):
        image_shape = tuple(image_shape)
        block_filters = tuple(int(f) for f in block_filters)
        block_depths = tuple(int(d) for d in block_depths)
        _validate(
            num_classes, image_shape, block_filters, block_depths, fc_units,
            fc_kernel_size, activation,
        )
        num_blocks = len(block_filters)

        # === Functional model ===
        inputs = keras.Input(shape=image_shape, name="images")
        x = inputs
        switches = []
        for block, (filters, depth) in enumerate(zip(block_filters, block_depths), 1):
            for i in range(1, depth + 1):
                x = _conv_block(x, filters, 3, f"block{block}_conv{i}", use_batch_norm)
            x, block_switches = MaxPoolWithArgmax(name=f"block{block}_pool")(x)
            switches.append(block_switches)

        # fc6, fc7 and deconv_fc6 run as matmuls when pool5 is fc_kernel_size wide.
        x = _conv_block(x, fc_units, fc_kernel_size, "fc6", use_batch_norm, "valid",
                        conv=FullyConnectedConv2D)
        x = _conv_block(x, fc_units, 1, "fc7", use_batch_norm, conv=FullyConnectedConv2D)
        x = FullyConnectedConv2DTranspose(
            block_filters[-1], fc_kernel_size, padding="valid", name="deconv_fc6"
        )(x)
        if use_batch_norm:
            x = keras.layers.BatchNormalization(name="deconv_fc6_bn")(x)
        x = keras.layers.ReLU(name="deconv_fc6_relu")(x)

        for block in range(num_blocks, 0, -1):
            x = Unpool(name=f"unpool{block}")(x, switches[block - 1])
            filters = _decoder_filters(block_filters, block_depths, block)
            for i, width in enumerate(filters, 1):
                x = _conv_block(x, width, 3, f"deconv{block}_{i}", use_batch_norm)

        x = keras.layers.Conv2D(num_classes, 1, name="score")(x)
        # Outputs stay float32 under mixed precision, as keras-hub's task heads do.
        outputs = keras.layers.Activation(
            activation or "linear", dtype="float32", name=activation or "logits"
        )(x)
        kwargs.setdefault("name", "deconvnet")
        super().__init__(inputs=inputs, outputs=outputs, **kwargs)

        # === Config ===
        self._set_config(
            num_classes=num_classes, image_shape=image_shape, block_filters=block_filters,
            block_depths=block_depths, fc_units=fc_units, fc_kernel_size=fc_kernel_size,
            use_batch_norm=use_batch_norm, activation=activation,
        )


register_presets(deconvnet_presets.DECONVNET_PRESETS, DeconvNet)


def _validate(num_classes, image_shape, block_filters, block_depths, fc_units,
              fc_kernel_size, activation):
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(
            f"`num_classes` must be an int >= 2 (background included). "
            f"Received: num_classes={num_classes!r}"
        )
    if len(image_shape) != 3 or image_shape[-1] is None:
        raise ValueError(
            "`image_shape` must be (height, width, channels) with known channels. "
            f"Received: image_shape={image_shape}"
        )
    if not block_filters or len(block_filters) != len(block_depths):
        raise ValueError(
            "`block_filters` and `block_depths` must be non-empty and of the same "
            f"length. Received: block_filters={block_filters}, "
            f"block_depths={block_depths}"
        )
    if min(block_filters) < 1 or min(block_depths) < 1:
        raise ValueError(
            "Every entry of `block_filters` and `block_depths` must be >= 1. "
            f"Received: block_filters={block_filters}, block_depths={block_depths}"
        )
    if fc_units < 1 or fc_kernel_size < 1:
        raise ValueError(
            "`fc_units` and `fc_kernel_size` must be >= 1. "
            f"Received: fc_units={fc_units}, fc_kernel_size={fc_kernel_size}"
        )
    if activation not in (None, "softmax"):
        raise ValueError(
            f"`activation` must be None (logits) or 'softmax'. "
            f"Received: activation={activation!r}"
        )
    factor = 2 ** len(block_filters)
    for size in image_shape[:2]:
        if size is not None and -(-size // factor) < fc_kernel_size:
            raise ValueError(
                f"The input is too small: {len(block_filters)} poolings shrink it by "
                f"{factor} to {-(-size // factor)}, less than fc_kernel_size="
                f"{fc_kernel_size}. Use an input of at least "
                f"{(fc_kernel_size - 1) * factor + 1} pixels or a smaller "
                f"fc_kernel_size. Received: image_shape={image_shape}"
            )
