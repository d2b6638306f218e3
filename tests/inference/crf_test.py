"""The fully connected CRF: unary, lattice vs exact kernels, normalisations, backends, checks."""

import time

import numpy as np
import pytest
from scipy import ndimage

from keras_deconvnet.inference import mean_field as mean_field_module
from keras_deconvnet.inference.crf import DenseCRF, dense_crf
from keras_deconvnet.inference.mean_field import pydensecrf2_available, unary_from_scores
from keras_deconvnet.inference.permutohedral import PermutohedralLattice

needs_pydensecrf2 = pytest.mark.skipif(
    not pydensecrf2_available(),
    reason="optional dependency pydensecrf2 (module pydensecrf.densecrf) is not installed",
)
BACKENDS = ["numpy", pytest.param("pydensecrf2", marks=needs_pydensecrf2)]
NORMALIZATIONS = ["none", "symmetric", "after", "before"]


def _exact_gaussian_filter(features, values):
    """`sum_j exp(-|f_i - f_j|^2 / 2) values_j`, O(N^2)."""
    features = np.asarray(features, np.float64)
    squared = ((features[:, None, :] - features[None, :, :]) ** 2).sum(-1)
    return np.exp(-squared / 2) @ values


def _exact_dense_crf(image, scores, crf, scores_are="probabilities"):
    """Mean field with exact kernels, normalised after filtering (`normalization="after"`)."""
    height, width, num_classes = scores.shape
    kernels = [
        (crf.gaussian_weight, crf.gaussian_features(height, width)),
        (crf.bilateral_weight, crf.bilateral_features(image)),
    ]
    unary = unary_from_scores(scores, scores_are).reshape(-1, num_classes)
    marginals = np.exp(-unary)
    marginals /= marginals.sum(1, keepdims=True)
    ones = np.ones((height * width, 1))
    for _ in range(crf.iterations):
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


def _blobby(height=80, width=100, num_classes=5, seed=0):
    """A blobby segmentation, its noisy image and noisy, blurred logits of it."""
    rng = np.random.default_rng(seed)
    fields = ndimage.gaussian_filter(
        rng.normal(size=(height, width, num_classes)), (height / 10, width / 10, 0)
    )
    labels = fields.argmax(-1)
    palette = rng.integers(0, 256, (num_classes, 3))
    image = palette[labels] + rng.normal(0, 8, (height, width, 3))
    image = ndimage.gaussian_filter(image, (1, 1, 0)).clip(0, 255).astype(np.uint8)
    logits = ndimage.gaussian_filter(4.0 * np.eye(num_classes)[labels], (3, 3, 0))
    logits += rng.normal(0, 1, logits.shape)
    return labels, image, logits.astype(np.float32)


# --- the unary -------------------------------------------------------------------------------


def test_unary_is_minus_log_softmax_of_logits():
    # softmax([0, ln 3]) = [1/4, 3/4], softmax([ln 2, 0]) = [2/3, 1/3],
    # softmax([ln 2, 0, ln 5]) = [2/8, 1/8, 5/8].
    logits = np.array([[[0.0, np.log(3.0)]], [[np.log(2.0), 0.0]]])  # (2, 1, 2)
    expected = -np.log([[[1 / 4, 3 / 4]], [[2 / 3, 1 / 3]]])
    unary = unary_from_scores(logits)
    assert unary.shape == logits.shape and unary.dtype == np.float32
    np.testing.assert_allclose(unary, expected, rtol=1e-6)
    three = unary_from_scores(np.array([np.log(2.0), 0.0, np.log(5.0)]))
    np.testing.assert_allclose(three, -np.log([2 / 8, 1 / 8, 5 / 8]), rtol=1e-6)
    # A log-softmax: shifting the logits changes nothing, and huge logits do not overflow.
    np.testing.assert_allclose(unary_from_scores(logits + 1000.0), expected, rtol=1e-6)
    np.testing.assert_allclose(
        unary_from_scores(np.array([1e4, 0.0], np.float32)), [0.0, 1e4], rtol=1e-6
    )


def test_unary_of_probabilities_is_minus_log():
    probabilities = np.array([0.5, 0.25, 0.25, 0.0])
    unary = unary_from_scores(probabilities, "probabilities")
    np.testing.assert_allclose(unary[:3], -np.log(probabilities[:3]), rtol=1e-6)
    assert np.isfinite(unary[3]) and unary[3] == pytest.approx(87.34, abs=0.01)  # float32 tiny
    with pytest.raises(ValueError, match="scores_are"):
        unary_from_scores(probabilities, "log_probabilities")


@pytest.mark.parametrize("backend", BACKENDS)
def test_zero_iterations_give_the_argmax_of_the_scores(backend):
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (15, 20, 3)).astype(np.uint8)
    logits = rng.normal(0, 3, (15, 20, 4)).astype(np.float32)
    crf = DenseCRF(iterations=0, backend=backend)
    refined = crf(image, logits, scores_are="logits")
    np.testing.assert_array_equal(refined.argmax(-1), logits.argmax(-1))
    np.testing.assert_allclose(
        refined, np.exp(-unary_from_scores(logits)), rtol=1e-5, atol=1e-7
    )
    probabilities = rng.random((15, 20, 4))  # rows not normalised
    refined = crf(image, probabilities)
    np.testing.assert_array_equal(refined.argmax(-1), probabilities.argmax(-1))
    np.testing.assert_allclose(
        refined, probabilities / probabilities.sum(-1, keepdims=True), rtol=1e-5
    )


@pytest.mark.parametrize("backend", BACKENDS)
def test_logits_and_their_softmax_give_the_same_result(backend):
    _, image, logits = _blobby(30, 40, 3)
    probabilities = np.exp(logits - logits.max(-1, keepdims=True))
    probabilities /= probabilities.sum(-1, keepdims=True)
    crf = DenseCRF(backend=backend)
    from_logits = dense_crf(image, logits, scores_are="logits", crf=crf)
    from_probabilities = dense_crf(image, probabilities, crf=crf)
    np.testing.assert_allclose(from_logits, from_probabilities, atol=1e-4)


# --- the lattice -----------------------------------------------------------------------------


# Measured on these 12x10 images (seeds 0-2): the unnormalised lattice output is about 0.45-0.5
# times the exact one (mass lost to the coarse lattice), correlation 0.87-0.96; the normalised
# output has correlation 0.981-0.995, mean absolute error 0.005-0.018 and maximum absolute
# error 0.02-0.17 (the largest with srgb=3).
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


def test_lattice_kernel_mass_on_a_pixel_grid():
    # The raw (unnormalised) messages scale with these masses: measured 49.9 inside the image
    # and 13.9 in a corner for the smoothness kernel (exact sum 2 pi 3^2 = 56.5 inside), and
    # about 1040 inside a uniform region for the appearance kernel (exact sum 2 pi 20^2 = 2513).
    crf = DenseCRF()
    ones = np.ones((60 * 60, 1), np.float32)
    smoothness = PermutohedralLattice(crf.gaussian_features(60, 60)).filter(ones)
    smoothness = smoothness.reshape(60, 60)
    assert 45 < smoothness[30, 30] < 55 and 10 < smoothness[0, 0] < 18
    uniform = np.full((60, 60, 3), 128, np.uint8)
    appearance = PermutohedralLattice(crf.bilateral_features(uniform)).filter(ones)
    assert 900 < appearance.reshape(60, 60)[30, 30] < 1200


def test_lattice_with_a_huge_coordinate_range_matches_separate_lattices():
    # Clusters 1e5 apart overflow the packed int64 vertex ids, so this takes the general path;
    # it must agree with filtering each cluster (fast path) on its own.
    rng = np.random.default_rng(0)
    near = rng.normal(size=(300, 5)) * 2
    far = rng.normal(size=(200, 5)) * 2 + 1e5
    values = rng.random((500, 3))
    together = PermutohedralLattice(np.concatenate([near, far])).filter(values)
    separately = np.concatenate(
        [PermutohedralLattice(near).filter(values[:300]),
         PermutohedralLattice(far).filter(values[300:])]
    )
    np.testing.assert_allclose(together, separately, atol=1e-5)


# --- mean field and the normalisations -------------------------------------------------------


def _messages(crf, image, marginals, normalization):
    """The documented message of each normalisation, from the public lattice."""
    height, width = image.shape[:2]
    kernels = [
        (crf.gaussian_weight, crf.gaussian_features(height, width)),
        (crf.bilateral_weight, crf.bilateral_features(image)),
    ]
    total = 0.0
    for weight, features in kernels:
        lattice = PermutohedralLattice(features)
        mass = lattice.filter(np.ones((features.shape[0], 1))).astype(np.float64)
        if normalization == "none":
            message = lattice.filter(marginals)
        elif normalization == "after":
            message = lattice.filter(marginals) / mass
        elif normalization == "before":
            message = lattice.filter(marginals / mass)
        else:
            message = lattice.filter(marginals / np.sqrt(mass)) / np.sqrt(mass)
        total = total + weight * message
    return total


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("normalization", NORMALIZATIONS)
def test_one_iteration_follows_the_documented_message(backend, normalization):
    image = _blocky_image(0)
    logits = np.random.default_rng(0).normal(0, 2, (12, 10, 3)).astype(np.float32)
    crf = DenseCRF(iterations=1, normalization=normalization, backend=backend)
    unary = unary_from_scores(logits).reshape(-1, 3).astype(np.float64)
    start = np.exp(-unary)
    start /= start.sum(1, keepdims=True)
    expected = -unary + _messages(crf, image, start, normalization)
    refined = np.log(crf(image, logits, scores_are="logits").reshape(-1, 3))
    # Compare log-marginals up to each pixel's normaliser.
    np.testing.assert_allclose(
        refined - refined[:, :1], expected - expected[:, :1], atol=2e-3, rtol=1e-4
    )


@pytest.mark.parametrize("backend", BACKENDS)
def test_normalisations_differ_as_documented(backend):
    # A uniform grey 9x9 image, every pixel confident of class 0 (logit margin 10) except the
    # centre, equally confident of class 1. Normalised messages are averages in [0, 1], so
    # the pairwise term (weights 3 + 5 = 8) cannot outvote a margin of 10; the raw messages
    # of "none" carry the kernels' mass (about 50 and 1000 here) and flip the centre.
    image = np.full((9, 9, 3), 128, np.uint8)
    logits = np.zeros((9, 9, 2), np.float32)
    logits[..., 0] = 10.0
    logits[4, 4] = [0.0, 10.0]
    labels = {
        normalization: DenseCRF(iterations=1, normalization=normalization,
                                backend=backend)(image, logits, "logits").argmax(-1)
        for normalization in NORMALIZATIONS
    }
    assert (labels["none"] == 0).all()
    for normalization in ("symmetric", "after", "before"):
        assert labels[normalization][4, 4] == 1
        assert labels[normalization].sum() == 1


def test_after_normalisation_matches_exact_kernels_on_a_tiny_image():
    crf = DenseCRF(bilateral_sxy=5.0, bilateral_srgb=20.0, normalization="after",
                   backend="numpy")
    for seed in range(3):
        image = _blocky_image(seed)
        probabilities = np.random.default_rng(seed).dirichlet(np.ones(4), (12, 10))
        refined = crf(image, probabilities.astype(np.float32))
        exact = _exact_dense_crf(image, probabilities, crf)
        assert np.abs(refined - exact).mean() < 0.02
        assert (refined.argmax(-1) == exact.argmax(-1)).mean() >= 0.95


@pytest.mark.parametrize("backend", BACKENDS)
def test_keeps_a_confident_correct_segmentation(backend):
    labels, image = _shapes()
    probabilities = np.where(np.eye(3, dtype=bool)[labels], 0.9, 0.05).astype(np.float32)
    refined = dense_crf(image, probabilities, crf=DenseCRF(backend=backend))
    np.testing.assert_array_equal(refined.argmax(-1), labels)
    assert refined.max(-1).min() > 0.9


@pytest.mark.parametrize("normalization", ["none", "after"])
def test_sharpens_blurred_probabilities_at_edges(normalization):
    labels, image = _shapes()
    rng = np.random.default_rng(1)
    probabilities = ndimage.gaussian_filter(np.eye(3)[labels], (5, 5, 0))
    probabilities += rng.uniform(0, 0.3, probabilities.shape)
    probabilities = (probabilities / probabilities.sum(-1, keepdims=True)).astype(np.float32)
    edges = ndimage.morphological_gradient(labels, size=3) > 0
    near_edges = ndimage.binary_dilation(edges, iterations=6)

    def accuracy(predicted):
        return (predicted == labels)[near_edges].mean()

    def refine(**kwargs):
        crf = DenseCRF(normalization=normalization, backend="numpy", **kwargs)
        return crf(image, probabilities).argmax(-1)

    before = accuracy(probabilities.argmax(-1))
    after = accuracy(refine())
    smoothing_only = accuracy(refine(bilateral_weight=0))
    assert before < 0.95  # the blur did move the edges
    assert after > 0.99 and after > before + 0.04
    assert smoothing_only < after  # the colour-aware kernel does the sharpening


@pytest.mark.parametrize("backend", BACKENDS)
def test_output_is_a_distribution_per_pixel(backend):
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (30, 40, 3)).astype(np.uint8)
    probabilities = rng.random((30, 40, 5))  # float64, rows not normalised, some near 0
    probabilities[0, 0] = [1, 0, 0, 0, 0]
    probabilities[0, 1] = 0  # an uncovered pixel: uniform unary
    refined = DenseCRF(iterations=3, backend=backend)(image, probabilities)
    assert refined.shape == (30, 40, 5) and refined.dtype == np.float32
    assert np.isfinite(refined).all() and (refined >= 0).all()
    np.testing.assert_allclose(refined.sum(-1), 1.0, atol=1e-5)
    single_class = DenseCRF(backend=backend)(image, np.ones((30, 40, 1), np.float32))
    np.testing.assert_array_equal(single_class, 1.0)


# --- the backends ----------------------------------------------------------------------------


# Measured (x86-64, pydensecrf2 1.1 built from its sdist with GCC 12): on this 100x80 image
# with 5 classes (and for seeds 1 and 2 too) the two backends give the same labels on 100.00%
# of the pixels for every normalisation; marginals differ by at most 1e-7 to 1.3e-5, 1e-8 on
# average, because the NumPy lattice repeats densecrf's float32 arithmetic. Only rounding
# differs (summation order, exp), so another compiler or CPU may flip a pixel: hence 99%.
@needs_pydensecrf2
@pytest.mark.parametrize("normalization", NORMALIZATIONS)
def test_numpy_and_pydensecrf2_agree(normalization):
    _, image, logits = _blobby()
    results = [
        DenseCRF(normalization=normalization, backend=backend)(image, logits, "logits")
        for backend in ("numpy", "pydensecrf2")
    ]
    assert (results[0].argmax(-1) == results[1].argmax(-1)).mean() >= 0.99
    assert np.abs(results[0] - results[1]).mean() < 1e-3


def test_auto_backend_falls_back_to_numpy(monkeypatch):
    monkeypatch.setattr(mean_field_module, "_import_pydensecrf", lambda: None)
    assert not pydensecrf2_available()
    assert DenseCRF().resolved_backend == "numpy"
    assert DenseCRF(backend="numpy").resolved_backend == "numpy"
    with pytest.raises(ImportError, match="pip install pydensecrf2"):
        DenseCRF(backend="pydensecrf2")
    image, probabilities = _image_and_probabilities()
    np.testing.assert_array_equal(
        dense_crf(image, probabilities),
        dense_crf(image, probabilities, crf=DenseCRF(backend="numpy")),
    )


@needs_pydensecrf2
def test_auto_backend_prefers_pydensecrf2():
    assert DenseCRF().resolved_backend == "pydensecrf2"


def test_numpy_backend_speed_on_a_small_image():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (120, 160, 3)).astype(np.uint8)
    probabilities = rng.dirichlet(np.ones(21), (120, 160)).astype(np.float32)
    start = time.perf_counter()
    dense_crf(image, probabilities, crf=DenseCRF(backend="numpy"))
    assert time.perf_counter() - start < 8.0


# --- input checks ----------------------------------------------------------------------------


def _image_and_probabilities():
    return np.zeros((6, 8, 3), np.uint8), np.full((6, 8, 2), 0.5, np.float32)


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda image, p: (image.astype(np.float32), p), "`image` must be uint8"),
        (lambda image, p: (image.astype(np.int64), p), "`image` must be uint8"),
        (lambda image, p: (image[..., :1], p), r"`image` must be \(H, W, 3\)"),
        (lambda image, p: (image[..., 0], p), r"`image` must be \(H, W, 3\)"),
        (lambda image, p: (image[:0], p[:0]), "`image` must not be empty"),
        (lambda image, p: (image.tolist(), p), "`image` must be a NumPy array"),
        (lambda image, p: (image, p.tolist()), "`scores` must be a NumPy array"),
        (lambda image, p: (image, (p > 0).astype(np.int32)), "`scores` must be a float"),
        (lambda image, p: (image, p[..., 0]), r"`scores` must be \(H, W, C\)"),
        (lambda image, p: (image, p[:5]), "same height and width"),
        (lambda image, p: (image, p[:, :7]), "same height and width"),
        (lambda image, p: (image, np.where(p > 0, np.nan, p)), "`scores` must be finite"),
        (lambda image, p: (image, np.where(p > 0, np.inf, p)), "`scores` must be finite"),
        (lambda image, p: (image, p + 1), r"`scores` must lie in \[0, 1\]"),
        (lambda image, p: (image, p - 1), r"`scores` must lie in \[0, 1\]"),
    ],
)
def test_bad_inputs_raise(change, message):
    image, probabilities = change(*_image_and_probabilities())
    with pytest.raises(ValueError, match=message):
        dense_crf(image, probabilities, crf=DenseCRF(backend="numpy"))


def test_logits_may_be_any_finite_values_but_not_inf():
    image, probabilities = _image_and_probabilities()
    logits = (probabilities - 0.5) * 1e4 + np.array([50.0, -50.0], np.float32)
    refined = dense_crf(image, logits, scores_are="logits", crf=DenseCRF(backend="numpy"))
    assert np.isfinite(refined).all() and (refined.argmax(-1) == 0).all()
    logits[0, 0, 0] = -np.inf
    with pytest.raises(ValueError, match="`scores` must be finite"):
        dense_crf(image, logits, scores_are="logits")


@pytest.mark.parametrize(
    "arguments, name",
    [
        ({"iterations": -1}, "iterations"),
        ({"iterations": 2.5}, "iterations"),
        ({"iterations": True}, "iterations"),
        ({"gaussian_sxy": 0}, "gaussian_sxy"),
        ({"bilateral_srgb": -3}, "bilateral_srgb"),
        ({"bilateral_sxy": float("nan")}, "bilateral_sxy"),
        ({"bilateral_weight": -1}, "bilateral_weight"),
        ({"gaussian_weight": "3"}, "gaussian_weight"),
        ({"normalization": "NORMALIZE_AFTER"}, "normalization"),
        ({"normalization": None}, "normalization"),
        ({"backend": "torch"}, "backend"),
    ],
)
def test_bad_parameters_raise(arguments, name):
    with pytest.raises(ValueError, match=f"`{name}`"):
        DenseCRF(**arguments)


def test_bad_scores_are_raises():
    image, probabilities = _image_and_probabilities()
    with pytest.raises(ValueError, match="`scores_are`"):
        dense_crf(image, probabilities, scores_are="softmax")
    with pytest.raises(ValueError, match="`scores_are`"):
        DenseCRF(backend="numpy")(image, probabilities, "log_probabilities")


def test_config_round_trip():
    crf = DenseCRF(iterations=5, bilateral_srgb=13.0, normalization="after", backend="numpy")
    config = crf.get_config()
    assert config == {
        "iterations": 5,
        "gaussian_sxy": 3.0,
        "gaussian_weight": 3.0,
        "bilateral_sxy": 20.0,
        "bilateral_srgb": 13.0,
        "bilateral_weight": 5.0,
        "normalization": "after",
        "backend": "numpy",
    }
    assert DenseCRF.from_config(config).get_config() == config
    image, probabilities = _image_and_probabilities()
    np.testing.assert_array_equal(
        crf(image, probabilities), dense_crf(image, probabilities, crf=DenseCRF(**config))
    )
    assert "bilateral_srgb=13.0" in repr(crf)
