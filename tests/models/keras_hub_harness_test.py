"""keras-hub's own test harness (`keras_hub.src.tests.test_case.TestCase`) on our
families: `run_backbone_test` (serialization, eager and compiled predict, a
`tf.data` predict, mixed precision, quantization), `run_task_test` (predict and fit
with the preprocessor inside and split off) and `run_preset_test` (named
configurations and a saved preset directory).

Backend-agnostic: the default suite runs it on TensorFlow, and
`tests/backends/cross_backend_test.py` runs this file again under `KERAS_BACKEND=jax`
(and `torch` where installed), as keras-hub runs its suite once per backend. The
harness's `run_*` methods make the assertions (shapes, outputs, config round trips).
"""

from __future__ import annotations

import os

import keras
import numpy as np
import pytest
from keras import ops
from model_fixtures import IMAGE_SIZE, TINY_DECONVNET, TINY_FCN8S, smooth_images

from keras_deconvnet.models import (
    DeconvNetBackbone,
    DeconvNetImageSegmenter,
    FCN8sBackbone,
    FCN8sImageSegmenter,
)

pytest.importorskip("grain", reason="keras-hub's TestCase imports grain (test extra)")
from keras_hub.src.tests.test_case import TestCase  # noqa: E402

FAMILIES = {
    "deconvnet": (DeconvNetBackbone, DeconvNetImageSegmenter, TINY_DECONVNET,
                  (2, IMAGE_SIZE, IMAGE_SIZE, 4), "deconvnet_edge_small"),
    "fcn8s": (FCN8sBackbone, FCN8sImageSegmenter, TINY_FCN8S,
              {"pool3": (2, 8, 8, 8), "pool4": (2, 4, 4, 8), "fc7": (2, 2, 2, 16)},
              "fcn8s_edge_small"),
}


def _task_kwargs(family: str, num_classes: int = 3) -> dict:
    backbone_cls, task_cls, config, _, _ = FAMILIES[family]
    backbone = backbone_cls(**config)
    return {"backbone": backbone, "num_classes": num_classes,
            "preprocessor": task_cls.default_preprocessor(backbone)}


class _HarnessTest(TestCase):
    family = "deconvnet"

    def setUp(self):
        super().setUp()
        keras.utils.set_random_seed(0)
        self.raw_images = smooth_images(2)
        self.masks = np.random.default_rng(0).integers(
            0, 3, (2, IMAGE_SIZE, IMAGE_SIZE)).astype("int32")

    def test_backbone(self):
        backbone_cls, _, config, output_shape, _ = FAMILIES[self.family]
        # A backend tensor, as keras-hub's own tests pass: `compute_output_spec` of a
        # functional model on a NumPy array gives no shapes to its first layer.
        images = ops.convert_to_tensor(self.raw_images.astype("float32") - 120.0)
        self.run_backbone_test(cls=backbone_cls, init_kwargs=dict(config),
                               input_data=images, expected_output_shape=output_shape)

    def test_task(self):
        _, task_cls, _, _, _ = FAMILIES[self.family]
        self.run_task_test(cls=task_cls, init_kwargs=_task_kwargs(self.family),
                           train_data=(self.raw_images, self.masks),
                           expected_output_shape=(2, IMAGE_SIZE, IMAGE_SIZE, 3))

    def test_named_configuration_preset(self):
        _, task_cls, _, _, name = FAMILIES[self.family]
        images = smooth_images(2, (96, 96)).astype("float32")  # the smallest input
        self.run_preset_test(cls=task_cls, preset=name, input_data=images,
                             init_kwargs={"num_classes": 3},
                             expected_output_shape=(2, 96, 96, 3))

    def test_saved_preset(self):
        _, task_cls, _, _, _ = FAMILIES[self.family]
        segmenter = task_cls(**_task_kwargs(self.family))
        preset = str(segmenter.save_to_preset(self.get_temp_dir() + "/preset"))
        self.assertTrue(os.path.isfile(os.path.join(preset, "task.json")))
        converted = segmenter.preprocessor.image_converter(self.raw_images)
        expected = ops.convert_to_numpy(segmenter(converted, training=False))
        self.run_preset_test(cls=task_cls, preset=preset, input_data=converted,
                             expected_output=expected,
                             expected_labels=np.argmax(expected, axis=-1))
        backbone_cls = FAMILIES[self.family][0]
        self.run_preset_test(cls=backbone_cls, preset=preset, input_data=converted)


class DeconvNetHarnessTest(_HarnessTest):
    family = "deconvnet"


class FCN8sHarnessTest(_HarnessTest):
    family = "fcn8s"


del _HarnessTest  # only its two families are collected
