"""`keras_deconvnet.backends`: the package imports and runs its model family under JAX
without TensorFlow, the TensorFlow-only parts say so in one line, and the command
line runs on TensorFlow whatever `KERAS_BACKEND` says."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import pytest

from keras_deconvnet.backends import (
    TensorFlowRequiredError,
    backend_name,
    require_tensorflow,
    select_tensorflow_backend,
)

ROOT = Path(__file__).resolve().parents[1]
needs_jax = pytest.mark.skipif(importlib.util.find_spec("jax") is None,
                               reason="jax is not installed (test extra)")

# Run under KERAS_BACKEND=jax with TensorFlow made unimportable, as on a GPU machine
# that has JAX and no TensorFlow.
WITHOUT_TENSORFLOW = r"""
import json, sys

class NoTensorFlow:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("tensorflow", "tensorflow_text", "tf_keras"):
            raise ImportError(f"No module named {name!r} (blocked by the test)")

sys.meta_path.insert(0, NoTensorFlow())
import numpy as np
import keras_deconvnet
from keras_deconvnet.models import DeconvNetImageSegmenter
from keras_deconvnet.training import ClassWeightedCrossentropy

model = DeconvNetImageSegmenter.from_preset("deconvnet_edge_small", num_classes=3)
out = model.predict(np.zeros((1, 96, 96, 3), np.uint8), verbose=0)
errors = {}
try:
    keras_deconvnet.training.train_two_stage
except ImportError as e:
    errors["training"] = [type(e).__name__, str(e)]
try:
    import keras_deconvnet.export
except ImportError as e:
    errors["export"] = [type(e).__name__, str(e)]
print(json.dumps({"backend": keras_deconvnet.backends.backend_name(),
                  "shape": list(out.shape), "errors": errors,
                  "tensorflow": "tensorflow" in sys.modules}))
"""


def _run(code: str, backend: str, *args) -> subprocess.CompletedProcess:
    env = {**os.environ, "KERAS_BACKEND": backend}
    return subprocess.run([sys.executable, *args, "-c", code] if code else
                          [sys.executable, *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)


def test_on_tensorflow_nothing_is_refused():
    assert backend_name() == keras.config.backend() == "tensorflow"
    require_tensorflow("anything")
    select_tensorflow_backend()  # Keras already runs on TensorFlow: nothing to do


@needs_jax
def test_model_family_runs_under_jax_without_tensorflow_and_tf_parts_say_so():
    result = _run(WITHOUT_TENSORFLOW, "jax")
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["backend"] == "jax" and report["shape"] == [1, 96, 96, 3]
    assert not report["tensorflow"]
    for part in ("training", "export"):
        name, message = report["errors"][part]
        assert name == TensorFlowRequiredError.__name__
        assert "\n" not in message and "needs the TensorFlow backend" in message
        assert "'jax'" in message


@needs_jax
def test_command_line_selects_tensorflow_over_an_exported_backend():
    result = _run("", "jax", "-m", "keras_deconvnet.cli", "presets")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "deconvnet_edge_small" in result.stdout


@needs_jax
def test_command_line_in_a_jax_process_fails_in_one_line():
    code = ("import sys, keras; from keras_deconvnet.cli import main; "
            "sys.exit(main(['presets']))")
    result = _run(code, "jax")
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.startswith("deconvnet")]
    assert len(lines) == 1 and "TensorFlow backend" in lines[0], result.stderr[-2000:]
    assert "Traceback" not in result.stderr

