"""Proposal-based inference as the authors' code ran it, rule by rule on hand-made
examples, plus the earlier behaviour kept as options."""

import keras
import numpy as np
import pytest
from model_fixtures import smooth_images, tiny_deconvnet

from keras_deconvnet.inference import (
    InferenceConfig,
    aggregate_proposals,
    crop_windows,
    labels_from_scores,
    predict_proposals,
    predict_whole_image,
    proposal_windows,
    sliding_windows,
)
from keras_deconvnet.inference.matlab_resize import imresize_bilinear


def _maps(values, size=2, channels=2):
    """One constant (size, size, channels) map per value; class c holds value * (c + 1)."""
    scale = np.arange(1, channels + 1, dtype=np.float32)
    return np.array([np.ones((size, size, channels), np.float32) * v * scale for v in values])


class ConstantScores:
    """A stand-in segmenter whose score map for the k-th window is `scores[k]`
    everywhere: hand-made examples of the aggregation rules."""

    activation = None
    input_shape = (None, None, None, 3)

    def __init__(self, scores):
        self.queue = [np.asarray(s, np.float32) for s in scores]
        self.output_shape = (None, None, None, len(self.queue[0]))
        self.preprocessor = object()
        self.seen = []

    def predict_on_batch(self, x):
        self.seen.append(np.asarray(x))
        return np.stack([np.broadcast_to(self.queue.pop(0), (*x.shape[1:3],
                                                             self.output_shape[-1]))
                         for _ in range(len(x))])


def constant_model(scores):
    return ConstantScores(scores)


class TestPaperRules:
    def test_raw_scores_are_max_aggregated_before_any_softmax(self):
        """The issue's example: two windows over the same pixels with logits (10, 9)
        and (0, 1.5). A softmax per window gives (0.73, 0.27) and (0.18, 0.82), whose
        maximum (0.73, 0.82) is class 1; the authors' maximum of raw scores is
        (10, 9): background."""
        boxes = [[0, 0, 20, 20], [0, 0, 20, 20]]
        image = np.zeros((20, 20, 3), np.uint8)
        kwargs = dict(top_n=None, min_box_size=0, context=1.0, input_size=(8, 8))
        paper = predict_proposals(constant_model([[10, 9], [0, 1.5]]), image, boxes,
                                  InferenceConfig(**kwargs))
        np.testing.assert_allclose(paper[5, 5], [10, 9])
        assert labels_from_scores(paper)[5, 5] == 0
        softmaxed = predict_proposals(constant_model([[10, 9], [0, 1.5]]), image, boxes,
                                      InferenceConfig(score_mode="probabilities", **kwargs))
        assert labels_from_scores(softmaxed)[5, 5] == 1

    def test_the_canvas_starts_at_zero(self):
        """Negative scores never win, and uncovered pixels are background."""
        image = np.zeros((20, 30, 3), np.uint8)
        config = InferenceConfig(top_n=None, min_box_size=0, context=1.0, input_size=(8, 8))
        scores = predict_proposals(constant_model([[-5, -1]]), image, [[0, 0, 20, 10]], config)
        np.testing.assert_array_equal(scores[:, :10], 0.0)
        np.testing.assert_array_equal(scores[:, 10:], 0.0)

    def test_the_size_threshold_counts_boxes_actually_run(self):
        """50 windows run even when small proposals come first: skip, then cut."""
        small = [[0, 0, 10, 10]] * 5
        large = [[0, 0, 100, 100], [10, 10, 110, 110], [20, 20, 120, 120]]
        windows = proposal_windows(small + large, (200, 200), context=1.0,
                                   min_box_size=50, top_n=2)
        np.testing.assert_array_equal(windows, [[0, 0, 100, 100], [10, 10, 110, 110]])
        # The old order (cut, then filter) would have run nothing.
        assert len(proposal_windows((small + large)[:2], (200, 200), 1.0, 50, 2)) == 0

    def test_the_default_generator_runs_top_n_windows_of_the_wanted_size(self):
        """The issue's example: the default generator cut to 50 before the 112-pixel
        filter, and only 37 windows ran. Small textured patches rank small windows
        first; top_n windows must still run, all of them >= half the input."""
        image = np.full((375, 500, 3), 120, np.uint8)
        rng = np.random.default_rng(0)
        for y, x in [(30, 40), (200, 300), (100, 400), (300, 100), (250, 450)]:
            image[y : y + 40, x : x + 40] = rng.integers(0, 256, (40, 40, 3))
        model = constant_model([[1, 0]] * 30)
        predict_proposals(model, image, config=InferenceConfig(top_n=30, input_size=(224, 224),
                                                               batch_size=64))
        assert sum(len(x) for x in model.seen) == 30

    def test_the_authors_cache_gets_no_second_context(self, tmp_path):
        """boxes_padded are extended already: the windows are the boxes themselves,
        not clipped to the image (the padding reads as zeros)."""
        import scipy.io

        from keras_deconvnet.data import PaddedBoxProposals

        height, width = 40, 60
        # [x1 y1 x2 y2], 1-based inclusive in the image padded by 60 rows, 40 columns:
        # image edges [ymin, xmin, ymax, xmax] = [-5, 10, 35, 50].
        scipy.io.savemat(tmp_path / "im.mat", {"boxes_padded": [[51, 56, 90, 95]]})
        image = np.full((height, width, 3), 200, np.uint8)
        model = constant_model([[1, 0]])
        config = InferenceConfig(proposals=PaddedBoxProposals(tmp_path), min_box_size=0,
                                 input_size=(40, 40))
        scores = predict_proposals(model, image, config=config, image_id="im")
        crop = model.seen[0][0]
        expected = imresize_bilinear(np.pad(image[0:35, 10:50].astype(float),
                                            [(5, 0), (0, 0), (0, 0)]), (40, 40))
        np.testing.assert_allclose(crop, expected, rtol=1e-5, atol=1e-3)
        covered = scores[..., 0] > 0
        assert covered[0:35, 10:50].all() and not covered[:, :10].any()
        assert not covered[35:].any() and not covered[:, 50:].any()

    def test_default_threshold_is_half_the_input(self):
        model = constant_model([[1, 0]] * 3)
        image = np.zeros((64, 64, 3), np.uint8)
        config = InferenceConfig(context=1.0, input_size=(8, 8))
        # The threshold is 4 px: the 3x3 box is skipped.
        predict_proposals(model, image, [[0, 0, 3, 3], [0, 0, 40, 40]], config)
        assert sum(len(x) for x in model.seen) == 1

    def test_windows_get_the_training_context_and_read_zeros_outside(self):
        """Each proposal is enlarged 1.2x about its centre (as the stage-2 crops); the
        part outside the image is zero-padded, as the authors' padded image."""
        windows = proposal_windows([[0, 0, 10, 20]], (50, 50), min_box_size=0)
        np.testing.assert_array_equal(windows, [[-1, -2, 11, 22]])
        image = np.full((50, 50, 3), 200, np.uint8)
        crop = crop_windows(image, windows, (12, 12)).numpy()[0]
        assert crop[0].max() == 0.0  # the row above the image
        np.testing.assert_allclose(crop[6, 6], 200.0, atol=1e-3)

    def test_crops_are_resized_as_matlab_imresize(self):
        """preprocess_image_bb.m: the box cut out of the zero-padded image, then
        imresize(crop, [224 224], 'bilinear'), which low-pass filters when shrinking."""
        image = np.random.default_rng(0).integers(0, 256, (700, 650, 3)).astype(np.uint8)
        windows = np.array([[-40, -30, 520, 530], [100, 90, 300, 250]])
        crops = crop_windows(image, windows, (224, 224), "matlab").numpy()
        padded = np.zeros((800, 700, 3))
        padded[40:740, 30:680] = image
        for crop, (y0, x0, y1, x1) in zip(crops, windows + [40, 30, 40, 30]):
            expected = imresize_bilinear(padded[y0:y1, x0:x1], (224, 224))
            np.testing.assert_allclose(crop, expected, rtol=1e-5, atol=1e-3)
        # The measure: noise warped 560 -> 224 keeps std ~19.5 (antialiased),
        # ~46 with the training crops' plain bilinear sampler.
        inside = windows[:1] + [40, 30, 40, 30]
        matlab = crop_windows(image, inside, (224, 224), "matlab").numpy()
        plain = crop_windows(image, inside, (224, 224), "bilinear").numpy()
        assert matlab.std() < 25 < 40 < plain.std()

    def test_the_default_config_feeds_matlab_crops(self):
        image = smooth_images(1, (90, 110))[0]
        boxes = [[0, 0, 80, 100]]
        model = constant_model([[1, 0]])
        kwargs = dict(context=1.0, min_box_size=0, input_size=(32, 32))
        predict_proposals(model, image, boxes, InferenceConfig(**kwargs))
        assert InferenceConfig().resampling == "matlab"
        expected = imresize_bilinear(image[0:80, 0:100], (32, 32))
        np.testing.assert_allclose(model.seen[0][0], expected, rtol=1e-5, atol=1e-3)
        model = constant_model([[1, 0]])
        predict_proposals(model, image, boxes, InferenceConfig(resampling="bilinear",
                                                              **kwargs))
        assert not np.allclose(model.seen[0][0], expected, atol=1e-3)
        with pytest.raises(ValueError, match="resampling"):
            InferenceConfig(resampling="bicubic")

    def test_score_maps_shrink_as_matlab_imresize(self):
        maps = np.random.default_rng(2).normal(size=(1, 16, 16, 3)).astype(np.float32)
        out = aggregate_proposals(maps, [[0, 0, 6, 10]], (6, 10), "max", "matlab")
        expected = np.maximum(imresize_bilinear(maps[0], (6, 10)), 0.0)
        np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)

    def test_score_maps_go_back_into_their_windows(self):
        """A window past the image border: only its inside part reaches the canvas,
        at the right offset (the padding offset of the authors' canvas)."""
        maps = np.zeros((1, 4, 4, 1), np.float32)
        maps[0, 2:, 2:] = 1.0  # the window's bottom-right quarter
        out = aggregate_proposals(maps, [[-2, -2, 2, 2]], (3, 3))[..., 0]
        np.testing.assert_array_equal(out, [[1, 1, 0], [1, 1, 0], [0, 0, 0]])


class TestAggregate:
    WINDOWS = [[0, 0, 2, 2], [1, 1, 3, 3]]

    def test_max_and_mean(self):
        out = aggregate_proposals(_maps([1.0, 3.0]), self.WINDOWS, (3, 4), "max")
        expected = np.array([[1, 1, 0, 0], [1, 3, 3, 0], [0, 3, 3, 0]], np.float32)
        np.testing.assert_array_equal(out[..., 0], expected)
        np.testing.assert_array_equal(out[..., 1], 2 * expected)
        out = aggregate_proposals(_maps([1.0, 3.0]), self.WINDOWS, (3, 4), "mean")
        expected = np.array([[1, 1, 0, 0], [1, 2, 3, 0], [0, 3, 3, 0]], np.float32)
        np.testing.assert_array_equal(out[..., 0], expected)

    def test_bad_arguments(self):
        with pytest.raises(ValueError, match="aggregation"):
            aggregate_proposals(_maps([1.0]), [[0, 0, 1, 1]], (2, 2), "median")
        with pytest.raises(ValueError, match="one map per window"):
            aggregate_proposals(_maps([1.0]), self.WINDOWS, (2, 2))


class TestWithASegmenter:
    def test_batching_does_not_change_the_result(self):
        model = tiny_deconvnet(calibrated=True)
        image = smooth_images(1, (90, 110))[0]
        boxes = np.array([[0, 0, 60, 70], [20, 30, 90, 110], [10, 10, 80, 100]])
        batched = predict_proposals(model, image, boxes,
                                    InferenceConfig(batch_size=4, min_box_size=0))
        single = predict_proposals(model, image, boxes,
                                   InferenceConfig(batch_size=1, min_box_size=0))
        np.testing.assert_allclose(batched, single, rtol=1e-4, atol=1e-4)

    def test_generator_and_no_proposal(self):
        model = tiny_deconvnet(calibrated=True)
        image = smooth_images(1, (90, 110))[0]
        assert predict_proposals(model, image, config=InferenceConfig(top_n=5)).shape == (
            90, 110, 3)
        empty = predict_proposals(model, image, np.zeros((0, 4)))
        np.testing.assert_array_equal(empty, 0.0)

    def test_whole_image_is_the_converter_then_resized_scores(self):
        """The served convention: warp to the input, score, resize scores back."""
        import tensorflow as tf

        model = tiny_deconvnet(calibrated=True)
        image = smooth_images(1, (90, 110))[0]
        scores = predict_whole_image(model, image)
        direct = model.predict(tf.image.resize(image[None].astype("float32"), (64, 64)),
                               verbose=0)
        expected = tf.image.resize(direct, (90, 110)).numpy()[0]
        np.testing.assert_allclose(scores, expected, rtol=1e-4, atol=1e-4)
        assert predict_whole_image(model, image, mode="sliding").shape == (90, 110, 3)

    def test_bad_arguments(self):
        model = tiny_deconvnet()
        image = np.zeros((64, 64, 3), np.uint8)
        with pytest.raises(ValueError, match="score_mode"):
            InferenceConfig(score_mode="softmax")
        with pytest.raises(ValueError, match="top_n"):
            InferenceConfig(top_n=0)
        with pytest.raises(ValueError, match="batch_size"):
            InferenceConfig(batch_size=0)
        with pytest.raises(ValueError, match="context"):
            InferenceConfig(context=0.0)
        with pytest.raises(ValueError, match="mode"):
            predict_whole_image(model, image, mode="x")
        with pytest.raises(ValueError, match="preprocessor"):
            predict_proposals(keras.Sequential([keras.Input((8, 8, 3))]), image)


def test_sliding_windows_cover_the_image():
    windows = sliding_windows(100, 70, (64, 64), overlap=0.25)
    covered = np.zeros((100, 70), bool)
    for y0, x0, y1, x1 in windows:
        covered[y0:y1, x0:x1] = True
    assert covered.all()
