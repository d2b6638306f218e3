"""The tiny model configurations every test shares (keras-hub's habit: one small
config, built in the tests that need it, instead of a copy per file)."""

from __future__ import annotations

import keras
import numpy as np

from keras_deconvnet.models import (
    DeconvNetBackbone,
    DeconvNetImageSegmenter,
    FCN8sBackbone,
    FCN8sImageSegmenter,
)

IMAGE_SIZE = 64
TINY_DECONVNET = {
    "block_filters": (4, 4, 8, 8, 8),
    "block_depths": (1, 1, 2, 2, 2),
    "fc_units": 16,
    "fc_kernel_size": 2,
    "image_shape": (IMAGE_SIZE, IMAGE_SIZE, 3),
}
TINY_FCN8S = {
    "block_filters": (4, 4, 8, 8, 8),
    "block_depths": (1, 1, 2, 2, 2),
    "fc_units": 16,
    "fc_kernel_size": 3,
    "use_batch_norm": True,
    "image_shape": (IMAGE_SIZE, IMAGE_SIZE, 3),
}


def smooth_images(count: int, size=(IMAGE_SIZE, IMAGE_SIZE), seed: int = 0) -> np.ndarray:
    """Blobby RGB uint8 images (upsampled noise), so label maps have regions."""
    rng = np.random.default_rng(seed)
    small = rng.uniform(0, 255, (count, 4, 4, 3)).astype("float32")
    import tensorflow as tf

    return np.asarray(tf.image.resize(small, size, "bilinear")).round().astype(np.uint8)


def calibrate(segmenter, seed: int = 0):
    """BatchNorm statistics from data, so an untrained net's class scores are well
    separated (near-ties would flip labels on float rounding between runtimes)."""
    from keras_deconvnet.training import recompute_batchnorm_statistics

    size = segmenter.input_shape[1:3]
    size = tuple(s or IMAGE_SIZE for s in size)
    images = smooth_images(8, size, seed).astype("float32")
    recompute_batchnorm_statistics(segmenter, [images], num_batches=None)
    return segmenter


def tiny_deconvnet(num_classes: int = 3, seed: int = 0, calibrated: bool = False,
                   **overrides) -> DeconvNetImageSegmenter:
    """A ~30k-parameter DeconvNet segmenter with the family's preprocessor."""
    keras.utils.set_random_seed(seed)
    task_keys = ("activation", "class_names", "palette")
    task_kwargs = {k: overrides.pop(k) for k in task_keys if k in overrides}
    backbone = DeconvNetBackbone(**{**TINY_DECONVNET, **overrides})
    segmenter = DeconvNetImageSegmenter(
        backbone, num_classes,
        preprocessor=DeconvNetImageSegmenter.default_preprocessor(backbone), **task_kwargs,
    )
    return calibrate(segmenter, seed) if calibrated else segmenter


def tiny_fcn8s(num_classes: int = 3, seed: int = 0, **overrides) -> FCN8sImageSegmenter:
    keras.utils.set_random_seed(seed)
    backbone = FCN8sBackbone(**{**TINY_FCN8S, **overrides})
    return FCN8sImageSegmenter(
        backbone, num_classes, preprocessor=FCN8sImageSegmenter.default_preprocessor(backbone)
    )
