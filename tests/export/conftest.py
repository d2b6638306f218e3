"""Fixtures for the exporter tests: a small, briefly trained DeconvNet and its exports.

An untrained network's class scores are nearly tied everywhere, so any rounding flips
labels; the model here is trained for a few epochs on a synthetic task (the label of
a pixel is its dominant colour channel where it is bright, else background) and its
BatchNorm statistics are set from data, so its logits are separated like a real
model's.
"""

import warnings

import keras
import numpy as np
import pytest
from model_fixtures import calibrate, tiny_deconvnet

from keras_deconvnet.export import ExportConfig, export_all, synthetic_images

IMAGE_SIZE = (64, 64)
NUM_CLASSES = 4


def synthetic_labels(images):
    return np.where(images.max(-1) > 150, images.argmax(-1) + 1, 0).astype(np.int32)


def small_model(num_classes=NUM_CLASSES, **overrides):
    """The shared tiny DeconvNet segmenter (64x64)."""
    return tiny_deconvnet(num_classes=num_classes, **overrides)


@pytest.fixture(scope="session")
def trained():
    """`(model, calibration images, validation images, validation labels)`."""
    keras.utils.set_random_seed(0)
    model = calibrate(small_model())
    images = synthetic_images(32, IMAGE_SIZE, seed=5)
    # 1e-2: from the Caffe-style decoder initialisation (Gaussian, std 0.01), 3e-3 for
    # 30 epochs left near-tied scores that flipped 2% of float16 labels.
    model.compile(keras.optimizers.Adam(1e-2))
    model.fit(images, synthetic_labels(images), batch_size=8, epochs=30, verbose=0)
    calibrate(model)
    validation = synthetic_images(4, IMAGE_SIZE, seed=0)
    return model, images, validation, synthetic_labels(validation)


@pytest.fixture(scope="session")
def exported(trained, tmp_path_factory):
    """`export_all` of the trained model to every format (shared by several tests)."""
    model, images, validation, labels = trained
    out = tmp_path_factory.mktemp("exports") / "out"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        config = ExportConfig(
            class_names=["background", "red", "green", "blue"], representative_samples=32
        )
        return export_all(
            model, out, config, representative_data=images,
            parity_images=validation, parity_labels=labels,
        )


@pytest.fixture
def make_model():
    """`make_model(**overrides)`: a fresh, untrained small DeconvNet (64x64, 4 classes)."""
    return small_model
