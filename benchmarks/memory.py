"""Peak resident memory of inference, one child process per setting."""

from __future__ import annotations

import resource

import tensorflow as tf

from keras_deconvnet.benchmarks.config import SuiteConfig
from keras_deconvnet.benchmarks.forward import build_model, random_images
from keras_deconvnet.benchmarks.machine import run_child


def peak_rss_mb() -> float:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def memory_child(payload: dict) -> dict:
    """In a subprocess: peak RSS after building the model and after inference."""
    model = build_model(payload["preset"], payload["image_size"])
    fn = tf.function(lambda t: model(t, training=False))
    x = tf.constant(random_images(payload["batch"], payload["image_size"]))
    built = peak_rss_mb()
    for _ in range(2):
        fn(x).numpy()
    return {"after_build_mb": built, "peak_mb": peak_rss_mb(),
            "ru_maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def bench_memory(config: SuiteConfig, log=print) -> list:
    """Peak resident memory of float32 inference, one fresh process per setting."""
    rows = []
    for preset in config.presets:
        for batch in config.memory_batches:
            result = run_child("memory.memory_child", {
                "preset": preset, "batch": batch, "image_size": config.image_size})
            rows.append({"preset": preset, "batch": batch, **result})
            log(f"  memory {preset} b{batch}: peak {result['peak_mb']:.0f} MB")
    return rows
