"""DatasetInfo, the VOC colour map and box helpers."""

import numpy as np
import pytest
import tensorflow as tf

from keras_deconvnet.data.example_format import (
    DatasetInfo,
    bitwise_palette,
    boxes_from_instance_mask,
    tf_box_from_mask,
)


def test_bitwise_palette_known_colours():
    palette = bitwise_palette()
    assert palette.shape == (256, 3) and palette.dtype == np.uint8
    assert tuple(palette[0]) == (0, 0, 0)
    assert tuple(palette[1]) == (128, 0, 0)
    assert tuple(palette[15]) == (192, 128, 128)  # person
    assert tuple(palette[255]) == (224, 224, 192)  # ignore / border


def test_dataset_info_validation():
    with pytest.raises(ValueError, match="palette"):
        DatasetInfo("x", ("background", "a"), np.zeros((3, 3)))
    with pytest.raises(ValueError, match="class_names"):
        DatasetInfo("x", ("background",), bitwise_palette())


def test_boxes_from_masks():
    mask = np.zeros((10, 12), np.int32)
    mask[3:8, 2:5] = 1
    mask[0, 11] = 2
    np.testing.assert_array_equal(
        boxes_from_instance_mask(mask, [1, 2, 3]), [[3, 2, 8, 5], [0, 11, 1, 12], [0, 0, 0, 0]]
    )
    np.testing.assert_array_equal(tf_box_from_mask(tf.constant(mask == 1)), [[3, 2, 8, 5]])
    assert tf_box_from_mask(tf.zeros((4, 4), tf.bool)).shape == (0, 4)
