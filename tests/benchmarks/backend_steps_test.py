"""The worker of the `backends` benchmark section and of `benchmarks/gpu_jax.py`."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from keras_deconvnet.benchmarks.backend_steps import (
    NUM_CLASSES,
    conv_flops,
    run,
    synthetic_crops,
)

ROOT = Path(__file__).resolve().parents[2]


def test_conv_flops_count_multiply_adds_of_convolutions():
    inputs = keras.Input((10, 12, 3))
    x = keras.layers.Conv2D(16, 3, padding="same")(inputs)
    x = keras.layers.Conv2DTranspose(4, 2, strides=2)(x)
    model = keras.Model(inputs, x)
    expected = 2 * (10 * 12 * 9 * 3 * 16) + 2 * (10 * 12 * 4 * 16 * 4)
    assert conv_flops(model) == expected


def test_synthetic_crops_are_mean_subtracted_images_and_class_masks():
    images, masks = synthetic_crops(2, 40)
    assert images.shape == (2, 40, 40, 3) and images.dtype == np.float32
    assert abs(float(images.mean())) < 5
    assert masks.dtype == np.int32 and set(np.unique(masks)) <= set(range(NUM_CLASSES)) | {255}
    assert (masks == 255).any()


def test_run_times_forward_and_training_step_against_the_matmul_rate():
    result = run(["deconvnet_edge_small"], image_size=96, batches=[1], repeats=1, warmup=1,
                 dtypes=["float32"], matmul_size=128)
    assert result["backend"] == keras.config.backend()
    (row,) = result["rows"]
    assert row["preset"] == "deconvnet_edge_small" and row["batch"] == 1
    for key in ("forward_examples_per_s", "train_examples_per_s", "matmul_gflops_per_s",
                "forward_fraction_of_matmul", "train_fraction_of_matmul"):
        assert row[key] > 0, key
    assert row["gflops_per_forward"] == pytest.approx(0.1034, rel=0.01)


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="jax is not installed")
def test_gpu_script_runs_under_jax_at_a_tiny_size(tmp_path):
    out = tmp_path / "gpu.json"
    env = {**os.environ, "KERAS_BACKEND": "jax", "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, "benchmarks/gpu_jax.py", "--preset", "deconvnet_edge_small",
         "--image-size", "96", "--batches", "1", "--dtypes", "float32", "bfloat16",
         "--repeats", "1", "--matmul-size", "256", "--json", str(out)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["backend"] == "jax"
    assert [r["dtype"] for r in report["rows"]] == ["float32", "bfloat16"]
    assert set(report["matmul_gflops_per_s"]) == {"float32", "bfloat16"}
