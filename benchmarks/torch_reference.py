"""The `torch` section: the same layer list in PyTorch eager (`torch_deconvnet`), timed in
a child process: the reference speed."""

from __future__ import annotations

from keras_deconvnet.benchmarks.config import SuiteConfig
from keras_deconvnet.benchmarks.machine import run_child


def torch_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("torch") is not None


def bench_torch(config: SuiteConfig, log=print) -> dict:
    """PyTorch rows (one subprocess per preset), or a note when torch is absent."""
    if not torch_available():
        return {"skipped": "torch is not installed (pip install 'keras-deconvnet[bench]')",
                "rows": []}
    rows, version = [], None
    for preset in config.presets:
        result = run_child("torch_deconvnet.torch_child", {
            "preset": preset, "image_size": config.image_size,
            "batches": list(config.batches), "threads": config.thread_count(),
            "warmup": config.warmup, "repeats": config.repeats,
            "seconds_per_figure": config.seconds_per_figure,
            "max_repeats": config.max_repeats,
        })
        version = result["torch"]
        rows += result["rows"]
        for row in result["rows"]:
            log(f"  torch {preset} b{row['batch']}: "
                f"{row['seconds_per_image'] * 1e3:.1f} ms/image")
    return {"torch": version, "threads": config.thread_count(), "rows": rows}
