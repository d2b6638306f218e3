"""The forward pass of the named configurations: images/s, GFLOP/s, fraction of matmul."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from keras_deconvnet.benchmarks.config import SuiteConfig
from keras_deconvnet.benchmarks.machine import cpu_supports_bfloat16, timed


def conv_macs(model: keras.Model) -> int:
    """MACs of one forward pass of one image: Conv2D, Conv2DTranspose and Dense layers.

    Pooling, unpooling, BatchNorm and ReLU are memory-bound and not counted, as is
    usual for FLOP figures; nested models are walked. FLOPs are 2 x MACs.
    """
    total = 0
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            total += conv_macs(layer)
            continue
        if isinstance(layer, keras.layers.Conv2DTranspose):
            _, h, w, cin = layer.input.shape
            kh, kw = layer.kernel_size
            total += h * w * kh * kw * cin * layer.filters
        elif isinstance(layer, keras.layers.Conv2D):
            _, h, w, cout = layer.output.shape
            kh, kw = layer.kernel_size
            total += h * w * kh * kw * layer.input.shape[-1] * cout
        elif isinstance(layer, keras.layers.Dense):
            total += layer.input.shape[-1] * layer.units
    return int(total)


def build_model(preset: str, image_size: int, dtype: str = "float32") -> keras.Model:
    """A DeconvNet segmenter of a named configuration at `image_size`, under `dtype`."""
    from keras_deconvnet.models import DeconvNetImageSegmenter

    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(dtype)
    try:
        return DeconvNetImageSegmenter.from_preset(
            preset, image_shape=(image_size, image_size, 3)
        )
    finally:
        keras.config.set_dtype_policy(previous)


def random_images(batch: int, size: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(batch, size, size, 3)).astype("float32")


def _forward_runner(model: keras.Model, mode: str, x: np.ndarray) -> Callable[[], Any]:
    if mode == "predict_on_batch":
        model.compile(jit_compile=False)
        return lambda: model.predict_on_batch(x)
    fn = tf.function(lambda t: model(t, training=False), jit_compile=(mode == "xla"))
    tx = tf.constant(x)
    return lambda: fn(tx).numpy()


def bench_forward(config: SuiteConfig, matmul_gflops: float | None, log=print) -> list:
    """Forward-pass rows: preset x dtype x mode x batch."""
    rows = []
    dtypes = [d for d in config.dtypes if d == "float32" or cpu_supports_bfloat16()]
    for preset in config.presets:
        for dtype in dtypes:
            model = build_model(preset, config.image_size, dtype)
            flops = 2 * conv_macs(model)
            for mode in config.modes:
                if mode == "predict_on_batch" and dtype != "float32":
                    continue  # the same graph as "function"; once is enough
                for batch in config.batches:
                    primary = mode == "function"
                    if not primary and config.other_mode_batches is not None and (
                        batch not in config.other_mode_batches
                    ):
                        continue
                    x = random_images(batch, config.image_size)
                    run = _forward_runner(model, mode, x)
                    start = time.perf_counter()
                    run()  # trace / compile: the first warm-up run
                    first_s = time.perf_counter() - start
                    timing = timed(config, run, max(0, config.warmup - 1))
                    seconds = timing["median_s"]
                    gflops = flops * batch / seconds / 1e9
                    row = {
                        "preset": preset, "dtype": dtype, "mode": mode, "batch": batch,
                        "seconds_per_batch": seconds, "seconds_per_image": seconds / batch,
                        "images_per_second": batch / seconds,
                        "gflop_per_image": flops / 1e9, "gflops_per_second": gflops,
                        "fraction_of_matmul": gflops / matmul_gflops if matmul_gflops else None,
                        "first_call_s": first_s, "runs_s": timing["runs_s"],
                    }
                    rows.append(row)
                    log(f"  forward {preset} {dtype} {mode} b{batch}: "
                        f"{seconds / batch * 1e3:.1f} ms/image, {gflops:.1f} GFLOP/s")
            del model
            keras.backend.clear_session()
    return rows
