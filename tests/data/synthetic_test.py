"""The synthetic shapes dataset: format, exact masks and boxes, determinism."""

import numpy as np
import pytest
import tensorflow as tf

from keras_deconvnet.data import SYNTHETIC_CLASSES, SYNTHETIC_INFO, boxes_from_instance_mask
from keras_deconvnet.data.synthetic import synthetic_dataset, synthetic_example


def test_example_format_and_consistency():
    for index in range(8):
        ex = synthetic_example(index, image_size=(48, 64))
        assert ex["image"].shape == (48, 64, 3) and ex["image"].dtype == np.uint8
        assert ex["class_mask"].shape == (48, 64) and ex["class_mask"].dtype == np.uint8
        assert ex["instance_mask"].dtype == np.int32
        n = len(ex["box_classes"])
        assert ex["boxes"].shape == (n, 4) and ex["boxes"].dtype == np.float32
        np.testing.assert_array_equal(ex["box_instances"], np.arange(1, n + 1))
        # Instance ids are exactly 1..N and every instance pixel has its box's class.
        ids = set(np.unique(ex["instance_mask"])) - {0}
        assert ids == set(range(1, n + 1))
        for instance, cls in zip(ex["box_instances"], ex["box_classes"]):
            assert 1 <= cls < len(SYNTHETIC_CLASSES)
            assert (ex["class_mask"][ex["instance_mask"] == instance] == cls).all()
        # Non-instance pixels are background or ignored fragments.
        assert set(np.unique(ex["class_mask"][ex["instance_mask"] == 0])) <= {0, 255}
        np.testing.assert_array_equal(
            ex["boxes"], boxes_from_instance_mask(ex["instance_mask"], ex["box_instances"]))


def test_images_hold_several_classes_and_overlaps():
    examples = [synthetic_example(i) for i in range(20)]
    counts = [len(e["box_classes"]) for e in examples]
    assert max(counts) >= 3 and np.mean(counts) >= 2
    classes = set(np.concatenate([e["box_classes"] for e in examples]))
    assert classes == set(range(1, len(SYNTHETIC_CLASSES)))
    # Some boxes overlap (occlusion happens).
    from keras_deconvnet.data import box_iou

    assert any((np.triu(box_iou(e["boxes"], e["boxes"]), 1) > 0).any() for e in examples)


def test_deterministic_per_seed_and_split():
    a = synthetic_example(3, seed=1)
    b = synthetic_example(3, seed=1)
    np.testing.assert_array_equal(a["image"], b["image"])
    np.testing.assert_array_equal(a["class_mask"], b["class_mask"])
    assert not np.array_equal(a["image"], synthetic_example(3, seed=2)["image"])
    assert not np.array_equal(a["image"], synthetic_example(3, "val", seed=1)["image"])
    assert not np.array_equal(a["image"], synthetic_example(4, seed=1)["image"])


def test_dataset_matches_examples_and_is_reproducible():
    ds = synthetic_dataset("val", num_examples=3, image_size=(32, 40), seed=5)
    spec = ds.element_spec
    assert spec["image"].shape == (32, 40, 3) and spec["boxes"].shape.as_list() == [None, 4]
    first = list(ds.as_numpy_iterator())
    second = list(ds.as_numpy_iterator())
    assert len(first) == 3
    for index, (x, y) in enumerate(zip(first, second)):
        ref = synthetic_example(index, "val", 5, (32, 40))
        for key in ("image", "class_mask", "instance_mask", "boxes", "box_classes"):
            np.testing.assert_array_equal(x[key], ref[key])
            np.testing.assert_array_equal(x[key], y[key])
        assert x["image_id"].decode() == ref["image_id"]


def test_info():
    assert SYNTHETIC_INFO.num_classes == 6
    assert SYNTHETIC_INFO.palette.shape == (256, 3)
    assert len({tuple(c) for c in SYNTHETIC_INFO.palette[:6]}) == 6


@pytest.mark.parametrize(
    "kwargs, match",
    [({"split": "training"}, "split"), ({"image_size": (8, 8)}, "image_size"),
     ({"seed": -1}, "seed"), ({"num_examples": 0}, "num_examples"),
     ({"max_objects": 0}, "max_objects")],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        synthetic_dataset(**kwargs)


def test_feeds_a_model_quickly():
    from keras_deconvnet.data import stage1_crops

    ds = stage1_crops(synthetic_dataset(num_examples=4, image_size=(64, 64)),
                      crop_size=32, resize_size=36, seed=0).batch(4)
    images, masks = next(iter(ds))
    assert images.dtype == tf.float32 and masks.dtype == tf.int32
    assert images.shape[1:] == (32, 32, 3)
