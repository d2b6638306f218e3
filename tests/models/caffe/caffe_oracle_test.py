"""The Caffe oracle against hand-computed examples and literal transliterations of Caffe loops."""

import ast
import time
from pathlib import Path

import numpy as np
import pytest
from models.caffe.caffe_oracle import (
    FLT_MAX,
    bn_inference,
    bn_train,
    convolution,
    crop,
    crop_offset,
    deconvnet_layers,
    deconvolution,
    eltwise,
    fold_bn,
    max_pool,
    pooled_size,
    relu,
    run_net,
    softmax,
    unpool,
    unpooled_size,
)


@pytest.fixture(autouse=True)
def _seed_and_clean():
    """Overrides tests/conftest.py's per-test Keras reset: nothing here uses Keras, and the
    reset (clear_session + gc) costs 0.3-1 s a test on a busy machine."""
    yield


def direct_convolution(x, w, b, stride, pad, group):
    n, c, h, wd = x.shape
    out, cg, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    ho, wo = (h + 2 * pad - kh) // stride + 1, (wd + 2 * pad - kw) // stride + 1
    y = np.zeros((n, out, ho, wo))
    og = out // group
    bias = np.zeros(out) if b is None else b.reshape(-1)
    for i in range(n):
        for o in range(out):
            g = o // og
            for r in range(ho):
                for s in range(wo):
                    patch = xp[i, g * cg:(g + 1) * cg, r * stride:r * stride + kh,
                               s * stride:s * stride + kw]
                    y[i, o, r, s] = (patch * w[o]).sum() + bias[o]
    return y


def scatter_deconvolution(x, w, b, stride, pad, group):
    n, c, h, wd = x.shape
    _, og, kh, kw = w.shape
    cg = c // group
    full = np.zeros((n, og * group, (h - 1) * stride + kh, (wd - 1) * stride + kw))
    for i in range(n):
        for ch in range(c):
            g = ch // cg
            for r in range(h):
                for s in range(wd):
                    full[i, g * og:(g + 1) * og, r * stride:r * stride + kh,
                         s * stride:s * stride + kw] += x[i, ch, r, s] * w[ch]
    ho, wo = (h - 1) * stride + kh - 2 * pad, (wd - 1) * stride + kw - 2 * pad
    y = full[:, :, pad:pad + ho, pad:pad + wo]
    return y if b is None else y + b.reshape(1, -1, 1, 1)


def caffe_max_pool_loop(x, k, s, p):
    """pooling_layer.cpp Forward_cpu (MAX, top mask), transliterated."""
    n, c, h, w = x.shape
    ho, wo = pooled_size(h, k, s, p), pooled_size(w, k, s, p)
    top = np.full((n, c, ho, wo), -FLT_MAX)
    mask = np.full((n, c, ho, wo), -1, dtype=np.int64)
    for i in range(n):
        for ch in range(c):
            for ph in range(ho):
                for pw in range(wo):
                    hstart, wstart = ph * s - p, pw * s - p
                    hend, wend = min(hstart + k, h), min(wstart + k, w)
                    for hh in range(max(hstart, 0), hend):
                        for ww in range(max(wstart, 0), wend):
                            if x[i, ch, hh, ww] > top[i, ch, ph, pw]:
                                top[i, ch, ph, pw] = x[i, ch, hh, ww]
                                mask[i, ch, ph, pw] = hh * w + ww
    return top, mask


def test_convolution_matches_a_direct_loop():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 4, 7, 6))
    w = rng.standard_normal((6, 2, 3, 3))
    b = rng.standard_normal((1, 1, 1, 6))  # the legacy bias layout
    got = convolution(x, w, b, stride=2, pad=1, group=2)
    assert got.shape == (2, 6, 4, 3)
    np.testing.assert_allclose(got, direct_convolution(x, w, b, 2, 1, 2), rtol=1e-12, atol=1e-12)
    plain = convolution(x, rng.standard_normal((3, 4, 7, 6)))  # fc6-like: kernel = input
    assert plain.shape == (2, 3, 1, 1)


@pytest.mark.parametrize(
    "kernel, stride, pad, group, bias",
    [(3, 1, 1, 1, True), (4, 2, 0, 1, False), (4, 2, 1, 2, True), (7, 1, 0, 1, True)],
)
def test_deconvolution_matches_a_scatter_add_loop(kernel, stride, pad, group, bias):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 4, 3, 5))
    w = rng.standard_normal((4, 3, kernel, kernel))  # (in, out / group, kh, kw)
    b = rng.standard_normal((1, 1, 1, 3 * group)) if bias else None
    got = deconvolution(x, w, b, stride=stride, pad=pad, group=group)
    assert got.shape == (2, 3 * group, (3 - 1) * stride + kernel - 2 * pad,
                         (5 - 1) * stride + kernel - 2 * pad)
    np.testing.assert_allclose(got, scatter_deconvolution(x, w, b, stride, pad, group),
                               rtol=1e-12, atol=1e-12)


def test_deconvolution_is_the_adjoint_of_convolution():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((1, 3, 8, 8))
    w = rng.standard_normal((5, 3, 4, 4))  # conv (out 5, in 3) == deconv (in 5, out 3)
    y = rng.standard_normal((1, 5, 4, 4))  # (8 + 2 - 4) // 2 + 1
    back = deconvolution(y, w, stride=2, pad=1)
    assert back.shape == x.shape  # (4 - 1) * 2 + 4 - 2
    # <conv(x), y> == <x, deconv(y)>: Caffe's deconvolution is conv's backward pass.
    assert np.vdot(convolution(x, w, stride=2, pad=1), y) == pytest.approx(
        np.vdot(x, back), rel=1e-12)


def test_max_pool_4x4_ties_first_maximum_in_scan_order_wins():
    x = np.array([[1, 3, 2, 2],
                  [3, 0, 2, 2],
                  [5, 5, 0, 9],
                  [5, 5, 9, 0]], dtype=np.float32).reshape(1, 1, 4, 4)
    values, mask = max_pool(x, 2, 2)
    np.testing.assert_array_equal(values[0, 0], [[3, 2], [5, 9]])
    # (0, 1) beats (1, 0); (0, 2) beats the other 2s; (2, 0) the other 5s; (2, 3) beats (3, 2).
    np.testing.assert_array_equal(mask[0, 0], [[1, 2], [8, 11]])
    assert mask.dtype == np.int64


def test_pooled_size_is_caffe_ceil_mode():
    assert pooled_size(224, 2, 2) == 112
    assert pooled_size(7, 2, 2) == 4  # ceil: the last window holds one row
    assert pooled_size(5, 3, 2) == 2
    assert pooled_size(4, 3, 2, 1) == 3  # ceil((4 + 2 - 3) / 2) + 1
    assert pooled_size(5, 2, 2, 1) == 3  # ceil gives 4, but window 4 would start in the pad
    x = np.arange(25, dtype=np.float64).reshape(1, 1, 5, 5)
    values, mask = max_pool(x, 2, 2)
    assert values.shape == (1, 1, 3, 3)
    assert values[0, 0, 2, 2] == 24 and mask[0, 0, 2, 2] == 24  # a clipped 1x1 window
    assert values[0, 0, 0, 2] == 9 and mask[0, 0, 0, 2] == 9  # a clipped 2x1 window


@pytest.mark.parametrize("shape, k, s, p", [((2, 3, 7, 9), 2, 2, 0), ((1, 2, 8, 6), 3, 2, 1),
                                            ((1, 1, 5, 5), 3, 1, 1), ((1, 2, 9, 9), 3, 3, 0)])
def test_max_pool_matches_caffes_loop(shape, k, s, p):
    x = np.random.default_rng(3).integers(-3, 4, shape).astype(np.float64)  # many ties
    values, mask = max_pool(x, k, s, p)
    expected_values, expected_mask = caffe_max_pool_loop(x, k, s, p)
    np.testing.assert_array_equal(values, expected_values)
    np.testing.assert_array_equal(mask, expected_mask)


def test_max_pool_never_picks_nan_and_reports_empty_windows_like_caffe():
    x = np.array([[np.nan, 1], [2, np.nan]]).reshape(1, 1, 2, 2)
    values, mask = max_pool(x, 2, 2)
    assert values[0, 0, 0, 0] == 2 and mask[0, 0, 0, 0] == 2
    values, mask = max_pool(np.full((1, 1, 2, 2), -np.inf), 2, 2)
    assert values[0, 0, 0, 0] == -FLT_MAX and mask[0, 0, 0, 0] == -1


def test_unpooling_puts_each_value_back_at_its_mask():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, 3, 8, 6))
    values, mask = max_pool(x, 2, 2)
    up = unpool(values, mask.astype(np.float32), kernel=2, stride=2, out_size=(8, 6))
    assert up.shape == x.shape
    flat_up = up.reshape(6, -1)
    flat_mask, flat_values = mask.reshape(6, -1), values.reshape(6, -1)
    for plane in range(6):
        np.testing.assert_array_equal(flat_up[plane, flat_mask[plane]], flat_values[plane])
    assert np.count_nonzero(up) == values.size  # zeros everywhere else
    np.testing.assert_array_equal(up[up != 0], x[up != 0])


def test_unpooling_sizes_and_maskless_placement():
    assert unpooled_size(7, 2, 2) == 15  # max(14, 7 * 2 + 1): hence `unpool_size: 14`
    assert unpooled_size(14, 2, 2) == 29
    x = np.arange(1, 5, dtype=np.float64).reshape(1, 1, 2, 2)
    assert unpool(x, kernel=2, stride=2).shape == (1, 1, 5, 5)
    up = unpool(x, kernel=2, stride=2, out_size=4)
    expected = np.zeros((4, 4))
    expected[0, 0], expected[0, 2], expected[2, 0], expected[2, 2] = 1, 2, 3, 4
    np.testing.assert_array_equal(up[0, 0], expected)


def test_unpooling_mask_indexes_the_output_plane_and_the_last_write_wins():
    x = np.array([10.0, 20.0, 30.0]).reshape(1, 1, 1, 3)
    mask = np.array([5.0, 5.0, 0.9]).reshape(1, 1, 1, 3)  # 0.9 truncates to 0, as in C
    up = unpool(x, mask, kernel=2, stride=2, out_size=(3, 4))
    expected = np.zeros((3, 4))
    expected[1, 1] = 20.0  # index 5 in a width-4 plane; 20 is written after 10
    expected[0, 0] = 30.0
    np.testing.assert_array_equal(up[0, 0], expected)
    with pytest.raises(ValueError, match="mask indices"):
        unpool(x, np.array([0, 1, -1.0]).reshape(1, 1, 1, 3), out_size=(3, 4))


def test_bn_inference_is_a_per_channel_affine():
    x = np.array([[1.0, 2.0], [3.0, 4.0]]).reshape(1, 2, 1, 2)
    y = bn_inference(x, np.array([2.0, -1.0]).reshape(1, 2, 1, 1), np.array([[[[1.0]], [[0.5]]]]))
    np.testing.assert_array_equal(y.reshape(2, 2), [[3.0, 5.0], [-2.5, -3.5]])


def test_bn_train_uses_the_biased_batch_statistics_and_eps_1e9():
    # Channel 0 holds 1 and 3 across the batch (mean 2, biased var 1); channel 1 is flat.
    x = np.array([[[[1.0]], [[5.0]]], [[[3.0]], [[5.0]]]])  # (2, 2, 1, 1)
    y, mean, var = bn_train(x, [2.0, 1.0], [0.5, 0.0], return_stats=True)
    np.testing.assert_array_equal(mean, [2.0, 5.0])
    np.testing.assert_array_equal(var, [1.0, 0.0])
    np.testing.assert_allclose(y[:, 0, 0, 0], [0.5 - 2 / np.sqrt(1 + 1e-9),
                                               0.5 + 2 / np.sqrt(1 + 1e-9)], rtol=1e-15)
    np.testing.assert_array_equal(y[:, 1], 0.0)  # 0 / sqrt(0 + 1e-9)


def test_fold_bn_turns_learn_blobs_into_inference_blobs():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 3, 4, 5)) * 3 + 1
    gamma, beta = rng.uniform(0.5, 2, 3), rng.standard_normal(3)
    y, mean, var = bn_train(x, gamma, beta, return_stats=True)
    scale, shift = fold_bn(gamma, beta, mean, var)
    np.testing.assert_allclose(bn_inference(x, scale, shift), y, rtol=1e-10, atol=1e-12)
    # The authors' script rescales the averaged variance by m / (m - 1), m = N*H*W.
    corrected, _ = fold_bn([1.0], [0.0], [0.0], [3.0], samples_per_channel=4, eps=0.0)
    assert corrected[0] == pytest.approx(1 / np.sqrt(4.0))


def test_crop_takes_the_reference_size_at_the_offset():
    x = np.arange(36, dtype=np.float64).reshape(1, 1, 6, 6)
    got = crop(x, np.zeros((1, 5, 3, 2)), offset=(1, 2))
    np.testing.assert_array_equal(got[0, 0], [[8, 9], [14, 15], [20, 21]])
    assert crop(x, (6, 6), 0).shape == (1, 1, 6, 6)
    with pytest.raises(ValueError, match="does not fit"):
        crop(x, (4, 4), 3)


def test_crop_offsets_of_fcn_8s_from_coordinate_maps():
    conv3, pool = ("conv", 3, 1, 1), ("pool", 2, 2, 0)
    data_to_pool3 = [("conv", 3, 1, 100), conv3, pool, conv3, conv3, pool, *[conv3] * 3, pool]
    block = [*[conv3] * 3, pool]  # pool3 -> pool4, pool4 -> pool5
    score2 = [*block, ("conv", 7, 1, 0), ("conv", 1, 1, 0), ("conv", 1, 1, 0), ("deconv", 4, 2, 0)]
    fuse_up = [("identity", 1, 1, 0), ("deconv", 4, 2, 0)]  # ELTWISE, then a 2x deconv
    score_pool = [("conv", 1, 1, 0)]
    # The offsets FCN-8s is known for: 5 (pool4), 9 (pool3), 31 (the final 8x upsample).
    assert crop_offset(score_pool, score2) == 5
    assert crop_offset(score_pool, [*block, *score2, *fuse_up]) == 9
    final = [*data_to_pool3, *block, *score2, *fuse_up, ("identity", 1, 1, 0),
             ("deconv", 16, 8, 0)]
    assert crop_offset(final, []) == 31
    with pytest.raises(ValueError, match="integer crop"):
        crop_offset([pool], [])  # a scale change cannot be cropped away


def test_relu_eltwise_softmax():
    x = np.array([-2.0, 0.0, 3.0])
    np.testing.assert_array_equal(relu(x), [0, 0, 3])
    np.testing.assert_array_equal(relu(x, 0.1), [-0.2, 0, 3])
    np.testing.assert_array_equal(eltwise(x, 2 * x), 3 * x)
    np.testing.assert_array_equal(eltwise(x, x, coeffs=[1, -1]), 0 * x)
    np.testing.assert_array_equal(eltwise(x, -x, operation=2), np.abs(x))
    logits = np.random.default_rng(6).standard_normal((2, 5, 3, 3)) * 50
    probs = softmax(logits)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-12)
    np.testing.assert_allclose(softmax(logits + 1000), probs, rtol=1e-12)  # stable
    assert np.array_equal(probs.argmax(axis=1), logits.argmax(axis=1))


def test_sixteenth_width_deconvnet_runs_in_seconds():
    rng = np.random.default_rng(7)
    layers = deconvnet_layers(rng, widths=(4, 8, 16, 32, 32), fc=256)
    x = rng.standard_normal((1, 3, 224, 224))
    start = time.perf_counter()
    blobs = run_net(layers, {"data": x})
    elapsed = time.perf_counter() - start
    assert elapsed < 10, f"the oracle took {elapsed:.1f} s"
    assert blobs["seg-score"].shape == (1, 21, 224, 224)
    assert np.isfinite(blobs["seg-score"]).all() and blobs["seg-score"].std() > 0
    assert blobs["fc7"].shape == (1, 256, 1, 1) and blobs["fc6-deconv"].shape == (1, 32, 7, 7)
    # unpool1 writes only at pool1's argmax positions (a max-location map).
    up = blobs["unpool1"].reshape(4, -1)
    mask = blobs["pool1_mask"].reshape(4, -1)
    for plane in range(4):
        assert set(np.flatnonzero(up[plane])) <= set(mask[plane].tolist())
    # The stage files' LEARN-mode BN runs too (batch statistics of this one image).
    learn = deconvnet_layers(np.random.default_rng(7), widths=(2, 2, 2, 2, 2), fc=8, bn_mode=0)
    assert np.isfinite(run_net(learn, {"data": x})["seg-score"]).all()


def test_oracle_shares_no_code_with_the_package():
    source = (Path(__file__).parent / "caffe_oracle.py").read_text()
    imported = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported.add((node.module or "").split(".")[0])
    assert imported <= {"__future__", "collections", "fractions", "typing", "numpy"}, imported
