"""Every switch formulation equals `tf.nn.max_pool_with_argmax` + `tf.scatter_nd` on
finite input: ties, odd sizes, both paddings, tiny and huge differences; in Keras and,
for the TFLite formulations, in the TFLite interpreter."""

import numpy as np
import pytest
import tensorflow as tf
from argmax_reference import reference_pool, reference_unpool

from keras_deconvnet.layers import FORMULATIONS, MaxPoolWithArgmax, Unpool, switch_formulation


def _hard_inputs(shape):
    """Finite inputs that break a careless switch rule."""
    rng = np.random.default_rng(0)
    one_ulp = np.spacing(np.float32(1.0))
    return {
        "normal": rng.normal(size=shape),
        "ties": rng.integers(0, 3, shape),
        "zeros": np.zeros(shape),
        "negative": -np.abs(rng.normal(size=shape)) - 1,
        # Neighbours one float apart: a difference of 2**-23.
        "one_ulp": 1.0 + one_ulp * rng.integers(0, 2, shape),
        # Normal floats whose differences are far below 2**-75.
        "tiny": 2.0**-120 * rng.integers(-2, 3, shape),
        # Differences that overflow to inf in float32.
        "huge": 3e38 * rng.choice([-1.0, 1.0, 0.5], shape),
    }


def _round_trip(x, pool_size, padding, formulation):
    @tf.function
    def run(x):
        with switch_formulation(formulation):
            pooled, switches = MaxPoolWithArgmax(pool_size, padding)(x)
            values = pooled * 0.5 - 1.0
            return pooled, switches, Unpool(pool_size)(values, switches)

    return [t.numpy() for t in run(tf.constant(x, tf.float32))]


def _assert_reference(x, pooled, switches, unpooled, pool_size, padding):
    ref_pooled, ref_argmax = reference_pool(x, pool_size, padding)
    np.testing.assert_array_equal(pooled, ref_pooled)
    assert int(np.sum(switches)) == ref_pooled.numpy().size  # one switch per window
    assert set(np.unique(switches)) <= {0.0, 1.0}
    np.testing.assert_array_equal(np.flatnonzero(switches), np.sort(ref_argmax.numpy().ravel()))
    expected = reference_unpool(ref_pooled * 0.5 - 1.0, ref_argmax, x.shape)
    np.testing.assert_array_equal(unpooled, expected)


@pytest.mark.parametrize("formulation", ["exact", "arithmetic"])
@pytest.mark.parametrize(
    "shape, pool_size, padding",
    [((2, 8, 6, 3), 2, "same"), ((1, 7, 9, 2), 2, "same"), ((1, 7, 9, 2), 2, "valid"),
     ((1, 9, 8, 2), 3, "same"), ((1, 11, 7, 2), 3, "valid")],
)
def test_keras_equals_the_reference(formulation, shape, pool_size, padding):
    for name, x in _hard_inputs(shape).items():
        x = x.astype("float32")
        try:
            _assert_reference(x, *_round_trip(x, pool_size, padding, formulation),
                              pool_size, padding)
        except AssertionError as error:
            raise AssertionError(f"{formulation}, {name} input: {error}") from None


def test_the_integer_formulation_is_approximate_in_float():
    # Documented: values closer than 1/4096 count as ties (int8 steps never are).
    x = np.array([[1.0, 1.0 + 1e-4], [0.0, 0.0]], "float32").reshape(1, 2, 2, 1)
    _, exact, _ = _round_trip(x, 2, "same", "exact")
    _, integer, _ = _round_trip(x, 2, "same", "integer")
    _, arithmetic, _ = _round_trip(x, 2, "same", "arithmetic")
    assert exact[0, 0, 1, 0] == 1 and arithmetic[0, 0, 1, 0] == 1
    assert not np.array_equal(integer, exact)


def test_bad_formulation():
    with pytest.raises(ValueError, match="formulation"):
        with switch_formulation("fast"):
            pass
    assert FORMULATIONS == ("exact", "arithmetic", "integer")


def _tflite_round_trip(shape, pool_size, padding, formulation, float16=False):
    @tf.function(input_signature=[tf.TensorSpec(shape, tf.float32)])
    def run(x):
        with switch_formulation(formulation):
            pooled, switches = MaxPoolWithArgmax(pool_size, padding)(x)
            return pooled, switches, Unpool(pool_size)(pooled * 0.5 - 1.0, switches)

    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [run.get_concrete_function()], tf.Module()
    )
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if float16:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=converter.convert())
    interpreter.allocate_tensors()

    def invoke(x):
        interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x)
        interpreter.invoke()
        outputs = {d["name"]: interpreter.get_tensor(d["index"])
                   for d in interpreter.get_output_details()}
        by_shape = sorted(outputs.values(), key=lambda t: t.size)
        pooled = by_shape[0]
        # switches and unpooled share the input's shape: switches hold only 0 and 1.
        rest = by_shape[1:]
        switches = next(t for t in rest if set(np.unique(t)) <= {0.0, 1.0})
        unpooled = next(t for t in rest if t is not switches)
        return pooled, switches, unpooled

    return invoke


@pytest.mark.parametrize("float16", [False, True])
@pytest.mark.parametrize(
    "shape, pool_size, padding",
    [((1, 7, 9, 2), 2, "same"), ((1, 8, 11, 2), 3, "valid")],
)
def test_tflite_arithmetic_equals_the_reference(shape, pool_size, padding, float16):
    invoke = _tflite_round_trip(shape, pool_size, padding, "arithmetic", float16)
    for name, x in _hard_inputs(shape).items():
        if name == "zeros":
            continue  # switches and unpooled outputs are indistinguishable
        x = x.astype("float32")
        try:
            _assert_reference(x, *invoke(x), pool_size, padding)
        except AssertionError as error:
            raise AssertionError(f"{name} input: {error}") from None


_BACKEND_SCRIPT = """
import sys
import numpy as np
import keras
from keras_deconvnet.layers import MaxPoolWithArgmax, Unpool, switch_formulation
inputs = np.load(sys.argv[1])
results = {}
for name in inputs.files:
    for formulation in ("exact", "arithmetic"):
        for pool_size, padding in ((2, "same"), (3, "valid")):
            with switch_formulation(formulation):
                pooled, switches = MaxPoolWithArgmax(pool_size, padding)(inputs[name])
                unpooled = Unpool(pool_size)(pooled * 0.5 - 1.0, switches)
            key = f"{name}-{formulation}-{pool_size}-{padding}"
            for i, t in enumerate((pooled, switches, unpooled)):
                results[f"{key}-{i}"] = keras.ops.convert_to_numpy(t)
np.savez(sys.argv[2], backend=keras.backend.backend(), **results)
"""


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_every_backend_gives_the_same_switches(backend, tmp_path):
    """The layers in keras.ops: JAX and PyTorch equal TensorFlow bit for bit."""
    import importlib.util
    import os
    import subprocess
    import sys

    if importlib.util.find_spec(backend) is None:
        pytest.skip(f"{backend} is not installed")
    inputs = {name: x.astype("float32")
              for name, x in _hard_inputs((2, 7, 9, 3)).items() if name != "zeros"}
    np.savez(tmp_path / "inputs.npz", **inputs)
    script = tmp_path / "run.py"
    script.write_text(_BACKEND_SCRIPT)
    env = dict(os.environ, KERAS_BACKEND=backend, CUDA_VISIBLE_DEVICES="")
    done = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "inputs.npz"), str(tmp_path / "out.npz")],
        capture_output=True, text=True, env=env, timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    theirs = np.load(tmp_path / "out.npz")
    assert str(theirs["backend"]) == backend
    for name, x in inputs.items():
        for formulation in ("exact", "arithmetic"):
            for pool_size, padding in ((2, "same"), (3, "valid")):
                ours = _round_trip(x, pool_size, padding, formulation)
                key = f"{name}-{formulation}-{pool_size}-{padding}"
                for i, tensor in enumerate(ours):
                    np.testing.assert_array_equal(theirs[f"{key}-{i}"], tensor, err_msg=key)
