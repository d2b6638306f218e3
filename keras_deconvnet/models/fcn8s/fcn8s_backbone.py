"""The FCN-8s backbone: VGG16 with fc6/fc7 as convolutions, exposing pool3 and pool4."""

from __future__ import annotations

import keras
from keras_hub.models import Backbone

from keras_deconvnet.models import preset_utils, vgg16_encoder


@keras.saving.register_keras_serializable(package="keras_deconvnet")
class FCN8sBackbone(preset_utils.NamedConfigBackboneMixin, Backbone):
    """FCN-8s's feature network (Long, Shelhamer, Darrell, CVPR 2015).

    VGG16's convolution blocks (the same builder as `DeconvNetBackbone`'s encoder,
    with plain max pooling), then fc6 (`fc_kernel_size`) and fc7 (1x1) as
    convolutions. The outputs are a dict `{"pool3", "pool4", "fc7"}`: the three
    maps that `FCN8sImageSegmenter` scores and fuses.

    Two geometries: `input_padding=0` (default) pads every convolution "same", so
    the fused score maps line up at offset 0 and any input size works;
    `input_padding=100` is the original Caffe network (conv1_1 with pad 100, fc6
    unpadded), whose score maps are cropped at offsets the segmenter derives
    (5, 9 and 31 for VGG16): the geometry the authors' `fcn-8s-pascal.caffemodel`
    needs.

    Args:
        block_filters: encoder widths; 5 blocks. Defaults to VGG16's.
        block_depths: convolutions per block. Defaults to VGG16's.
        fc_units: width of fc6/fc7. Defaults to `4096`.
        fc_kernel_size: kernel of fc6. Defaults to `7`.
        use_batch_norm: BatchNorm after each convolution. Defaults to `False` (the
            original FCN had none).
        batch_norm_epsilon: Defaults to `1e-3`.
        input_padding: `0` or the original's `100`. Defaults to `0`.
        image_shape: `(height, width, 3)`. Defaults to `(None, None, 3)`.
        dtype: the dtype policy of every layer, as keras-hub's backbones take it.
        **kwargs: `keras_hub.models.Backbone` arguments.

    Example:

    >>> import numpy as np
    >>> backbone = FCN8sBackbone(block_filters=(4, 4, 8, 8, 8), fc_units=16,
    ...                          fc_kernel_size=3)
    >>> outputs = backbone(np.zeros((1, 64, 64, 3)))
    >>> [(k, tuple(outputs[k].shape)) for k in sorted(outputs)]
    [('fc7', (1, 2, 2, 16)), ('pool3', (1, 8, 8, 8)), ('pool4', (1, 4, 4, 8))]
    """

    CONFIG_KEYS = ("block_filters", "block_depths", "fc_units", "fc_kernel_size",
                   "use_batch_norm", "batch_norm_epsilon", "input_padding", "image_shape")

    def __init__(
        self,
        block_filters=vgg16_encoder.VGG16_BLOCK_FILTERS,
        block_depths=vgg16_encoder.VGG16_BLOCK_DEPTHS,
        fc_units: int = 4096,
        fc_kernel_size: int = 7,
        use_batch_norm: bool = False,
        batch_norm_epsilon: float = 1e-3,
        input_padding: int = 0,
        image_shape=(None, None, 3),
        dtype=None,
        **kwargs,
    ):
        image_shape = tuple(image_shape)
        block_filters = tuple(int(f) for f in block_filters)
        block_depths = tuple(int(d) for d in block_depths)
        if len(block_filters) != 5:
            raise ValueError(
                "FCN-8s needs 5 encoder blocks (its skips come from pool3 and pool4). "
                f"Received: block_filters={block_filters}"
            )
        if isinstance(input_padding, bool) or not isinstance(input_padding, int) \
                or input_padding < 0:
            raise ValueError(
                f"`input_padding` must be an int >= 0. Received: input_padding={input_padding!r}"
            )
        # "same" fc6 works at any pool5 size; the padded original needs pool5 >= kernel,
        # which its 100 pixels of padding give any input.
        vgg16_encoder.validate_vgg_config(
            image_shape, block_filters, block_depths, fc_units, fc_kernel_size,
            min_pool5_size=1,
        )
        bn = dict(use_batch_norm=use_batch_norm, batch_norm_epsilon=batch_norm_epsilon,
                  dtype=dtype)

        # === Functional model ===
        inputs = keras.Input(shape=image_shape, name="images")
        x, pools, _ = vgg16_encoder.apply_vgg16_encoder(
            inputs, block_filters, block_depths, pooling="max",
            input_padding=input_padding, **bn,
        )
        fc6_padding = "valid" if input_padding else "same"
        x = vgg16_encoder.conv_bn_relu(x, fc_units, fc_kernel_size, "fc6",
                                       padding=fc6_padding, **bn)
        x = vgg16_encoder.conv_bn_relu(x, fc_units, 1, "fc7", **bn)
        outputs = {"pool3": pools[2], "pool4": pools[3], "fc7": x}
        super().__init__(inputs=inputs, outputs=outputs, dtype=dtype, **kwargs)

        # === Config ===
        self._store_config(locals())
