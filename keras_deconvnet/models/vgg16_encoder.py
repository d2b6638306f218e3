"""The VGG16 encoder shared by DeconvNet and FCN-8s: one builder, named as Keras's VGG16.

Both networks start with VGG16's five convolution blocks; they differ in the pooling
(DeconvNet keeps each pooling's switches for its unpooling layers, FCN-8s pools
plainly) and in what follows. Layer names are Keras's `keras.applications.VGG16`
names (`block1_conv1` ... `block5_conv3`), so ImageNet VGG16 weights load by name.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras

from keras_deconvnet.layers import MaxPoolWithArgmax

VGG16_BLOCK_FILTERS = (64, 128, 256, 512, 512)
VGG16_BLOCK_DEPTHS = (2, 2, 3, 3, 3)
VGG16_BLOCKS = (VGG16_BLOCK_FILTERS, VGG16_BLOCK_DEPTHS)
POOLINGS = ("argmax", "max")


def conv_bn_relu(
    x,
    filters: int,
    kernel_size: int,
    name: str,
    use_batch_norm: bool,
    batch_norm_epsilon: float = 1e-3,
    padding: str = "same",
    conv_cls=keras.layers.Conv2D,
    batch_norm_beta_initializer="zeros",
    dtype=None,
    **conv_kwargs,
):
    """Convolution, optional BatchNorm, ReLU, named `name`, `name_bn`, `name_relu`.

    `conv_kwargs` go to the convolution (e.g. `kernel_initializer`);
    `batch_norm_beta_initializer` is the BatchNorm shift's (the original's BN
    layers: `shift_filler { type: 'constant' value: 0.001 }`). `dtype` (a dtype
    policy, as keras-hub's backbones pass it to every layer) goes to all three.
    """
    x = conv_cls(filters, kernel_size, padding=padding, name=name, dtype=dtype,
                 **conv_kwargs)(x)
    if use_batch_norm:
        x = keras.layers.BatchNormalization(
            epsilon=batch_norm_epsilon, beta_initializer=batch_norm_beta_initializer,
            dtype=dtype, name=f"{name}_bn")(x)
    return keras.layers.ReLU(dtype=dtype, name=f"{name}_relu")(x)


def apply_vgg16_encoder(
    x,
    block_filters: Sequence[int] = VGG16_BLOCK_FILTERS,
    block_depths: Sequence[int] = VGG16_BLOCK_DEPTHS,
    use_batch_norm: bool = True,
    batch_norm_epsilon: float = 1e-3,
    pooling: str = "argmax",
    input_padding: int = 0,
    batch_norm_beta_initializer="zeros",
    dtype=None,
):
    """Applies VGG16's convolution blocks, each ending in a 2x2 max pooling.

    Args:
        x: the input tensor `(batch, height, width, channels)`.
        block_filters: widths of the blocks.
        block_depths: 3x3 convolutions per block.
        use_batch_norm: BatchNorm after each convolution.
        batch_norm_epsilon: the BatchNorm epsilon.
        pooling: `"argmax"` (`MaxPoolWithArgmax`, keeping the switches) or `"max"`
            (Caffe's ceil-mode max pooling, TensorFlow's `"same"` for 2x2/2).
        input_padding: zeros added on every side before `block1_conv1`, which then
            pads nothing (FCN's `conv1_1` with pad 100 is `input_padding=100`).
        batch_norm_beta_initializer: the BatchNorm shifts' initializer.
        dtype: the dtype policy of every layer (`None`: Keras's global policy).

    Returns:
        `(x, pools, switches)`: the pool5 output, the output of every pooling, and
        (with `"argmax"`) every pooling's switches, else an empty list.
    """
    if pooling not in POOLINGS:
        raise ValueError(f"`pooling` must be one of {POOLINGS}. Received: pooling={pooling!r}")
    if input_padding:
        x = keras.layers.ZeroPadding2D(input_padding, dtype=dtype,
                                       name="block1_input_padding")(x)
    pools, switches = [], []
    for block, (filters, depth) in enumerate(zip(block_filters, block_depths), 1):
        for i in range(1, depth + 1):
            padding = "valid" if input_padding and block == 1 and i == 1 else "same"
            x = conv_bn_relu(x, filters, 3, f"block{block}_conv{i}", use_batch_norm,
                             batch_norm_epsilon, padding=padding,
                             batch_norm_beta_initializer=batch_norm_beta_initializer,
                             dtype=dtype)
        if pooling == "argmax":
            x, block_switches = MaxPoolWithArgmax(dtype=dtype, name=f"block{block}_pool")(x)
            switches.append(block_switches)
        else:
            x = keras.layers.MaxPooling2D(2, padding="same", dtype=dtype,
                                          name=f"block{block}_pool")(x)
        pools.append(x)
    return x, pools, switches


def minimum_input_size(num_blocks: int, smallest_pool5: int) -> int:
    """The smallest input side (pixels) whose pool5 map is `smallest_pool5` wide.

    Each of the `num_blocks` 2x2 poolings rounds up (`ceil(size / 2)`), so the input
    needs more than `(smallest_pool5 - 1) * 2**num_blocks` pixels.

    >>> minimum_input_size(5, 3), minimum_input_size(5, 7), minimum_input_size(5, 1)
    (65, 193, 1)
    """
    return (smallest_pool5 - 1) * 2**num_blocks + 1


def validate_vgg_config(
    image_shape: Sequence,
    block_filters: Sequence[int],
    block_depths: Sequence[int],
    fc_units: int,
    fc_kernel_size: int,
    min_pool5_size: int | None = None,
) -> None:
    """Raises `ValueError` naming the argument for an inconsistent configuration.

    `min_pool5_size` (default `fc_kernel_size`) is the smallest pool5 map the
    network accepts; the input must be large enough to reach it.
    """
    if len(image_shape) != 3 or image_shape[-1] is None:
        raise ValueError(
            "`image_shape` must be (height, width, channels) with known channels. "
            f"Received: image_shape={tuple(image_shape)}"
        )
    if not block_filters or len(block_filters) != len(block_depths):
        raise ValueError(
            "`block_filters` and `block_depths` must be non-empty and of the same "
            f"length. Received: block_filters={tuple(block_filters)}, "
            f"block_depths={tuple(block_depths)}"
        )
    if min(block_filters) < 1 or min(block_depths) < 1:
        raise ValueError(
            "Every entry of `block_filters` and `block_depths` must be >= 1. "
            f"Received: block_filters={tuple(block_filters)}, "
            f"block_depths={tuple(block_depths)}"
        )
    if fc_units < 1 or fc_kernel_size < 1:
        raise ValueError(
            "`fc_units` and `fc_kernel_size` must be >= 1. "
            f"Received: fc_units={fc_units}, fc_kernel_size={fc_kernel_size}"
        )
    smallest = fc_kernel_size if min_pool5_size is None else min_pool5_size
    factor = 2 ** len(block_filters)
    for size in image_shape[:2]:
        if size is not None and -(-size // factor) < smallest:
            raise ValueError(
                f"The input is too small: {len(block_filters)} poolings shrink it by "
                f"{factor} to {-(-size // factor)}, less than fc_kernel_size="
                f"{smallest}. Use an input of at least "
                f"{minimum_input_size(len(block_filters), smallest)} "
                f"pixels or a smaller fc_kernel_size. "
                f"Received: image_shape={tuple(image_shape)}"
            )


def validate_num_classes(num_classes) -> int:
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(
            "`num_classes` must be an int >= 2 (background included). "
            f"Received: num_classes={num_classes!r}"
        )
    return num_classes
