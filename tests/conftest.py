"""Shared pytest set-up: quiet TensorFlow, deterministic seeds, the `slow` marker, and
the backend, as keras-hub's own conftest chooses it.

The suite runs on the Keras backend that `KERAS_BACKEND` names (TensorFlow when
unset). Tests marked `tf_only` (the exporters, serving, `tf.data` pipelines, the
command line) are skipped under another backend with a one-line reason;
`tests/backends/cross_backend_test.py` runs the backend-agnostic files again under
`KERAS_BACKEND=jax` and `torch`, e.g. by hand:
`KERAS_BACKEND=jax .venv/bin/pytest -n 0 tests/models/keras_hub_harness_test.py`.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras  # noqa: E402
import pytest  # noqa: E402


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "tf_only: needs the TensorFlow backend (skipped under KERAS_BACKEND=jax "
        "or torch)")


def pytest_collection_modifyitems(config, items):
    backend = keras.config.backend()
    if backend == "tensorflow":
        return
    skip = pytest.mark.skip(reason=f"TensorFlow backend only; this run is {backend!r}")
    for item in items:
        if "tf_only" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _seed_and_clean():
    keras.utils.set_random_seed(1234)
    yield
    keras.config.set_dtype_policy("float32")
    keras.backend.clear_session()
