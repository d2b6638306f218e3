"""Stage 1 and stage 2 crops on a hand-made 100x100 example with known geometry."""

import numpy as np
import pytest
import tensorflow as tf

from keras_deconvnet.data import FileProposals, stage1_crops, stage2_crops, synthetic_dataset
from keras_deconvnet.data.crops import Stage2CropConfig

# A: rows 10..29, cols 10..29, class 1 (instance 1), with an ignore row 30 under it.
# B: rows 50..89, cols 60..99 (touches the right border), class 2 (instance 2).
# C: rows 40..49, cols 45..55, class 3 (instance 3), next to B.
BOXES = np.array([[10, 10, 30, 30], [50, 60, 90, 100], [40, 45, 50, 56]], np.float32)


def hand_example():
    image = np.random.default_rng(0).integers(0, 256, (100, 100, 3)).astype(np.uint8)
    class_mask = np.zeros((100, 100), np.uint8)
    instance_mask = np.zeros((100, 100), np.int32)
    for instance, (box, cls) in enumerate(zip(BOXES.astype(int), (1, 2, 3)), 1):
        y0, x0, y1, x1 = box
        class_mask[y0:y1, x0:x1] = cls
        instance_mask[y0:y1, x0:x1] = instance
    class_mask[30, 10:30] = 255
    return {
        "image_id": "hand",
        "image": image,
        "class_mask": class_mask,
        "instance_mask": instance_mask,
        "boxes": BOXES,
        "box_classes": np.array([1, 2, 3], np.int32),
        "box_instances": np.array([1, 2, 3], np.int32),
    }


def hand_dataset(**extra):
    example = hand_example()
    example.update(extra)
    return tf.data.Dataset.from_tensors(example)


def window(array, y0, x0, size, fill):
    """array[y0:y0+size, x0:x0+size] with `fill` outside the array."""
    pad = size
    padded = np.pad(array, [(pad, pad), (pad, pad)] + [(0, 0)] * (array.ndim - 2),
                    constant_values=fill)
    return padded[y0 + pad: y0 + pad + size, x0 + pad: x0 + pad + size]


def stage1_expected(instance, y0, x0, size):
    ex = hand_example()
    cls = np.where(ex["instance_mask"] == instance, ex["class_mask"], 0)
    cls = np.where(ex["class_mask"] == 255, 255, cls)
    return window(cls, y0, x0, size, 255), window(ex["image"], y0, x0, size, 0)


def test_stage1_identity_geometry_and_label_rule():
    # context 2 doubles each box; crop == resize == window side -> pixel-exact.
    crops = list(stage1_crops(hand_dataset(), crop_size=40, resize_size=40, context=2.0,
                              training=False).take(1))
    image, mask = crops[0]
    exp_mask, exp_image = stage1_expected(1, 0, 0, 40)
    np.testing.assert_array_equal(mask.numpy(), exp_mask)
    np.testing.assert_allclose(image.numpy(), exp_image, atol=0.01)
    assert mask.dtype == tf.int32 and image.dtype == tf.float32
    assert set(np.unique(mask)) == {0, 1, 255}


def test_stage1_pads_past_border_and_zeroes_other_objects():
    ds = stage1_crops(hand_dataset(), crop_size=80, resize_size=80, context=2.0,
                      training=False)
    crops = list(ds)
    assert len(crops) == 3  # one per object (the first one is 80x80 too).
    image, mask = crops[1]  # B: window [30, 40, 110, 120], past bottom and right.
    exp_mask, exp_image = stage1_expected(2, 30, 40, 80)
    np.testing.assert_array_equal(mask.numpy(), exp_mask)
    np.testing.assert_allclose(image.numpy(), exp_image, atol=0.01)
    assert (mask.numpy()[70:, :] == 255).all() and (mask.numpy()[:, 60:] == 255).all()
    assert (image.numpy()[70:, :] == 0).all()
    # C lies inside B's window but is background there.
    assert (mask.numpy()[10:20, 5:16] == 0).all()
    # ...and in C's own crop, C is 3 and B is background.
    _, mask_c = crops[2]
    assert 3 in mask_c.numpy() and 2 not in mask_c.numpy()


def test_stage1_clip_to_image_has_no_padding():
    ds = stage1_crops(hand_dataset(), crop_size=32, resize_size=32, context=2.0,
                      training=False, clip_to_image=True)
    _, mask_b = list(ds)[1]
    # Clipped window [30, 40, 100, 100]: no padding, B reaches the right edge.
    assert 255 not in mask_b.numpy()
    column = mask_b.numpy()[:, -1]
    rows = 30 + (np.arange(32) + 0.5) * 70 / 32
    np.testing.assert_array_equal(column, np.where((rows >= 50) & (rows < 90), 2, 0))


def test_stage1_random_crop_and_flip_match_a_window_of_the_resized_crop():
    # context 2.4 -> window [-4, -4, 44, 44] = 48 px, resize 48 -> scale 1; crop 40.
    full_mask, full_image = stage1_expected(1, -4, -4, 48)
    seen_flip = set()
    ds = stage1_crops(hand_dataset(), crop_size=40, resize_size=48, context=2.4,
                      training=True, seed=3).take(1).repeat(12)
    for image, mask in ds:
        image, mask = image.numpy(), mask.numpy()

        def window_at(array, oy, ox, flip):
            out = array[oy:oy + 40, ox:ox + 40]
            return out[:, ::-1] if flip else out

        # The image (random pixels) pins down the offset and flip.
        matches = [
            (oy, ox, flip)
            for oy in range(9) for ox in range(9) for flip in (False, True)
            if np.allclose(image, window_at(full_image, oy, ox, flip), atol=0.01)
        ]
        assert len(matches) == 1, "crop is not a (flipped) window of the resized crop"
        np.testing.assert_array_equal(mask, window_at(full_mask, *matches[0]))
        seen_flip.add(matches[0][2])
    assert seen_flip == {False, True}


def test_stage1_seed_reproducible_and_raw_rgb():
    def run():
        ds = stage1_crops(hand_dataset(), crop_size=40, resize_size=48, seed=7)
        return [m.numpy() for _, m in ds]

    assert all(np.array_equal(a, b) for a, b in zip(run(), run()))
    image, _ = next(iter(stage1_crops(hand_dataset(), crop_size=40, resize_size=40,
                                      context=2.0, training=False)))
    # Raw RGB 0-255 (zeros where the window leaves the image): the segmenter's
    # preprocessor subtracts the mean inside `fit`.
    assert image.numpy().min() >= 0.0 and image.numpy().max() <= 255.0


def test_stage2_keeps_overlapping_proposals_and_labels_all_classes():
    proposals = np.array(
        [[0, 0, 40, 40],      # IoU 0.25 with A: dropped
         [50, 60, 90, 100],   # B exactly: kept
         [0, 50, 40, 90],     # no overlap: dropped
         [50, 70, 90, 110]],  # IoU 0.6 with B, 10 columns past the border: kept
        np.float32,
    )
    ds = stage2_crops(hand_dataset(), lambda image: proposals, Stage2CropConfig(
        iou_threshold=0.5, crop_size=40, resize_size=40, context=1.0, training=False))
    crops = list(ds)
    assert len(crops) == 2
    ex = hand_example()
    (image1, mask1), (image2, mask2) = crops
    np.testing.assert_array_equal(mask1.numpy(), ex["class_mask"][50:90, 60:100])
    np.testing.assert_allclose(image1.numpy(), ex["image"][50:90, 60:100], atol=0.01)
    np.testing.assert_array_equal(mask2.numpy(), window(ex["class_mask"], 50, 70, 40, 255))
    assert (mask2.numpy()[:, 30:] == 255).all() and (image2.numpy()[:, 30:] == 0).all()

    one = list(stage2_crops(hand_dataset(), lambda image: proposals, Stage2CropConfig(
        max_per_image=1, crop_size=40, resize_size=40, training=False)))
    assert len(one) == 1


def test_stage2_reads_proposals_from_examples_and_files(tmp_path):
    boxes = np.array([[8, 8, 32, 32]], np.float32)  # IoU 400/576 with A
    exact = Stage2CropConfig(crop_size=24, resize_size=24, context=1.0, training=False)
    ds = stage2_crops(hand_dataset(proposals=boxes), config=exact)
    (_, mask), = list(ds)
    np.testing.assert_array_equal(mask.numpy(), hand_example()["class_mask"][8:32, 8:32])

    np.savetxt(tmp_path / "hand.txt", boxes, delimiter=",")
    ds = stage2_crops(hand_dataset(), FileProposals(tmp_path, box_format="yxyx"), exact)
    (_, mask_from_file), = list(ds)
    np.testing.assert_array_equal(mask_from_file.numpy(), mask.numpy())


def test_stage2_on_synthetic_with_sliding_windows():
    from keras_deconvnet.data import SlidingWindowProposals

    ds = stage2_crops(synthetic_dataset(num_examples=2, image_size=(64, 64)),
                      SlidingWindowProposals(max_proposals=20),
                      Stage2CropConfig(iou_threshold=0.3, max_per_image=3, crop_size=32,
                                       resize_size=36, seed=0))
    pairs = list(ds)
    assert 1 <= len(pairs) <= 6
    for image, mask in pairs:
        assert image.shape == (32, 32, 3) and mask.shape == (32, 32)
        assert set(np.unique(mask.numpy())) <= set(range(6)) | {255}


def test_bad_arguments():
    with pytest.raises(ValueError, match="resize_size"):
        stage1_crops(hand_dataset(), crop_size=50, resize_size=40)
    with pytest.raises(ValueError, match="context"):
        stage1_crops(hand_dataset(), context=0)
    with pytest.raises(ValueError, match="common format"):
        stage1_crops(tf.data.Dataset.from_tensors({"image": tf.zeros((4, 4, 3))}))
    with pytest.raises(ValueError, match="proposals"):
        stage2_crops(hand_dataset())
    with pytest.raises(ValueError, match="iou_threshold"):
        Stage2CropConfig(iou_threshold=1.5)
    with pytest.raises(ValueError, match="max_per_image"):
        Stage2CropConfig(max_per_image=0)
    with pytest.raises(ValueError, match="resize_size"):
        Stage2CropConfig(crop_size=50, resize_size=40)
    with pytest.raises(ValueError, match="Stage2CropConfig"):
        stage2_crops(hand_dataset(), lambda image: BOXES, {"iou_threshold": 0.5})


def test_images_without_objects_or_matching_proposals_give_no_crops():
    empty = hand_example()
    empty.update(boxes=np.zeros((0, 4), np.float32), box_classes=np.zeros((0,), np.int32),
                 box_instances=np.zeros((0,), np.int32))
    ds = tf.data.Dataset.from_tensors(empty).concatenate(hand_dataset())
    assert len(list(stage1_crops(ds, crop_size=16, resize_size=16))) == 3
    far = np.array([[0, 60, 10, 70]], np.float32)
    assert list(stage2_crops(hand_dataset(), lambda image: far,
                             Stage2CropConfig(crop_size=16, resize_size=16))) == []
