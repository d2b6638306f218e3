import keras
import numpy as np
import pytest

from keras_deconvnet.models import DeconvNet, EnsembleSegmenter, FCN8s

CONFIG = dict(num_classes=3, image_shape=(64, 64, 3), block_filters=(4, 4, 8, 8, 8),
              fc_units=16)


def _members():
    return [DeconvNet(**CONFIG, fc_kernel_size=2), FCN8s(**CONFIG)]


def _softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def test_mean_is_the_average_of_probabilities():
    members = _members()
    x = np.random.default_rng(0).normal(size=(2, 64, 64, 3)).astype("float32")
    expected = np.mean([_softmax(m.predict(x, verbose=0)) for m in members], axis=0)
    out = EnsembleSegmenter(members).predict(x, verbose=0)
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)


def test_product_mode_is_renormalised():
    members = _members()
    x = np.random.default_rng(0).normal(size=(1, 64, 64, 3)).astype("float32")
    p = [_softmax(m.predict(x, verbose=0)) for m in members]
    expected = p[0] * p[1]
    expected /= expected.sum(-1, keepdims=True)
    out = EnsembleSegmenter(members, mode="product").predict(x, verbose=0)
    np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-6)


def test_save_round_trip(tmp_path):
    ensemble = EnsembleSegmenter(_members())
    x = np.random.default_rng(0).normal(size=(1, 64, 64, 3)).astype("float32")
    ensemble.save(tmp_path / "e.keras")
    loaded = keras.saving.load_model(tmp_path / "e.keras")
    np.testing.assert_allclose(ensemble.predict(x, verbose=0), loaded.predict(x, verbose=0))


def test_bad_members():
    with pytest.raises(ValueError, match="at least 2"):
        EnsembleSegmenter([FCN8s(**CONFIG)])
    with pytest.raises(ValueError, match="share"):
        EnsembleSegmenter([FCN8s(**CONFIG), FCN8s(**{**CONFIG, "num_classes": 4})])
    with pytest.raises(ValueError, match="mode"):
        EnsembleSegmenter(_members(), mode="max")
