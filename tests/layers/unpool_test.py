import keras
import numpy as np
import pytest
import tensorflow as tf
from argmax_reference import reference_pool, reference_unpool
from layer_harness import assert_config_round_trip

from keras_deconvnet.layers import MaxPoolWithArgmax, Unpool


class TestUnpoolBasics:
    def test_config_round_trip(self):
        assert_config_round_trip(Unpool(pool_size=3, name="unpool3"))

    def test_symbolic_shape(self):
        x = keras.Input((7, 9, 4))
        pooled, switches = MaxPoolWithArgmax()(x)
        out = Unpool()(pooled, switches)
        assert tuple(out.shape) == (None, 7, 9, 4)

    def test_channel_mismatch(self):
        with pytest.raises(ValueError, match="channels"):
            Unpool()(keras.Input((4, 4, 3)), keras.Input((8, 8, 2)))

    def test_size_mismatch(self):
        with pytest.raises(ValueError, match="switches' size"):
            Unpool()(keras.Input((4, 4, 3)), keras.Input((12, 8, 3)))

    def test_bad_pool_size(self):
        with pytest.raises(ValueError, match="pool_size"):
            Unpool(pool_size=0)


class TestUnpoolCorrectness:
    def test_places_values_at_switches_and_zeros_elsewhere(self):
        x = np.array([[1, 3], [3, 2]], "float32").reshape(1, 2, 2, 1)
        pooled, switches = MaxPoolWithArgmax()(x)
        out = Unpool()(tf.constant([[[[10.0]]]]), switches)
        np.testing.assert_array_equal(out[0, :, :, 0], [[0, 10], [0, 0]])

    def test_gradient_reaches_only_the_switch_positions(self):
        x = np.random.default_rng(0).normal(size=(2, 6, 5, 3)).astype("float32")
        _, switches = MaxPoolWithArgmax()(x)
        ref_pooled, ref_argmax = reference_pool(x)
        values = tf.constant(np.random.default_rng(1).normal(size=ref_pooled.shape), tf.float32)
        upstream = tf.constant(np.random.default_rng(2).normal(size=x.shape), tf.float32)
        with tf.GradientTape(persistent=True) as tape:
            tape.watch(values)
            ours = tf.reduce_sum(Unpool()(values, switches) * upstream)
            ref = tf.reduce_sum(reference_unpool(values, ref_argmax, x.shape) * upstream)
        np.testing.assert_array_equal(tape.gradient(ours, values), tape.gradient(ref, values))

    def test_switches_may_come_as_another_dtype(self):
        x = np.random.default_rng(0).normal(size=(1, 4, 4, 2)).astype("float32")
        pooled, switches = MaxPoolWithArgmax()(x)
        a = Unpool()(pooled, switches)
        b = Unpool()(pooled, tf.cast(switches, "bool"))
        np.testing.assert_array_equal(a, b)
