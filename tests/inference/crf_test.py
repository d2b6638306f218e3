"""The fully connected CRF: lattice filtering vs exact kernels, mean field, input checks."""

import time

import numpy as np
import pytest
from scipy import ndimage

from keras_deconvnet.inference.crf import DenseCRF, PermutohedralLattice, dense_crf


def _exact_gaussian_filter(features, values):
    """`sum_j exp(-|f_i - f_j|^2 / 2) values_j`, O(N^2)."""
    squared = ((features[:, None, :] - features[None, :, :]) ** 2).sum(-1)
    return np.exp(-squared / 2) @ values


def _exact_dense_crf(image, probabilities, crf):
    """Mean field with exact kernels and the same normalisation as `DenseCRF`."""
    height, width, num_classes = probabilities.shape
    y, x = np.mgrid[:height, :width]
    positions = np.stack([y, x], -1).reshape(-1, 2) / crf.gaussian_sxy
    kernels = [
        (crf.gaussian_weight, positions),
        (crf.bilateral_weight, crf.bilateral_features(image)),
    ]
    unary = -np.log(np.clip(probabilities.reshape(-1, num_classes), 1e-8, 1))
    marginals = np.exp(-unary)
    marginals /= marginals.sum(1, keepdims=True)
    ones = np.ones((height * width, 1))
    for _ in range(crf.num_iterations):
        logits = -unary
        for weight, features in kernels:
            logits = logits + weight * (
                _exact_gaussian_filter(features, marginals) / _exact_gaussian_filter(features, ones)
            )
        marginals = np.exp(logits - logits.max(1, keepdims=True))
        marginals /= marginals.sum(1, keepdims=True)
    return marginals.reshape(height, width, num_classes)


def _blocky_image(seed, height=12, width=10, noise=3.0):
    rng = np.random.default_rng(seed)
    blocks = np.kron(rng.integers(0, 256, (3, 2, 3)), np.ones((height // 3, width // 2, 1)))
    return (blocks + rng.normal(0, noise, blocks.shape)).clip(0, 255).astype(np.uint8)


def _shapes(height=80, width=100):
    """Ground-truth labels (background, disc, rectangle) and a sharp-edged RGB image."""
    y, x = np.mgrid[:height, :width]
    labels = np.zeros((height, width), np.int64)
    labels[(y - 40) ** 2 + (x - 30) ** 2 < 20**2] = 1
    labels[(y > 15) & (y < 65) & (x > 60) & (x < 90)] = 2
    colours = np.array([[40, 90, 40], [200, 60, 50], [60, 70, 190]])
    rng = np.random.default_rng(0)
    image = (colours[labels] + rng.normal(0, 2, (height, width, 3))).clip(0, 255)
    return labels, image.astype(np.uint8)


# Measured on these 12x10 images (seeds 0-2): the unnormalised lattice output is about 0.45-0.5
# times the exact one (mass lost to the coarse lattice; the CRF divides it out), correlation
# 0.87-0.96; the normalised output (what the CRF uses) has correlation 0.981-0.995, mean
# absolute error 0.005-0.018 and maximum absolute error 0.02-0.17 (the largest with srgb=3).
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("sxy, srgb", [(20.0, 3.0), (5.0, 10.0), (3.0, 30.0)])
def test_lattice_approximates_the_exact_bilateral_filter(seed, sxy, srgb):
    image = _blocky_image(seed)
    features = DenseCRF(bilateral_sxy=sxy, bilateral_srgb=srgb).bilateral_features(image)
    lattice = PermutohedralLattice(features)
    values = np.random.default_rng(seed).random((features.shape[0], 4))
    ones = np.ones((features.shape[0], 1))

    approximate = lattice.filter(values)
    exact = _exact_gaussian_filter(features, values)
    assert approximate.shape == values.shape and approximate.dtype == np.float32
    assert np.corrcoef(approximate.ravel(), exact.ravel())[0, 1] > 0.85

    approximate_mean = approximate / lattice.filter(ones)
    exact_mean = exact / _exact_gaussian_filter(features, ones)
    assert np.corrcoef(approximate_mean.ravel(), exact_mean.ravel())[0, 1] > 0.975
    assert np.abs(approximate_mean - exact_mean).mean() < 0.025
    assert np.abs(approximate_mean - exact_mean).max() < 0.2


@pytest.mark.parametrize("dimension", [1, 2, 3, 5])
def test_lattice_on_dense_random_features(dimension):
    rng = np.random.default_rng(dimension)
    features = rng.normal(size=(400, dimension)) * 1.5
    values = rng.random((400, 3))
    approximate = PermutohedralLattice(features).filter(values)
    exact = _exact_gaussian_filter(features, values)
    assert np.corrcoef(approximate.ravel(), exact.ravel())[0, 1] > 0.97


def test_lattice_with_a_huge_coordinate_range_matches_separate_lattices():
    # Clusters 1e7 apart overflow the packed int64 vertex ids, so this takes the general path;
    # it must agree with filtering each cluster (fast path) on its own.
    rng = np.random.default_rng(0)
    near = rng.normal(size=(300, 5)) * 2
    far = rng.normal(size=(200, 5)) * 2 + 1e7
    values = rng.random((500, 3))
    together = PermutohedralLattice(np.concatenate([near, far])).filter(values)
    separately = np.concatenate(
        [PermutohedralLattice(near).filter(values[:300]),
         PermutohedralLattice(far).filter(values[300:])]
    )
    np.testing.assert_allclose(together, separately, atol=1e-5)


def test_mean_field_matches_exact_kernels_on_a_tiny_image():
    crf = DenseCRF(bilateral_sxy=5.0, bilateral_srgb=20.0)
    for seed in range(3):
        image = _blocky_image(seed)
        probabilities = np.random.default_rng(seed).dirichlet(np.ones(4), (12, 10))
        refined = crf(image, probabilities.astype(np.float32))
        exact = _exact_dense_crf(image, probabilities, crf)
        assert np.abs(refined - exact).mean() < 0.02
        assert (refined.argmax(-1) == exact.argmax(-1)).mean() >= 0.95


def test_keeps_a_confident_correct_segmentation():
    labels, image = _shapes()
    probabilities = np.where(np.eye(3, dtype=bool)[labels], 0.9, 0.05).astype(np.float32)
    refined = dense_crf(image, probabilities)
    np.testing.assert_array_equal(refined.argmax(-1), labels)
    assert refined.max(-1).min() > 0.9


def test_sharpens_blurred_probabilities_at_edges():
    labels, image = _shapes()
    rng = np.random.default_rng(1)
    probabilities = ndimage.gaussian_filter(np.eye(3)[labels], (5, 5, 0))
    probabilities += rng.uniform(0, 0.3, probabilities.shape)
    probabilities = (probabilities / probabilities.sum(-1, keepdims=True)).astype(np.float32)
    edges = ndimage.morphological_gradient(labels, size=3) > 0
    near_edges = ndimage.binary_dilation(edges, iterations=6)

    def accuracy(predicted):
        return (predicted == labels)[near_edges].mean()

    before = accuracy(probabilities.argmax(-1))
    after = accuracy(dense_crf(image, probabilities).argmax(-1))
    smoothing_only = accuracy(dense_crf(image, probabilities, bilateral_weight=0).argmax(-1))
    assert before < 0.95  # the blur did move the edges
    assert after > 0.99 and after > before + 0.04
    assert smoothing_only < after  # the colour-aware kernel does the sharpening


def test_output_is_a_distribution_per_pixel():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (30, 40, 3)).astype(np.uint8)
    probabilities = rng.random((30, 40, 5))  # float64, rows not normalised, some near 0
    probabilities[0, 0] = [1, 0, 0, 0, 0]
    refined = dense_crf(image, probabilities, num_iterations=3)
    assert refined.shape == (30, 40, 5) and refined.dtype == np.float32
    assert np.isfinite(refined).all() and (refined >= 0).all()
    np.testing.assert_allclose(refined.sum(-1), 1.0, atol=1e-5)

    unchanged = dense_crf(image, probabilities, num_iterations=0)
    np.testing.assert_allclose(
        unchanged, probabilities / probabilities.sum(-1, keepdims=True), atol=1e-5
    )
    single_class = dense_crf(image, np.ones((30, 40, 1), np.float32))
    np.testing.assert_array_equal(single_class, 1.0)


def test_speed_on_a_small_image():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (120, 160, 3)).astype(np.uint8)
    probabilities = rng.dirichlet(np.ones(21), (120, 160)).astype(np.float32)
    start = time.perf_counter()
    dense_crf(image, probabilities)
    assert time.perf_counter() - start < 8.0


def _image_and_probabilities():
    return np.zeros((6, 8, 3), np.uint8), np.full((6, 8, 2), 0.5, np.float32)


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda image, p: (image.astype(np.float32), p), "uint8"),
        (lambda image, p: (image[..., :1], p), r"\(H, W, 3\)"),
        (lambda image, p: (image[..., 0], p), r"\(H, W, 3\)"),
        (lambda image, p: (image[:0], p[:0]), "empty"),
        (lambda image, p: (image.tolist(), p), "NumPy"),
        (lambda image, p: (image, (p > 0).astype(np.int32)), "float"),
        (lambda image, p: (image, p[..., 0]), r"\(H, W, C\)"),
        (lambda image, p: (image, p[:5]), "same height and width"),
        (lambda image, p: (image, np.where(p > 0, np.nan, p)), "finite"),
        (lambda image, p: (image, p + 1), r"\[0, 1\]"),
        (lambda image, p: (image, p - 1), r"\[0, 1\]"),
    ],
)
def test_bad_inputs_raise(change, message):
    image, probabilities = change(*_image_and_probabilities())
    with pytest.raises(ValueError, match=message):
        dense_crf(image, probabilities)


@pytest.mark.parametrize(
    "arguments",
    [
        {"num_iterations": -1},
        {"num_iterations": 2.5},
        {"num_iterations": True},
        {"gaussian_sxy": 0},
        {"bilateral_srgb": -3},
        {"bilateral_sxy": float("nan")},
        {"bilateral_weight": -1},
        {"gaussian_weight": "3"},
    ],
)
def test_bad_parameters_raise(arguments):
    with pytest.raises(ValueError):
        DenseCRF(**arguments)


def test_config_round_trip():
    crf = DenseCRF(num_iterations=5, bilateral_srgb=13.0)
    config = crf.get_config()
    assert config == {
        "num_iterations": 5,
        "gaussian_sxy": 3.0,
        "gaussian_weight": 3.0,
        "bilateral_sxy": 20.0,
        "bilateral_srgb": 13.0,
        "bilateral_weight": 5.0,
    }
    assert DenseCRF.from_config(config).get_config() == config
    image, probabilities = _image_and_probabilities()
    np.testing.assert_array_equal(
        crf(image, probabilities), dense_crf(image, probabilities, **config)
    )
    assert "bilateral_srgb=13.0" in repr(crf)
