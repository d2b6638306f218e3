"""EDeconvNet inference as the authors' code: FCN-8s once on the padded whole image,
the product of DeconvNet's raw scores with FCN-8s's rectified raw scores."""

import dataclasses

import numpy as np
import pytest
from model_fixtures import smooth_images, tiny_deconvnet, tiny_fcn8s

from keras_deconvnet.inference import (
    InferenceConfig,
    predict_ensemble,
    predict_fcn_padded,
    predict_proposals,
    softmax,
)
from keras_deconvnet.inference.methods import segment_image


def _models():
    return tiny_deconvnet(calibrated=True), tiny_fcn8s(image_shape=(None, None, 3))


def test_fcn_runs_once_on_the_image_padded_with_preprocessed_zeros():
    """`preprocess_image.m` pads the mean-subtracted image with zeros (the mean colour,
    not black) at the bottom/right, and keeps the scores of the image."""
    _, fcn = _models()
    image = smooth_images(1, (40, 30))[0]
    scores = predict_fcn_padded(fcn, image, pad_to=64)
    network_input = np.zeros((1, 64, 64, 3), np.float32)
    network_input[0, :40, :30] = np.asarray(fcn.preprocessor.image_converter(image[None]))[0]
    expected = np.asarray(fcn(network_input))[0, :40, :30]
    np.testing.assert_allclose(scores, expected, rtol=1e-5, atol=1e-5)


def test_product_of_rectified_raw_scores():
    deconvnet, fcn = _models()
    image = smooth_images(1, (70, 90))[0]
    boxes = [[0, 0, 60, 70], [10, 20, 70, 90]]
    config = InferenceConfig(min_box_size=0, top_n=None, fcn_input_size=96)
    d = predict_proposals(deconvnet, image, boxes, config)
    f = predict_fcn_padded(fcn, image, 96)
    out = predict_ensemble(deconvnet, fcn, image, boxes, config)
    np.testing.assert_allclose(out, d * np.maximum(f, 0), rtol=1e-5, atol=1e-6)
    mean_config = dataclasses.replace(config, ensemble_mode="mean")
    mean = predict_ensemble(deconvnet, fcn, image, boxes, mean_config)
    np.testing.assert_allclose(mean, (softmax(d) + softmax(f)) / 2, rtol=1e-5, atol=1e-6)


def test_hand_made_product():
    """Where FCN-8s's score is negative the product is 0 whatever DeconvNet says."""
    d = np.array([[[3.0, 2.0]]])
    f = np.array([[[-1.0, 0.5]]])
    assert (d * np.maximum(f, 0)).tolist() == [[[0.0, 1.0]]]


def test_segment_image_all_methods():
    deconvnet, fcn = _models()
    config = InferenceConfig(top_n=3, min_box_size=0, fcn_input_size=96)
    labels = segment_image(smooth_images(1, (70, 90))[0], deconvnet,
                           ("whole", "proposals", "ensemble", "ensemble_crf"), config, fcn)
    assert {k: v.shape for k, v in labels.items()} == {
        "whole": (70, 90), "proposals": (70, 90), "ensemble": (70, 90),
        "ensemble_crf": (70, 90)}
    with pytest.raises(ValueError, match="FCN-8s"):
        segment_image(np.zeros((70, 90, 3), np.uint8), deconvnet, ("ensemble",), config)
    with pytest.raises(ValueError, match="ensemble_mode"):
        InferenceConfig(ensemble_mode="max")


def test_crf_gets_the_softmax_of_raw_scores():
    """The CRF's unary is -log softmax of the raw (ensemble) scores: with a CRF that
    records its input, `segment_image` passes raw scores labelled as logits."""
    deconvnet, _ = _models()
    seen = {}

    def recording_crf(image, scores, scores_are):
        seen["scores_are"] = scores_are
        return scores

    config = InferenceConfig(top_n=3, min_box_size=0, crf=recording_crf)
    segment_image(smooth_images(1, (70, 90))[0], deconvnet, ("proposals_crf",), config)
    assert seen["scores_are"] == "logits"
