import numpy as np
import pytest

from keras_deconvnet.inference import (
    aggregate_proposals,
    crop_proposals,
    predict_proposals,
    predict_whole_image,
    sliding_windows,
)
from model_fixtures import tiny_deconvnet

TINY = dict(num_classes=3, image_shape=(64, 64, 3), block_filters=(4, 4, 8, 8, 8),
            fc_units=16, fc_kernel_size=2)


def _maps(values, size=2, channels=2):
    """One constant (size, size, channels) map per value; class c holds value * (c + 1)."""
    scale = np.arange(1, channels + 1, dtype=np.float32)
    return np.array([np.ones((size, size, channels), np.float32) * v * scale for v in values])


class TestAggregate:
    BOXES = [[0, 0, 2, 2], [1, 1, 3, 3]]

    def test_max(self):
        out = aggregate_proposals(_maps([1.0, 3.0]), self.BOXES, (3, 4), "max")
        expected = np.array([[1, 1, 0, 0], [1, 3, 3, 0], [0, 3, 3, 0]], np.float32)
        np.testing.assert_array_equal(out[..., 0], expected)
        np.testing.assert_array_equal(out[..., 1], 2 * expected)

    def test_mean(self):
        out = aggregate_proposals(_maps([1.0, 3.0]), self.BOXES, (3, 4), "mean")
        expected = np.array([[1, 1, 0, 0], [1, 2, 3, 0], [0, 3, 3, 0]], np.float32)
        np.testing.assert_array_equal(out[..., 0], expected)

    def test_maps_are_resized_into_their_boxes(self):
        maps = np.zeros((1, 2, 2, 1), np.float32)
        maps[0, :, 1] = 1.0  # right half
        out = aggregate_proposals(maps, [[0, 2, 4, 6]], (4, 8))[..., 0]
        assert out[:, :2].sum() == 0 and out[:, 6:].sum() == 0
        np.testing.assert_array_equal(out[:, 5], 1.0)
        np.testing.assert_array_equal(out[:, 2], 0.0)

    def test_boxes_are_clipped_and_rounded_outwards(self):
        out = aggregate_proposals(_maps([2.0], size=1), [[-5, 0.5, 1.5, 99]], (3, 3))
        np.testing.assert_array_equal(out[..., 0], [[2, 2, 2], [2, 2, 2], [0, 0, 0]])

    def test_bad_arguments(self):
        with pytest.raises(ValueError, match="aggregation"):
            aggregate_proposals(_maps([1.0]), [[0, 0, 1, 1]], (2, 2), "median")
        with pytest.raises(ValueError, match="one map per box"):
            aggregate_proposals(_maps([1.0]), self.BOXES, (2, 2))


def test_crops_warp_each_box():
    image = np.arange(6 * 8 * 3, dtype=np.uint8).reshape(6, 8, 3)
    crops = crop_proposals(image, np.array([[0, 0, 6, 8], [2, 4, 4, 6]]), (6, 8)).numpy()
    np.testing.assert_allclose(crops[0], image, atol=1e-4)
    np.testing.assert_allclose(crops[1][0, 0], image[2, 4], atol=1e-4)
    np.testing.assert_allclose(crops[1][-1, -1], image[3, 5], atol=1e-4)


def test_batched_equals_one_by_one():
    model = tiny_deconvnet()
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (90, 120, 3), dtype=np.uint8)
    boxes = np.array([[0, 0, 60, 60], [10, 20, 90, 120], [30, 30, 70, 100], [5, 5, 40, 50]])
    batched = predict_proposals(model, image, boxes, batch_size=4)
    single = predict_proposals(model, image, boxes, batch_size=1)
    np.testing.assert_allclose(batched, single, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(batched.argmax(-1), single.argmax(-1))


def test_proposal_inference_with_a_generator_and_uncovered_background():
    model = tiny_deconvnet()
    image = np.zeros((80, 100), np.uint8)  # grayscale works too
    scores = predict_proposals(model, image, np.array([[0, 0, 40, 50]]), aggregation="mean")
    assert scores.shape == (80, 100, 3)
    np.testing.assert_allclose(scores[:40, :50].sum(-1), 1.0, rtol=1e-5)
    assert scores[40:, 50:].sum() == 0  # uncovered: background after argmax
    with_generator = predict_proposals(model, image, top_n=5, include_image_box=True)
    np.testing.assert_allclose(with_generator.max(-1) > 0, True)


def test_min_box_size_skips_small_proposals():
    model = tiny_deconvnet()
    image = np.zeros((80, 100, 3), np.uint8)
    scores = predict_proposals(model, image, np.array([[0, 0, 10, 10]]), min_box_size=20)
    assert scores.sum() == 0


class TestWholeImage:
    def test_resize_and_sliding_shapes(self):
        model = tiny_deconvnet()
        image = np.random.default_rng(0).integers(0, 255, (100, 150, 3), dtype=np.uint8)
        for mode in ("resize", "sliding"):
            scores = predict_whole_image(model, image, mode=mode)
            assert scores.shape == (100, 150, 3)
            np.testing.assert_allclose(scores.sum(-1), 1.0, rtol=1e-4)

    def test_sliding_windows_cover_the_image(self):
        boxes = sliding_windows(100, 150, (64, 64))
        covered = np.zeros((100, 150), bool)
        for y0, x0, y1, x1 in boxes.astype(int):
            covered[y0:y1, x0:x1] = True
            assert (y1 - y0, x1 - x0) == (64, 64)
        assert covered.all()

    def test_bad_mode(self):
        with pytest.raises(ValueError, match="mode"):
            predict_whole_image(tiny_deconvnet(), np.zeros((64, 64, 3), np.uint8), mode="x")


def test_normalise_scores_makes_distributions_and_background():
    from keras_deconvnet.inference import normalise_scores

    out = normalise_scores(np.array([[[0.0, 0.0, 0.0], [0.5, 0.3, 0.2]], [[2, 0, 2], [0, 1, 0]]]))
    np.testing.assert_allclose(out.sum(-1), 1.0)
    np.testing.assert_array_equal(out[0, 0], [1, 0, 0])
    np.testing.assert_allclose(out[1, 0], [0.5, 0, 0.5])
