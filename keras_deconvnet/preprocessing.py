"""The one definition of input preprocessing, shared by training, inference and export.

DeconvNet's encoder comes from VGG16, whose ImageNet weights expect Caffe-style input:
BGR channel order, 0-255 range, per-channel ImageNet mean subtracted (what
`keras.applications.vgg16.preprocess_input` does). Every part of the package calls
`preprocess_images`, and presets and exports record `PREPROCESSING`, so training,
inference and deployed models cannot drift apart.
"""

from __future__ import annotations

import tensorflow as tf

# BGR means of ImageNet, as in Caffe's VGG16 and Keras's "caffe" mode.
BGR_MEAN = (103.939, 116.779, 123.68)

PREPROCESSING = {
    "mode": "caffe",
    "input_range": [0, 255],
    "channel_order": "BGR",
    "mean": list(BGR_MEAN),
    "std": None,
    "interpolation": "bilinear",
    "mask_interpolation": "nearest",
}


def preprocess_images(images) -> tf.Tensor:
    """RGB images in [0, 255] (any dtype) to the network's float32 input.

    Args:
        images: `(..., height, width, 3)` RGB, uint8 or float in [0, 255].

    Returns:
        float32 BGR images with the ImageNet mean subtracted.

    Example:

    >>> import numpy as np
    >>> preprocess_images(np.zeros((1, 2, 2, 3), np.uint8))[0, 0, 0].numpy().round(2)
    array([-103.94, -116.78, -123.68], dtype=float32)
    """
    images = tf.convert_to_tensor(images)
    if images.shape.rank is not None and (images.shape.rank < 3 or images.shape[-1] != 3):
        raise ValueError(
            "`images` must be RGB with 3 channels in the last axis. "
            f"Received: shape={tuple(images.shape)}"
        )
    images = tf.cast(images, tf.float32)
    return images[..., ::-1] - tf.constant(BGR_MEAN, tf.float32)


def deprocess_images(images) -> tf.Tensor:
    """Inverse of `preprocess_images`: network input back to RGB uint8."""
    images = tf.convert_to_tensor(images, tf.float32) + tf.constant(BGR_MEAN, tf.float32)
    return tf.cast(tf.clip_by_value(tf.round(images[..., ::-1]), 0, 255), tf.uint8)
