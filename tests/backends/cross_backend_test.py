"""The backend-agnostic test files, run again under `KERAS_BACKEND=jax` and `torch`
(one pytest process per backend, as keras-hub runs its suite per backend), against
outputs that TensorFlow gives here; then the preset trained under the other backend
is loaded and exported under TensorFlow.

A backend that is not installed is skipped with a one-line reason (`jax[cpu]` comes
with the `test` extra; the CPU build of PyTorch: see the README's "Backends"). The JAX
run is in the default suite; the PyTorch run is marked slow.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import keras_hub
import numpy as np
import pytest
from model_fixtures import calibrate, smooth_images, tiny_deconvnet, tiny_fcn8s

from keras_deconvnet.models import DeconvNetImageSegmenter, EDeconvNetImageSegmenter

pytestmark = pytest.mark.tf_only
ROOT = Path(__file__).resolve().parents[2]
# The quickstart's configuration: deconvnet_edge_small at 128x128, 6 synthetic classes.
QUICKSTART_SIZE = 128


def _save_reference(model, directory: Path, family: str, images: np.ndarray) -> None:
    model.save_to_preset(directory / family)
    scores = model.predict(images, verbose=0)
    np.savez(directory / f"{family}.npz", images=images, scores=scores,
             labels=np.argmax(scores, -1))


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """Presets and their TensorFlow outputs on raw RGB uint8 images: the quickstart's
    DeconvNet configuration (untrained, BatchNorm statistics from data, so the
    classes are well separated), a tiny FCN-8s and their EDeconvNet ensemble."""
    directory = tmp_path_factory.mktemp("tf_reference")
    keras.utils.set_random_seed(0)
    deconvnet = DeconvNetImageSegmenter.from_preset(
        "deconvnet_edge_small", num_classes=6,
        image_shape=(QUICKSTART_SIZE, QUICKSTART_SIZE, 3))
    calibrate(deconvnet)
    images = smooth_images(3, (QUICKSTART_SIZE, QUICKSTART_SIZE), seed=5)
    _save_reference(deconvnet, directory, "deconvnet", images)
    small = smooth_images(2, seed=6)
    fcn8s = tiny_fcn8s()
    _save_reference(fcn8s, directory, "fcn8s", small)
    ensemble = EDeconvNetImageSegmenter(tiny_deconvnet(calibrated=True), fcn8s)
    _save_reference(ensemble, directory, "edeconvnet", small)
    return directory


FAMILY = "tests/backends/model_family_test.py"
HARNESS = "tests/models/keras_hub_harness_test.py"


# The model family under JAX is in the default suite (and CI); keras-hub's harness under
# JAX (mixed precision, quantization: many compilations) and everything under PyTorch
# (eager on a CPU) take several minutes each on 2 cores: `pytest -m slow`.
@pytest.mark.parametrize("backend, files", [
    pytest.param("jax", (FAMILY,), id="jax"),
    pytest.param("jax", (HARNESS,), marks=pytest.mark.slow, id="jax-harness"),
    pytest.param("torch", (FAMILY, HARNESS), marks=pytest.mark.slow, id="torch"),
])
def test_backend_agnostic_files_pass_under(backend, files, reference, tmp_path):
    if importlib.util.find_spec(backend) is None:
        pytest.skip(f"{backend} is not installed (see the README's Backends section)")
    output = tmp_path / "output"
    output.mkdir()
    env = {**os.environ, "KERAS_BACKEND": backend,
           "KERAS_DECONVNET_TF_REFERENCE": str(reference),
           "KERAS_DECONVNET_BACKEND_OUTPUT": str(output)}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-n", "0", "-q", "-rs", "-W",
         "ignore::UserWarning", *files],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800,
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
    assert " passed" in result.stdout and " failed" not in result.stdout
    # The comparisons with TensorFlow ran (not skipped) under that backend.
    assert "compares with TensorFlow" not in result.stdout
    if FAMILY not in files:
        return

    # A preset trained under that backend loads under TensorFlow with the same outputs,
    # and exports for TF Serving.
    saved = json.loads((output / "backend.json").read_text())
    assert saved["backend"] == backend
    expected = np.load(output / "trained.npz")
    loaded = keras_hub.models.ImageSegmenter.from_preset(saved["preset"])
    np.testing.assert_allclose(loaded.predict(expected["images"], verbose=0),
                               expected["scores"], rtol=1e-5, atol=1e-5)
    from keras_deconvnet.export import export_saved_model

    version = export_saved_model(loaded, tmp_path / "serving", image_shape=(64, 64))
    assert (version / "saved_model.pb").is_file()
