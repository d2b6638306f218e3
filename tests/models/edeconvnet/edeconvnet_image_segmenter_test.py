import numpy as np
import pytest
from model_fixtures import smooth_images, tiny_deconvnet, tiny_fcn8s

from keras_deconvnet.models import EDeconvNetImageSegmenter


def _softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _members():
    return tiny_deconvnet(calibrated=True), tiny_fcn8s()


def test_product_of_rectified_raw_scores_is_the_authors_ensemble():
    deconvnet, fcn = _members()
    images = smooth_images(2)
    d = deconvnet.predict(images, verbose=0)
    f = fcn.predict(images, verbose=0)
    out = EDeconvNetImageSegmenter(deconvnet, fcn).predict(images, verbose=0)
    np.testing.assert_allclose(out, d * np.maximum(f, 0), rtol=1e-5, atol=1e-6)


def test_mean_of_probabilities_is_the_papers_text():
    deconvnet, fcn = _members()
    images = smooth_images(2)
    expected = (_softmax(deconvnet.predict(images, verbose=0))
                + _softmax(fcn.predict(images, verbose=0))) / 2
    ensemble = EDeconvNetImageSegmenter(deconvnet, fcn, mode="mean")
    assert ensemble.activation == "softmax"
    np.testing.assert_allclose(ensemble.predict(images, verbose=0), expected,
                               rtol=1e-5, atol=1e-6)


def test_preset_round_trip(tmp_path):
    ensemble = EDeconvNetImageSegmenter(*_members())
    images = smooth_images(1)
    path = ensemble.save_to_preset(tmp_path / "e")
    assert {p.name for p in path.iterdir()} == {"deconvnet", "fcn8s", "edeconvnet.json"}
    loaded = EDeconvNetImageSegmenter.from_preset(path)
    assert loaded.mode == "product"
    np.testing.assert_array_equal(loaded.predict(images, verbose=0),
                                  ensemble.predict(images, verbose=0))


def test_bad_members():
    deconvnet, fcn = _members()
    with pytest.raises(ValueError, match="mode"):
        EDeconvNetImageSegmenter(deconvnet, fcn, mode="max")
    with pytest.raises(ValueError, match="same classes"):
        EDeconvNetImageSegmenter(deconvnet, tiny_fcn8s(num_classes=4))
    with pytest.raises(ValueError, match="logits"):
        EDeconvNetImageSegmenter(tiny_deconvnet(activation="softmax"), fcn)
