"""Keras's own layer harness (`run_layer_test`, as keras and keras-hub test their
layers): build from shapes, symbolic and eager calls, a compiled training step,
mixed precision, and the `build()` conventions."""

from keras.src.testing import TestCase

from keras_deconvnet.layers import MaxPoolWithArgmax, Unpool


class MaxPoolWithArgmaxLayerTest(TestCase):
    def test_run_layer_test(self):
        self.run_layer_test(
            MaxPoolWithArgmax,
            init_kwargs={"pool_size": 2, "padding": "same"},
            input_shape=(2, 7, 9, 3),
            expected_output_shape=((2, 4, 5, 3), (2, 7, 9, 3)),
            expected_output_dtype=("float32", "float32"),
            expected_num_trainable_weights=0,
            expected_num_non_trainable_weights=0,
            run_training_check=False,  # no weights; gradients are checked elsewhere
        )

    def test_valid_padding(self):
        self.run_layer_test(
            MaxPoolWithArgmax,
            init_kwargs={"pool_size": 3, "padding": "valid"},
            input_shape=(1, 7, 9, 2),
            expected_output_shape=((1, 2, 3, 2), (1, 7, 9, 2)),
            run_training_check=False,
        )

    def test_returns_a_tuple_and_builds_in_build(self):
        layer = MaxPoolWithArgmax()
        assert not layer.built
        layer.build((None, 8, 8, 5))
        assert layer.built
        outputs = layer(self.random((1, 8, 8, 5)))
        assert isinstance(outputs, tuple) and len(outputs) == 2

    def test_a_subclass_build_runs(self):
        calls = []

        class Recording(MaxPoolWithArgmax):
            def build(self, input_shape):
                calls.append(tuple(input_shape))
                super().build(input_shape)

        Recording()(self.random((1, 4, 4, 2)))
        assert calls == [(1, 4, 4, 2)]

    def random(self, shape):
        import numpy as np

        return np.random.default_rng(0).normal(size=shape).astype("float32")


class UnpoolLayerTest(TestCase):
    def test_run_layer_test(self):
        self.run_layer_test(
            Unpool,
            init_kwargs={"pool_size": 2},
            input_shape={"inputs_shape": (2, 4, 5, 3), "switches_shape": (2, 7, 9, 3)},
            expected_output_shape=(2, 7, 9, 3),
            expected_output_dtype="float32",
            expected_num_trainable_weights=0,
            run_training_check=False,  # two inputs; its gradient is tested against scatter
        )

    def test_build_takes_both_shapes(self):
        layer = Unpool()
        layer.build((None, 4, 4, 3), (None, 8, 8, 3))
        assert layer.built
        with self.assertRaisesRegex(ValueError, "channels"):
            Unpool().build((None, 4, 4, 3), (None, 8, 8, 2))
