import keras
import numpy as np
import pytest
import tensorflow as tf
from argmax_reference import reference_pool, reference_unpool
from layer_harness import assert_config_round_trip, run_model_checks

from keras_deconvnet.layers import MaxPoolWithArgmax, Unpool


def _pool_unpool_model(dtype=None):
    inputs = keras.Input((None, None, 3))
    x = keras.layers.Conv2D(4, 3, padding="same")(inputs)
    pooled, switches = MaxPoolWithArgmax(name="pool")(x)
    y = keras.layers.Conv2D(4, 1)(pooled)
    outputs = Unpool(name="unpool")(y, switches)
    return keras.Model(inputs, outputs)


class TestMaxPoolWithArgmaxBasics:
    def test_config_round_trip(self):
        assert_config_round_trip(MaxPoolWithArgmax(pool_size=3, padding="valid", name="p"))

    def test_symbolic_shapes(self):
        pooled, switches = MaxPoolWithArgmax()(keras.Input((7, 9, 5)))
        assert tuple(pooled.shape) == (None, 4, 5, 5)
        assert tuple(switches.shape) == (None, 7, 9, 5)
        pooled, switches = MaxPoolWithArgmax(padding="valid")(keras.Input((None, 9, 5)))
        assert tuple(pooled.shape) == (None, None, 4, 5)
        assert tuple(switches.shape) == (None, None, 9, 5)

    def test_model_checks(self):
        x = np.random.default_rng(0).normal(size=(2, 9, 6, 3)).astype("float32")
        run_model_checks(_pool_unpool_model, [x])

    @pytest.mark.parametrize(
        "kwargs, message",
        [
            ({"pool_size": 1}, "pool_size"),
            ({"pool_size": (2, 3)}, "pool_size"),
            ({"pool_size": 2.0}, "pool_size"),
            ({"padding": "causal"}, "padding"),
        ],
    )
    def test_bad_arguments(self, kwargs, message):
        with pytest.raises(ValueError, match=message):
            MaxPoolWithArgmax(**kwargs)

    def test_unknown_channels(self):
        layer = MaxPoolWithArgmax()
        fn = tf.function(layer.call, input_signature=[tf.TensorSpec([1, 4, 4, None])])
        with pytest.raises(ValueError, match="channel"):
            fn.get_concrete_function()

    def test_wrong_rank(self):
        with pytest.raises(ValueError):
            MaxPoolWithArgmax()(np.zeros((4, 4, 3), "float32"))


def _check_against_reference(x, pool_size=2, padding="same"):
    pooled, switches = MaxPoolWithArgmax(pool_size, padding)(x)
    ref_pooled, ref_argmax = reference_pool(x, pool_size, padding)
    np.testing.assert_array_equal(pooled, ref_pooled)
    # Exactly one switch per window, at TF's argmax.
    assert int(np.sum(switches)) == ref_pooled.numpy().size
    np.testing.assert_array_equal(np.flatnonzero(switches), np.sort(ref_argmax.numpy().ravel()))
    values = np.random.default_rng(1).normal(size=ref_pooled.shape).astype(x.dtype)
    np.testing.assert_array_equal(
        Unpool(pool_size)(values, switches), reference_unpool(values, ref_argmax, x.shape)
    )


def _numpy_ceil_mode_pool(x, k):
    """Plain NumPy: ceil-mode windows, the first maximum in row-major order."""
    b, h, w, c = x.shape
    ph, pw = -(-h // k), -(-w // k)
    pooled = np.zeros((b, ph, pw, c), x.dtype)
    switches = np.zeros_like(x)
    for n, i, j, ch in np.ndindex(b, ph, pw, c):
        window = x[n, i * k : (i + 1) * k, j * k : (j + 1) * k, ch]
        r, s = np.unravel_index(np.argmax(window), window.shape)
        pooled[n, i, j, ch] = window[r, s]
        switches[n, i * k + r, j * k + s, ch] = 1
    return pooled, switches


class TestMaxPoolWithArgmaxCorrectness:
    @pytest.mark.parametrize("shape", [(2, 8, 6, 3), (1, 5, 7, 2), (3, 1, 1, 4), (1, 9, 2, 1)])
    def test_random_values(self, shape):
        x = np.random.default_rng(0).normal(size=shape).astype("float32")
        _check_against_reference(x)

    @pytest.mark.parametrize("shape", [(2, 8, 6, 3), (1, 7, 5, 4)])
    def test_ties_pick_the_first_in_row_major_order(self, shape):
        x = np.random.default_rng(0).integers(0, 2, size=shape).astype("float32")
        _check_against_reference(x)
        _check_against_reference(np.zeros(shape, "float32"))

    def test_hand_made_ties(self):
        x = np.array([[5, 5, 1, 2], [5, 5, 2, 1], [0, 0, 7, 0], [0, 0, 0, 7]], "float32")
        pooled, switches = MaxPoolWithArgmax()(x.reshape(1, 4, 4, 1))
        expected = np.array([[1, 0, 0, 1], [0, 0, 0, 0], [1, 0, 1, 0], [0, 0, 0, 0]])
        np.testing.assert_array_equal(switches[0, :, :, 0], expected)
        np.testing.assert_array_equal(pooled[0, :, :, 0], [[5, 2], [0, 7]])

    def test_negative_values_with_odd_size(self):
        # The repeated edge row must never beat the real values, even when all are < 0.
        x = -np.abs(np.random.default_rng(3).normal(size=(2, 5, 5, 3))).astype("float32") - 1
        _check_against_reference(x)

    @pytest.mark.parametrize("padding", ["same", "valid"])
    @pytest.mark.parametrize("shape", [(1, 9, 9, 2), (2, 8, 11, 3)])
    def test_pool_size_3(self, padding, shape):
        # TF pads "SAME" at the bottom/right only while it pads one row: these shapes.
        x = np.random.default_rng(0).integers(0, 3, size=shape).astype("float32")
        _check_against_reference(x, pool_size=3, padding=padding)

    def test_same_is_ceil_mode_for_larger_windows(self):
        # 7 rows with 3x3 windows: Caffe's ceil mode puts the partial window last.
        x = np.random.default_rng(0).integers(0, 3, size=(2, 7, 5, 2)).astype("float32")
        pooled, switches = MaxPoolWithArgmax(3)(x)
        expected_pooled, expected_switches = _numpy_ceil_mode_pool(x, 3)
        np.testing.assert_array_equal(pooled, expected_pooled)
        np.testing.assert_array_equal(switches, expected_switches)

    def test_valid_padding_keeps_the_original_size(self):
        x = np.random.default_rng(0).normal(size=(1, 5, 7, 2)).astype("float32")
        _check_against_reference(x, padding="valid")

    def test_batch_and_spatial_size_unknown(self):
        layer, unpool = MaxPoolWithArgmax(), Unpool()

        @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3])])
        def round_trip(x):
            pooled, switches = layer(x)
            return pooled, unpool(pooled, switches)

        for shape in [(1, 6, 4, 3), (3, 7, 9, 3), (2, 1, 3, 3)]:
            x = np.random.default_rng(0).integers(0, 3, size=shape).astype("float32")
            pooled, unpooled = round_trip(x)
            ref_pooled, ref_argmax = reference_pool(x)
            np.testing.assert_array_equal(pooled, ref_pooled)
            np.testing.assert_array_equal(
                unpooled, reference_unpool(ref_pooled, ref_argmax, x.shape)
            )

    def test_gradients_equal_the_reference(self):
        x = tf.constant(np.random.default_rng(0).integers(0, 3, (2, 7, 6, 3)), tf.float32)
        weights = tf.constant(np.random.default_rng(1).normal(size=(2, 7, 6, 3)), tf.float32)
        scale = tf.constant(np.random.default_rng(2).normal(size=(2, 4, 3, 3)), tf.float32)

        def ours(x):
            pooled, switches = MaxPoolWithArgmax()(x)
            return tf.reduce_sum(Unpool()(pooled * scale, switches) * weights)

        def reference(x):
            pooled, argmax = reference_pool(x)
            return tf.reduce_sum(reference_unpool(pooled * scale, argmax, x.shape) * weights)

        for fn in (ours, reference):
            with tf.GradientTape() as tape:
                tape.watch(x)
                loss = fn(x)
            if fn is ours:
                ours_grad, ours_loss = tape.gradient(loss, x), loss
            else:
                ref_grad, ref_loss = tape.gradient(loss, x), loss
        np.testing.assert_allclose(ours_loss, ref_loss, rtol=1e-6)
        np.testing.assert_array_equal(ours_grad, ref_grad)

    @pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float64"])
    def test_other_dtypes(self, dtype):
        x = tf.cast(np.random.default_rng(0).integers(0, 4, (1, 6, 6, 2)), dtype)
        pooled, switches = MaxPoolWithArgmax(dtype=dtype)(x)
        assert pooled.dtype == dtype and switches.dtype == dtype
        ref_pooled, ref_argmax = reference_pool(tf.cast(x, "float32"))
        np.testing.assert_array_equal(tf.cast(pooled, "float32"), ref_pooled)
        np.testing.assert_array_equal(
            np.flatnonzero(switches), np.sort(ref_argmax.numpy().ravel())
        )


class TestNonFiniteInputs:
    """Exact as `tf.nn.max_pool_with_argmax` + `tf.scatter_nd`, infinities included."""

    def _round_trip(self, x, jit_compile=False):
        @tf.function(jit_compile=jit_compile)
        def run(x):
            pooled, switches = MaxPoolWithArgmax()(x)
            return pooled, switches, Unpool()(pooled, switches)

        return [t.numpy() for t in run(tf.constant(x))]

    @pytest.mark.parametrize("jit_compile", [False, True])
    def test_infinities_stay_at_their_switch_with_zeros_around(self, jit_compile):
        x = np.array([[np.inf, 1.0, -np.inf, -np.inf],
                      [2.0, 3.0, -np.inf, -np.inf]], "float32").reshape(1, 2, 4, 1)
        pooled, switches, unpooled = self._round_trip(x, jit_compile)
        ref_pooled, ref_argmax = reference_pool(x)
        np.testing.assert_array_equal(pooled, ref_pooled)  # [inf, -inf]
        expected = reference_unpool(ref_pooled, ref_argmax, x.shape).numpy()
        np.testing.assert_array_equal(unpooled, expected)
        assert not np.isnan(unpooled).any()
        # The all -inf window keeps -inf at its first position.
        assert unpooled[0, 0, 2, 0] == -np.inf and unpooled[0, 1, 3, 0] == 0.0
        np.testing.assert_array_equal(np.flatnonzero(switches), np.sort(ref_argmax.numpy().ravel()))

    def test_zeros_are_positive_as_the_scatter_writes_them(self):
        x = -np.abs(np.random.default_rng(0).normal(size=(1, 4, 4, 2))).astype("float32")
        *_, unpooled = self._round_trip(x)
        zeros = unpooled == 0
        assert zeros.any() and not np.signbit(unpooled[zeros]).any()
