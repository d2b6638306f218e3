"""One optimiser step of the named configurations."""

from __future__ import annotations

import time

import keras
import numpy as np

from keras_deconvnet.benchmarks.config import SuiteConfig
from keras_deconvnet.benchmarks.forward import build_model, random_images
from keras_deconvnet.benchmarks.machine import timed


def bench_training(config: SuiteConfig, log=print) -> list:
    """One SGD step (the paper's optimiser and loss) per preset: examples/s."""
    from keras_deconvnet.training import TrainingConfig, compile_for_training

    rows = []
    for preset in config.presets:
        model = build_model(preset, config.image_size)
        train_config = TrainingConfig(tensorboard=False)
        compile_for_training(model, train_config, train_config.stage1)
        batch = config.train_batch
        x = random_images(batch, config.image_size)
        y = np.random.default_rng(3).integers(
            0, model.output_shape[-1], size=(batch, config.image_size, config.image_size)
        ).astype("int32")
        start = time.perf_counter()
        model.train_on_batch(x, y)
        first_s = time.perf_counter() - start
        timing = timed(config, lambda m=model, x=x, y=y: m.train_on_batch(x, y),
                        max(0, config.warmup - 1))
        rows.append({
            "preset": preset, "batch": batch, "jit_compile": str(model.jit_compile),
            "seconds_per_step": timing["median_s"],
            "examples_per_second": batch / timing["median_s"],
            "first_step_s": first_s,
        })
        log(f"  training {preset} b{batch}: {batch / timing['median_s']:.2f} examples/s")
        del model
        keras.backend.clear_session()
    return rows
