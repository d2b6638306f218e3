"""The model family on the Keras backend of this run (`KERAS_BACKEND`): presets load
through keras-hub's base classes and ours, `predict` on raw RGB uint8 gives
TensorFlow's outputs, `fit` lowers the loss from NumPy arrays and from `tf.data`,
and the metric and losses count the same on every backend.

On the TensorFlow run (the default suite) the comparisons with TensorFlow are
skipped; `tests/backends/cross_backend_test.py` runs this file under
`KERAS_BACKEND=jax` and `torch` with `KERAS_DECONVNET_TF_REFERENCE` pointing at
presets and outputs it wrote under TensorFlow, and `KERAS_DECONVNET_BACKEND_OUTPUT`
at a directory for a preset trained here, which it then loads and exports under
TensorFlow.
"""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import keras
import keras_hub
import numpy as np
import pytest
from model_fixtures import IMAGE_SIZE, smooth_images, tiny_deconvnet

from keras_deconvnet.metrics import MeanIoU, confusion_matrix
from keras_deconvnet.models import (
    DeconvNetImageSegmenter,
    EDeconvNetImageSegmenter,
    FCN8sImageSegmenter,
    named_configs,
)
from keras_deconvnet.training import ClassWeightedCrossentropy

REFERENCE = os.environ.get("KERAS_DECONVNET_TF_REFERENCE")
OUTPUT = os.environ.get("KERAS_DECONVNET_BACKEND_OUTPUT")
# The reference presets cross_backend_test writes, and the class that loads each.
REFERENCE_PRESETS = {"deconvnet": DeconvNetImageSegmenter, "fcn8s": FCN8sImageSegmenter,
                     "edeconvnet": EDeconvNetImageSegmenter}
PAPER_CONFIGS = ("deconvnet_vgg16_voc", "fcn8s_vgg16_voc")
SMALL_CONFIGS = ("deconvnet_edge_small", "fcn8s_edge_small")


def learnable_data(count: int = 8, seed: int = 0):
    """Images and masks whose label is a function of the pixel (red above 128)."""
    images = smooth_images(count, seed=seed)
    masks = (images[..., 0] > 128).astype("int32")
    return images, masks


@pytest.mark.parametrize("name", [
    n if n in SMALL_CONFIGS else pytest.param(n, marks=pytest.mark.slow)
    for n in named_configs() if n not in PAPER_CONFIGS])
def test_named_configurations_build_and_predict(name):
    cls = DeconvNetImageSegmenter if name.startswith("deconvnet") else FCN8sImageSegmenter
    segmenter = cls.from_preset(name, num_classes=3)
    size = segmenter.backbone.image_shape[0] or 96
    out = segmenter.predict(smooth_images(1, (size, size)), verbose=0)
    assert out.shape == (1, size, size, 3) and np.all(np.isfinite(out))
    expected = named_configs()[name]["metadata"].get("params")
    if expected is not None:
        assert cls.from_preset(name).count_params() == expected


@pytest.mark.slow
@pytest.mark.parametrize("name", PAPER_CONFIGS)
def test_paper_configurations_build(name):
    cls = DeconvNetImageSegmenter if name.startswith("deconvnet") else FCN8sImageSegmenter
    assert cls.from_preset(name).count_params() == named_configs()[name]["metadata"]["params"]


@pytest.mark.skipif(REFERENCE is None, reason="compares with TensorFlow's outputs when "
                    "cross_backend_test runs this file under another backend")
@pytest.mark.parametrize("family", sorted(REFERENCE_PRESETS))
def test_presets_load_and_predict_tensorflows_outputs(family):
    reference = Path(REFERENCE)
    expected = np.load(reference / f"{family}.npz")
    preset = str(reference / family)
    cls = REFERENCE_PRESETS[family]
    models = [cls.from_preset(preset)]
    if family != "edeconvnet":  # a pair of presets, which keras-hub cannot name
        models.append(keras_hub.models.ImageSegmenter.from_preset(preset))
        assert type(models[-1]) is cls
    for model in models:
        scores = model.predict(expected["images"], verbose=0)
        np.testing.assert_allclose(scores, expected["scores"], rtol=1e-5, atol=1e-5)
        np.testing.assert_array_equal(np.argmax(scores, -1), expected["labels"])


def test_fit_lowers_the_loss_from_numpy_arrays():
    images, masks = learnable_data()
    segmenter = tiny_deconvnet(num_classes=2)
    segmenter.compile(optimizer=keras.optimizers.Adam(1e-2))
    history = segmenter.fit(images, masks, batch_size=4, epochs=12, verbose=0)
    losses = history.history["loss"]
    assert losses[-1] < 0.9 * losses[0], losses
    if OUTPUT is not None:  # for cross_backend_test: load it under TensorFlow
        path = segmenter.save_to_preset(Path(OUTPUT) / "trained")
        np.savez(Path(OUTPUT) / "trained.npz", images=images,
                 scores=segmenter.predict(images, verbose=0))
        (Path(OUTPUT) / "backend.json").write_text(
            json.dumps({"backend": keras.config.backend(), "preset": str(path)}))


@pytest.mark.skipif(importlib.util.find_spec("tensorflow") is None,
                    reason="tf.data needs TensorFlow installed")
def test_fit_lowers_the_loss_from_tf_data():
    import tensorflow as tf

    images, masks = learnable_data()
    dataset = tf.data.Dataset.from_tensor_slices((images, masks)).batch(4)
    segmenter = tiny_deconvnet(num_classes=2)
    segmenter.compile(optimizer=keras.optimizers.Adam(1e-2))
    losses = segmenter.fit(dataset, epochs=12, verbose=0).history["loss"]
    assert losses[-1] < 0.9 * losses[0], losses


def test_mean_iou_counts_as_the_numpy_reference():
    rng = np.random.default_rng(0)
    y_true = rng.integers(0, 4, (3, 17, 13))
    y_true[0, :2] = 255
    logits = rng.normal(size=(3, 17, 13, 4)).astype("float32")
    metric = MeanIoU(4)
    for _ in range(3):  # accumulates
        metric.update_state(y_true, logits)
    expected = 3 * confusion_matrix(y_true, logits.argmax(-1), 4)
    np.testing.assert_array_equal(metric.confusion_matrix(), expected)
    assert float(metric.result()) == pytest.approx(metric.result_dict()["mean_iou"], rel=1e-6)
    metric.reset_state()
    assert metric.confusion_matrix().sum() == 0


def test_mean_iou_stays_exact_past_float32_counts():
    # 2^24 + 1 pixels of one class: float32 alone would lose the last one.
    metric = MeanIoU(2, ignore_class=None)
    y = np.zeros((1, 4096, 4096), "int32")
    metric.update_state(y, y)
    metric.update_state(np.zeros((1, 1), "int32"), np.zeros((1, 1), "int32"))
    assert metric.confusion_matrix()[0, 0] == 2**24 + 1


def test_class_weighted_loss_with_unit_weights_is_kerass():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 3, (2, 5, 7))
    y[0, 0] = 255
    logits = rng.normal(size=(2, 5, 7, 3)).astype("float32")
    ours = ClassWeightedCrossentropy([1.0, 1.0, 1.0])(y, logits)
    kerass = keras.losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=255)(
        y, logits)
    assert float(ours) == pytest.approx(float(kerass), rel=1e-5)


def test_the_backend_is_the_one_asked_for():
    assert keras.config.backend() == os.environ.get("KERAS_BACKEND", "tensorflow")
    assert IMAGE_SIZE == 64
