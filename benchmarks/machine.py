"""The machine and the yardsticks: CPU description, timing, child processes, matmul rate."""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from keras_deconvnet.benchmarks.config import SuiteConfig


def time_runs(fn: Callable[[], Any], warmup: int = 1, repeats: int = 3,
              budget_s: float = 0.0, max_repeats: int | None = None) -> dict:
    """Runs `fn` `warmup` times untimed, then timed: median/min/all seconds.

    At least `repeats` timed runs, more while less than `budget_s` seconds have been
    spent on timed runs, at most `max_repeats` (default: `repeats`).
    """
    for _ in range(warmup):
        fn()
    limit = max(repeats, max_repeats or repeats)
    runs: list[float] = []
    while len(runs) < max(1, repeats) or (sum(runs) < budget_s and len(runs) < limit):
        start = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - start)
    return {"median_s": statistics.median(runs), "min_s": min(runs), "runs_s": runs}


def timed(config: SuiteConfig, fn: Callable[[], Any], warmup: int | None = None) -> dict:
    """`time_runs` with the suite's warm-up, repeats and time budget."""
    return time_runs(fn, config.warmup if warmup is None else warmup, config.repeats,
                     config.seconds_per_figure, config.max_repeats)


def cpu_flags() -> set:
    """The CPU feature flags from /proc/cpuinfo (empty where unavailable)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def cpu_supports_bfloat16() -> bool:
    """Whether the CPU has native bfloat16 arithmetic (AVX512_BF16 or AMX)."""
    return bool(cpu_flags() & {"avx512_bf16", "amx_bf16"})


# CPU features that int8 inference uses (dot products of int8 vectors).
INT8_FEATURES = ("avx512_vnni", "avx_vnni", "amx_int8", "asimddp", "i8mm")


def cpu_model() -> str:
    """The CPU as the benchmark reports it: its model name, the family/model numbers
    where the name is generic (virtual machines often say just "AMD EPYC"), and its
    int8 dot-product features, which decide how fast the int8 file runs.

    Example:

    >>> isinstance(cpu_model(), str) and len(cpu_model()) > 0
    True
    """
    fields: dict = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip()
                if not key and fields:
                    break  # the first processor's block is enough
                fields.setdefault(key, value.strip())
    except OSError:
        pass
    name = fields.get("model name") or platform.processor() or platform.machine()
    if "cpu family" in fields and not any(c.isdigit() for c in name):
        name += f" (family {fields['cpu family']}, model {fields.get('model', '?')})"
    int8 = [flag for flag in INT8_FEATURES if flag in cpu_flags()]
    return f"{name}; int8 dot products: {', '.join(int8) if int8 else 'none'}"


def package_version(module: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(module)
    except metadata.PackageNotFoundError:
        return None


def machine_info() -> dict:
    """The machine and software the numbers come from."""
    flags = cpu_flags()
    try:
        memory_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError, AttributeError):
        memory_gib = None
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "memory_gib": round(memory_gib, 1) if memory_gib else None,
        "simd": sorted(flags & {"avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16",
                                "amx_bf16", "amx_int8", "avx_vnni"}),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "numpy": np.__version__,
        "onednn": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "default (on)"),
        "tf_intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads(),
        "tf_inter_op_threads": tf.config.threading.get_inter_op_parallelism_threads(),
        "torch": package_version("torch"),
        "onnxruntime": package_version("onnxruntime"),
        "ai_edge_litert": package_version("ai-edge-litert"),
        "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def run_child(function: str, payload: dict, timeout: float = 900) -> dict:
    """Runs `keras_deconvnet.benchmarks.<module.function>(payload)` in a fresh interpreter.

    `function` is `"module.function"`, e.g. `"memory.memory_child"`; the child prints its
    JSON result on a marked line so that library output cannot corrupt it.
    """
    module, _, name = function.rpartition(".")
    if not module:
        raise ValueError(f"`function` must be 'module.function'. Received: {function!r}")
    code = ("import json, sys, importlib; "
            f"m = importlib.import_module('keras_deconvnet.benchmarks.{module}'); "
            f"print('@@RESULT@@' + json.dumps(m.{name}(json.loads(sys.argv[1]))))")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    done = subprocess.run([sys.executable, "-c", code, json.dumps(payload)],
                          capture_output=True, text=True, timeout=timeout, env=env)
    for line in done.stdout.splitlines():
        if line.startswith("@@RESULT@@"):
            return json.loads(line[len("@@RESULT@@"):])
    raise RuntimeError(f"{function} failed (exit {done.returncode}): "
                       f"{done.stderr.strip()[-2000:]}")


def bench_matmul(config: SuiteConfig) -> dict:
    """Float32 square matmul GFLOP/s in TensorFlow and numpy; `peak` is the higher."""
    size = config.matmul_size
    rng = np.random.default_rng(0)
    a = rng.normal(size=(size, size)).astype("float32")
    b = rng.normal(size=(size, size)).astype("float32")
    flops = 2 * size**3
    ta, tb = tf.constant(a), tf.constant(b)
    matmul = tf.function(tf.linalg.matmul)
    tf_time = time_runs(lambda: matmul(ta, tb).numpy(), 2, max(config.repeats, 5),
                        config.seconds_per_figure, config.max_repeats)
    np_time = time_runs(lambda: a @ b, 2, max(config.repeats, 5),
                        config.seconds_per_figure, config.max_repeats)
    result = {
        "size": size,
        "tensorflow_gflops": flops / tf_time["median_s"] / 1e9,
        "numpy_gflops": flops / np_time["median_s"] / 1e9,
    }
    result["peak_gflops"] = max(result["tensorflow_gflops"], result["numpy_gflops"])
    return result
