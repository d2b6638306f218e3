"""The DeconvNet backbone: VGG16 encoder with pooling switches, fc6/fc7, mirrored decoder."""

from __future__ import annotations

import keras
from keras_hub.models import Backbone

from keras_deconvnet.layers import (
    FullyConnectedConv2D,
    FullyConnectedConv2DTranspose,
    Unpool,
)
from keras_deconvnet.models import preset_utils, vgg16_encoder

DECODER_INITIALIZERS = ("caffe", "glorot")


def decoder_initializers(decoder_initializer: str) -> tuple[dict, dict]:
    """`(decoder convolution kwargs, BatchNorm kwargs)` of an initialisation scheme.

    `"caffe"`, the authors' training prototxts (`training/00{1,2}_stage_*/
    stage_*_train.prototxt` of HyeonwooNoh/DeconvNet): every deconvolution
    (`fc6-deconv`, `deconv*`) `weight_filler { type: "gaussian" std: 0.01 }` and
    `bias_filler { type: "constant" value: 0 }`; every BN layer (encoder's too)
    `scale_filler` 1 and `shift_filler` 0.001. The encoder and fc6/fc7 had no
    filler there (VGG16's weights were loaded), so they keep Keras's defaults here.
    `"glorot"`: Keras's defaults everywhere (Glorot-uniform kernels, zero shifts).
    """
    if decoder_initializer not in DECODER_INITIALIZERS:
        raise ValueError(
            f"`decoder_initializer` must be one of {DECODER_INITIALIZERS}. "
            f"Received: decoder_initializer={decoder_initializer!r}"
        )
    if decoder_initializer == "glorot":
        return {}, {}
    # A new initializer per layer (a config dict is deserialised each time), so that
    # unseeded draws differ between layers.
    conv = {
        "kernel_initializer": {"class_name": "RandomNormal",
                               "config": {"mean": 0.0, "stddev": 0.01}},
        "bias_initializer": "zeros",
    }
    return conv, {"batch_norm_beta_initializer": {"class_name": "Constant",
                                                  "config": {"value": 0.001}}}


def decoder_filters(block_filters, block_depths, block: int) -> list[int]:
    """Widths of the convolutions of decoder block `block` (1-based), mirroring VGG16.

    All but the last keep the block's width; the last narrows to the width of the
    block below (deconv4: 512, 512, 256), as in the paper's Table 1.
    """
    width = block_filters[block - 1]
    below = block_filters[block - 2] if block > 1 else width
    depth = block_depths[block - 1]
    return [width] * (depth - 1) + [below]


@keras.saving.register_keras_serializable(package="keras_deconvnet")
class DeconvNetBackbone(preset_utils.NamedConfigBackboneMixin, Backbone):
    """DeconvNet's network without its class layer (Noh, Hong, Han, ICCV 2015).

    The encoder is VGG16's convolutions, each followed by BatchNorm and ReLU; every
    2x2 max pooling keeps its switches. fc6 (a `fc_kernel_size` convolution, valid)
    and fc7 (1x1) are the fully connected layers as convolutions. The decoder mirrors
    it: `deconv_fc6` (a transposed convolution back to the pool5 size), then per
    block an `Unpool` with that block's switches and 3x3 deconvolutions. Stride-1 3x3
    deconvolutions are computed as convolutions (the same function with the kernel
    flipped, which the Caffe converter does), because they run faster everywhere,
    TFLite included. The output is the decoder's last feature map, `block_filters[0]`
    channels at the input's size; `DeconvNetImageSegmenter` adds the 1x1 class layer.

    The input is RGB with the mean subtracted (`DeconvNetImageConverter`). Weights
    trained on BGR input (Caffe's, Keras's VGG16) have conv1_1's input channels
    reversed when they are loaded, so the network itself always takes RGB.

    Named configurations (`DeconvNetBackbone.presets`): `deconvnet_vgg16_voc` (the
    paper's, 252M parameters), `deconvnet_edge` (8.5M) and `deconvnet_edge_small`
    (0.66M); `DeconvNetBackbone.from_preset(name)` builds one, untrained.

    Args:
        block_filters: widths of the encoder blocks. Defaults to VGG16's
            `(64, 128, 256, 512, 512)`.
        block_depths: convolutions per encoder block, same length as
            `block_filters`. Defaults to VGG16's `(2, 2, 3, 3, 3)`.
        fc_units: width of fc6 and fc7. Defaults to `4096`.
        fc_kernel_size: kernel of fc6 and deconv_fc6. Defaults to `7`.
        use_batch_norm: bool, BatchNorm after every convolution. Defaults to `True`
            (the paper found it essential).
        batch_norm_epsilon: float, the BatchNorm epsilon. Defaults to `1e-3`.
        image_shape: `(height, width, 3)`; height and width may be `None`. Any size
            works as long as pool5 is at least `fc_kernel_size` wide (224 and up for
            the paper's configuration). Defaults to `(224, 224, 3)`.
        decoder_initializer: `"caffe"` (default, the authors' fillers: decoder
            kernels Gaussian with std 0.01, zero biases, every BatchNorm's scale 1
            and shift 0.001) or `"glorot"` (Keras's defaults). Only the initial
            values differ; loaded weights replace them.
        dtype: the dtype policy of every layer (`"mixed_bfloat16"`, ...), as
            keras-hub's backbones take it. Defaults to Keras's global policy.
        **kwargs: `keras_hub.models.Backbone` arguments (`name`, `trainable`).

    Example:

    >>> import numpy as np
    >>> backbone = DeconvNetBackbone(
    ...     block_filters=(4, 4, 8, 8, 8), fc_units=16, fc_kernel_size=2,
    ...     image_shape=(64, 64, 3))
    >>> backbone.predict(np.zeros((1, 64, 64, 3)), verbose=0).shape
    (1, 64, 64, 4)
    >>> DeconvNetBackbone.from_preset("deconvnet_edge").count_params()
    8541760
    """

    CONFIG_KEYS = ("block_filters", "block_depths", "fc_units", "fc_kernel_size",
                   "use_batch_norm", "batch_norm_epsilon", "image_shape",
                   "decoder_initializer")

    def __init__(
        self,
        block_filters=vgg16_encoder.VGG16_BLOCK_FILTERS,
        block_depths=vgg16_encoder.VGG16_BLOCK_DEPTHS,
        fc_units: int = 4096,
        fc_kernel_size: int = 7,
        use_batch_norm: bool = True,
        batch_norm_epsilon: float = 1e-3,
        image_shape=(224, 224, 3),
        decoder_initializer: str = "caffe",
        dtype=None,
        **kwargs,
    ):
        image_shape = tuple(image_shape)
        decoder_conv, bn_init = decoder_initializers(decoder_initializer)
        block_filters = tuple(int(f) for f in block_filters)
        block_depths = tuple(int(d) for d in block_depths)
        vgg16_encoder.validate_vgg_config(
            image_shape, block_filters, block_depths, fc_units, fc_kernel_size
        )
        conv = vgg16_encoder.conv_bn_relu
        bn = dict(use_batch_norm=use_batch_norm, batch_norm_epsilon=batch_norm_epsilon,
                  dtype=dtype, **bn_init)

        # === Functional model ===
        inputs = keras.Input(shape=image_shape, name="images")
        x, _, switches = vgg16_encoder.apply_vgg16_encoder(
            inputs, block_filters, block_depths, pooling="argmax", **bn
        )  # Keras's default kernels: the original loaded VGG16 there.
        # fc6, fc7 and deconv_fc6 run as matmuls when pool5 is fc_kernel_size wide.
        x = conv(x, fc_units, fc_kernel_size, "fc6", padding="valid",
                 conv_cls=FullyConnectedConv2D, **bn)
        x = conv(x, fc_units, 1, "fc7", conv_cls=FullyConnectedConv2D, **bn)
        x = conv(x, block_filters[-1], fc_kernel_size, "deconv_fc6", padding="valid",
                 conv_cls=FullyConnectedConv2DTranspose, **bn, **decoder_conv)
        for block in range(len(block_filters), 0, -1):
            x = Unpool(dtype=dtype, name=f"unpool{block}")(x, switches[block - 1])
            widths = decoder_filters(block_filters, block_depths, block)
            for i, width in enumerate(widths, 1):
                x = conv(x, width, 3, f"deconv{block}_{i}", **bn, **decoder_conv)
        super().__init__(inputs=inputs, outputs=x, dtype=dtype, **kwargs)

        # === Config ===
        self._store_config(locals())
