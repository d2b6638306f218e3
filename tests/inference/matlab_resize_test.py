"""MATLAB's `imresize(..., 'bilinear')` against a reference written from MATLAB's
documented algorithm, independently of the package's weight matrices."""

import math

import numpy as np
import pytest

from keras_deconvnet.inference.matlab_resize import imresize_bilinear, resize_weights


def _matlab_reference_1d(signal, out_len, antialias=True):
    """imresize along one axis, output pixel by output pixel, as MATLAB documents it:
    u = x / scale + 0.5 (1 - 1 / scale); triangle kernel, stretched by 1 / scale when
    shrinking with antialiasing; weights normalised; symmetric padding at the edges."""
    signal = [float(v) for v in signal]
    n = len(signal)
    scale = out_len / n
    shrink = antialias and scale < 1

    def kernel(t):
        if shrink:
            t = t * scale
        value = (t + 1) if -1 <= t < 0 else (1 - t) if 0 <= t <= 1 else 0.0
        return value * scale if shrink else value

    def read(index):  # 1-based, symmetric padding: ... 2 1 | 1 2 ... n | n n-1 ...
        period = 2 * n
        k = (index - 1) % period
        return signal[k] if k < n else signal[period - 1 - k]

    width = 2 / scale if shrink else 2.0
    out = []
    for x in range(1, out_len + 1):
        u = x / scale + 0.5 * (1 - 1 / scale)
        first = math.floor(u - width / 2)
        taps = range(first, first + math.ceil(width) + 2)
        weights = [kernel(u - j) for j in taps]
        total = sum(weights)
        out.append(sum(w * read(j) for w, j in zip(weights, taps)) / total)
    return np.array(out)


def _matlab_reference_2d(image, size, antialias=True):
    rows = np.stack([_matlab_reference_1d(col, size[0], antialias) for col in image.T], 1)
    return np.stack([_matlab_reference_1d(row, size[1], antialias) for row in rows], 0)


@pytest.mark.parametrize("in_len,out_len", [(4, 2), (7, 3), (10, 10), (3, 8), (560, 224),
                                            (150, 224), (13, 5)])
def test_one_axis_matches_the_documented_algorithm(in_len, out_len):
    signal = np.random.default_rng(in_len * 1000 + out_len).uniform(0, 255, in_len)
    got = resize_weights(in_len, out_len) @ signal
    np.testing.assert_allclose(got, _matlab_reference_1d(signal, out_len), rtol=1e-12)
    plain = resize_weights(in_len, out_len, antialias=False) @ signal
    np.testing.assert_allclose(plain, _matlab_reference_1d(signal, out_len, False),
                               rtol=1e-12)


def test_known_values():
    # imresize([1 2], [1 4], 'bilinear') = [1 1.25 1.75 2]: replicated edges.
    np.testing.assert_allclose(resize_weights(2, 4) @ [1.0, 2.0], [1, 1.25, 1.75, 2])
    # Shrinking 4 -> 2 reads 4 taps (the kernel is twice as wide), edge mirrored.
    np.testing.assert_allclose(resize_weights(4, 2) @ [1.0, 2.0, 3.0, 4.0], [1.625, 3.375])
    # Without antialiasing, 4 -> 2 is the plain midpoints.
    np.testing.assert_allclose(resize_weights(4, 2, antialias=False) @ [1.0, 2, 3, 4],
                               [1.5, 3.5])


def test_images_match_the_reference_both_ways():
    rng = np.random.default_rng(1)
    image = rng.uniform(0, 255, (37, 23, 3))
    for size in [(16, 16), (16, 40), (60, 11)]:
        got = imresize_bilinear(image, size)
        for c in range(3):
            np.testing.assert_allclose(got[..., c], _matlab_reference_2d(image[..., c], size),
                                       rtol=1e-10)
    assert imresize_bilinear(image[..., 0], (5, 5)).shape == (5, 5)


def test_shrinking_low_pass_filters_noise():
    # The measurement: noise warped 560 -> 224. MATLAB's antialiased resize
    # leaves about 19.5 of the noise's 73.6 standard deviation; two-tap bilinear ~46.
    noise = np.random.default_rng(0).uniform(0, 255, (560, 560))
    assert imresize_bilinear(noise, (224, 224)).std() == pytest.approx(19.5, abs=0.5)
    assert imresize_bilinear(noise, (224, 224), antialias=False).std() > 40


def test_bad_input():
    with pytest.raises(ValueError, match="Sizes"):
        resize_weights(0, 3)
    with pytest.raises(ValueError, match="image"):
        imresize_bilinear(np.zeros((2, 2, 2, 2)), (3, 3))
