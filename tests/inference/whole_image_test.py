"""Input sizes under a model's minimum are one-line ValueErrors, in every whole-image path."""

import numpy as np
import pytest

from keras_deconvnet.inference.whole_image import (
    check_input_size,
    minimum_input_size,
    predict_whole_image,
    whole_image_probabilities,
)
from keras_deconvnet.models import DeconvNetImageSegmenter
from keras_deconvnet.models.deconvnet.deconvnet_presets import DECONVNET_PRESETS


@pytest.fixture(scope="module")
def edge_small():
    return DeconvNetImageSegmenter.from_preset("deconvnet_edge_small", num_classes=3)


def test_the_minimum_is_the_smallest_size_that_runs(edge_small):
    smallest = minimum_input_size(edge_small)
    assert smallest == 65
    image = np.zeros((smallest, smallest, 3), np.uint8)
    assert whole_image_probabilities(edge_small, image, (smallest, smallest)).shape == (
        65, 65, 3)
    with pytest.raises(ValueError, match="at least 65x65 pixels.*Received: 64x64"):
        whole_image_probabilities(edge_small, image, (64, 64))
    with pytest.raises(ValueError, match="at least 65x65"):
        predict_whole_image(edge_small, image, input_size=(64, 96))


def test_fixed_size_models_state_their_own_minimum():
    config = DECONVNET_PRESETS["deconvnet_edge"]["config"]
    model = DeconvNetImageSegmenter.from_preset(
        "deconvnet_edge", num_classes=2, image_shape=(224, 224, 3))
    assert config["fc_kernel_size"] == 7
    assert minimum_input_size(model) == 193
    check_input_size(model, (193, 400))
    with pytest.raises(ValueError, match="193x193"):
        check_input_size(model, (192, 400))


def test_keras_predict_under_the_minimum_is_a_clear_value_error(edge_small):
    """`segmenter.predict` on a dynamic-size model: the layer that cannot run says why
    (was a bare InvalidArgumentError from the graph)."""
    with pytest.raises(ValueError, match="network input is too small.*65 pixels"):
        edge_small.predict(np.zeros((1, 64, 64, 3)), verbose=0)
    with pytest.raises(ValueError, match="fc6's 3x3 kernel.*gives 2x2"):
        edge_small(np.zeros((1, 64, 64, 3), "float32"))
