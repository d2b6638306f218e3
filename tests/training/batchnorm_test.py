"""Tests of `recompute_batchnorm_statistics`."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from model_fixtures import tiny_deconvnet

from keras_deconvnet.training import recompute_batchnorm_statistics


def _model():
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", name="conv")(inputs)
    x = keras.layers.BatchNormalization(name="bn1")(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.Conv2D(2, 1, name="conv2")(x)
    x = keras.layers.BatchNormalization(name="bn2")(x)
    return keras.Model(inputs, x)


def _images(n=12, seed=0):
    rng = np.random.default_rng(seed)
    # Offset and scale far from BN's initial (0, 1) statistics.
    return (5.0 + 3.0 * rng.normal(size=(n, 8, 8, 3))).astype("float32")


def test_population_statistics_of_first_layer():
    model = _model()
    images = _images()
    masks = np.zeros((12, 8, 8), "int32")
    dataset = tf.data.Dataset.from_tensor_slices((images, masks)).batch(5)  # 5, 5, 2
    assert recompute_batchnorm_statistics(model, dataset, num_batches=None,
                                          method="population") == 3
    # bn1's input does not depend on other BatchNorms: check it exactly.
    features = keras.Model(model.inputs, model.get_layer("conv").output)
    x = features.predict(images, verbose=0).reshape(-1, 4).astype("float64")
    bn1 = model.get_layer("bn1")
    np.testing.assert_allclose(keras.ops.convert_to_numpy(bn1.moving_mean), x.mean(0),
                               rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(bn1.moving_variance), x.var(0),
                               rtol=1e-3)
    # bn2's input is computed with bn1 in training mode (batch statistics): its
    # population mean is the mean over batches, weighted by size.
    bn2 = model.get_layer("bn2")
    means = []
    for start, stop in ((0, 5), (5, 10), (10, 12)):
        h = model.get_layer("conv2")(keras.layers.ReLU()(bn1(
            model.get_layer("conv")(images[start:stop]), training=True)))
        means.append(keras.ops.convert_to_numpy(h).reshape(-1, 2).mean(0) * (stop - start))
    np.testing.assert_allclose(keras.ops.convert_to_numpy(bn2.moving_mean),
                               np.sum(means, 0) / 12, rtol=1e-4, atol=1e-5)
    # Layers restored: momentum and trainable unchanged.
    assert bn1.momentum == 0.99 and bn1.trainable


def test_caffe_method_averages_batch_variances_with_m_over_m_minus_1():
    # BN_make_INFERENCE_script.py: mean of the per-batch means and of the per-batch
    # (biased) variances, the variance times m / (m - 1), m = N * H * W.
    inputs = keras.Input((2, 3, 1))
    model = keras.Model(inputs, keras.layers.BatchNormalization(name="bn")(inputs))
    images = np.arange(24, dtype="float32").reshape(4, 2, 3, 1) ** 1.5
    batches = [images[:2], images[2:]]  # two batches, m = 2 * 2 * 3 = 12
    m = 12
    expected_mean = np.mean([b.mean() for b in batches])
    expected_var = np.mean([b.var() for b in batches]) * m / (m - 1)
    assert recompute_batchnorm_statistics(model, batches, num_batches=None) == 2
    bn = model.get_layer("bn")
    np.testing.assert_allclose(keras.ops.convert_to_numpy(bn.moving_mean), [expected_mean],
                               rtol=1e-6)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(bn.moving_variance),
                               [expected_var], rtol=1e-5)
    # Without the correction: the plain mean (what Python 2's integer m / (m - 1)
    # gave the released model); and the pooled variance is another number.
    recompute_batchnorm_statistics(model, batches, num_batches=None, unbiased=False)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(bn.moving_variance),
                               [expected_var * (m - 1) / m], rtol=1e-5)
    recompute_batchnorm_statistics(model, batches, num_batches=None, method="population")
    np.testing.assert_allclose(keras.ops.convert_to_numpy(bn.moving_variance),
                               [images.var()], rtol=1e-5)
    with pytest.raises(ValueError, match="method"):
        recompute_batchnorm_statistics(model, batches, method="ema")


def test_num_batches_limits_and_inference_uses_new_statistics():
    model = tiny_deconvnet(3, image_shape=(32, 32, 3), block_filters=(4,) * 5,
                           fc_units=8, fc_kernel_size=1)
    images = _images(n=6)
    images = np.tile(images, (1, 4, 4, 1))
    dataset = tf.data.Dataset.from_tensor_slices(images).batch(2)
    before = model.predict(images[:2], verbose=0)
    assert recompute_batchnorm_statistics(model, dataset, num_batches=2) == 2
    bn = model.backbone.get_layer("block1_conv1_bn")
    assert not np.allclose(keras.ops.convert_to_numpy(bn.moving_mean), 0.0)
    after = model.predict(images[:2], verbose=0)
    assert not np.allclose(before, after)


def test_errors_leave_the_model_unchanged():
    model = _model()
    bn1 = model.get_layer("bn1")
    with pytest.raises(ValueError, match="num_batches"):
        recompute_batchnorm_statistics(model, [], num_batches=0)
    with pytest.raises(ValueError, match="no batch"):
        recompute_batchnorm_statistics(model, tf.data.Dataset.from_tensor_slices(
            np.zeros((0, 8, 8, 3), "float32")).batch(2))
    with pytest.raises(ValueError, match="batched"):
        recompute_batchnorm_statistics(
            model, tf.data.Dataset.from_tensor_slices(_images(2)))
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(bn1.moving_mean), 0.0)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(bn1.moving_variance), 1.0)
    inputs = keras.Input((4,))
    with pytest.raises(ValueError, match="no BatchNormalization"):
        recompute_batchnorm_statistics(keras.Model(inputs, keras.layers.Dense(2)(inputs)), [])
