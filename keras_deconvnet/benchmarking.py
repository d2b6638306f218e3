"""The benchmark suite behind `deconvnet benchmark` and `python -m benchmarks.suite`.

One entry point, `run_suite(config)`, times every section below and returns a
JSON-serialisable dict; `format_report(results)` turns it into text tables that end in
the four verdicts the project tracks. Every figure is a median over `repeats` runs
after `warmup` runs, measured in this process except where a fresh process is the
point (peak memory) or keeps libraries apart (PyTorch).

Sections (`SECTIONS`):

- `matmul`: float32 matmul rate (TensorFlow and numpy), the yardstick of `forward`.
- `forward`: `DeconvNet` presets at 224x224 and several batch sizes, through a
  `tf.function` with and without XLA (`jit_compile`), Keras's `predict_on_batch`,
  float32 and (where the CPU has bfloat16 instructions) `mixed_bfloat16`:
  images/s, GFLOP/s from the layers' MACs, fraction of the matmul rate.
- `layers`: `MaxPoolWithArgmax` + `Unpool` vs `tf.nn.max_pool_with_argmax` +
  `tf.scatter_nd` on the paper's feature-map sizes, forward and forward+backward.
- `training`: one optimiser step (`compile_for_training`, `train_on_batch`) per
  preset, and the stage-1/stage-2 tf.data crop pipelines next to it.
- `torch`: the same layer list in PyTorch (eager, same threads), in a subprocess;
  skipped with a note when `torch` is not installed (the `bench` extra).
- `exported`: TFLite float32/float16/int8 (LiteRT interpreter, XNNPACK) and ONNX
  Runtime vs the same Keras function, per image.
- `memory`: peak resident memory of inference, one subprocess per setting.
- `profile`: where the forward pass spends its time, by op type and layer kind
  (from a TensorFlow profiler trace).
"""

from __future__ import annotations

import dataclasses
import glob
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

SECTIONS = ("matmul", "forward", "layers", "training", "torch", "exported", "memory", "profile")
PAPER = "deconvnet_vgg16_voc"
EDGE = "deconvnet_edge"
# The paper's pooled feature maps (input of each MaxPoolWithArgmax) at 224x224.
PAPER_FEATURE_MAPS = ((224, 224, 64), (112, 112, 128), (56, 56, 256), (28, 28, 512),
                      (14, 14, 512))
TARGETS = {
    "paper_forward_fraction_of_matmul": 0.70,
    "layers_vs_reference": 0.5,
    "speedup_vs_torch": 1.3,
    "tflite_int8_speedup": 2.5,
}


@dataclasses.dataclass
class SuiteConfig:
    """What the suite measures; `SuiteConfig.quick()` is the CI-sized version.

    Args:
        sections: which of `SECTIONS` to run.
        presets: `DeconvNet` presets for `forward`, `training`, `torch` and `memory`.
        batches: batch sizes of `forward` and `torch`.
        image_size: square input size of every model.
        dtypes: `"float32"` and/or `"mixed_bfloat16"` (skipped without CPU support).
        modes: `"function"` (tf.function), `"xla"` (tf.function with
            `jit_compile=True`) and/or `"predict_on_batch"`.
        other_mode_batches: the batch sizes at which modes other than
            `"function"` are timed (`None`: all of `batches`); keeps the full run
            under 10 minutes (XLA compiles per batch size).
        feature_maps: `(height, width, channels)` inputs of the `layers` section.
        layer_batches: batch sizes of the `layers` section.
        train_batch: batch size of a training step.
        pipeline_examples: synthetic images per pass of the data pipelines.
        exported_preset: the preset exported to TFLite and ONNX.
        quantizations: TFLite files to time.
        onnx: also time ONNX Runtime.
        memory_batches: batch sizes of the `memory` section.
        profile_preset, profile_batch: the forward pass that `profile` traces.
        warmup: untimed runs before timing (a `tf.function`'s tracing call counts).
        repeats: the least number of timed runs; the median is reported.
        seconds_per_figure: more timed runs are made (up to `max_repeats`) until
            this much time is spent on one figure, so fast figures get more runs.
        max_repeats: the most timed runs of one figure.
        matmul_size: the square float32 matmul that is the yardstick.
        threads: threads for PyTorch, LiteRT and ONNX Runtime (TensorFlow uses
            all cores by default); `None`: the machine's core count.
        quick: marks a CI-sized run (reduced settings; speed verdicts are indicative).
    """

    sections: tuple = SECTIONS
    presets: tuple = (PAPER, EDGE)
    batches: tuple = (1, 4, 8)
    image_size: int = 224
    dtypes: tuple = ("float32", "mixed_bfloat16")
    modes: tuple = ("function", "xla", "predict_on_batch")
    other_mode_batches: tuple | None = (1, 4)
    feature_maps: tuple = PAPER_FEATURE_MAPS
    layer_batches: tuple = (1, 4)
    train_batch: int = 4
    pipeline_examples: int = 64
    exported_preset: str = EDGE
    quantizations: tuple = ("float32", "float16", "int8")
    onnx: bool = True
    memory_batches: tuple = (1, 8)
    profile_preset: str = PAPER
    profile_batch: int = 4
    warmup: int = 1
    repeats: int = 3
    seconds_per_figure: float = 2.0
    max_repeats: int = 20
    matmul_size: int = 2048
    threads: int | None = None
    quick: bool = False

    @classmethod
    def quick_config(cls) -> SuiteConfig:
        """Every section at CI size: the edge preset, few settings, 3 repeats."""
        return cls(
            presets=(EDGE,), batches=(1,), modes=("function", "xla"),
            feature_maps=((56, 56, 64), (28, 28, 128)), layer_batches=(1,),
            train_batch=2, pipeline_examples=16, quantizations=("float32", "int8"),
            memory_batches=(1,), profile_preset=EDGE, profile_batch=1, repeats=3,
            seconds_per_figure=0.3, max_repeats=10, quick=True,
        )

    def thread_count(self) -> int:
        return int(self.threads or os.cpu_count() or 1)


# --------------------------------------------------------------------------- helpers


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


def _timed(config: SuiteConfig, fn: Callable[[], Any], warmup: int | None = None) -> dict:
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


def _cpu_model() -> str:
    """The CPU as the benchmark reports it: its model name, the family/model numbers
    where the name is generic (virtual machines often say just "AMD EPYC"), and its
    int8 dot-product features, which decide how fast the int8 file runs.

    Example:

    >>> isinstance(_cpu_model(), str) and len(_cpu_model()) > 0
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


def _version(module: str) -> str | None:
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
        "cpu": _cpu_model(),
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
        "torch": _version("torch"),
        "onnxruntime": _version("onnxruntime"),
        "ai_edge_litert": _version("ai-edge-litert"),
        "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


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


def _images(batch: int, size: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(batch, size, size, 3)).astype("float32")


# ---------------------------------------------------------------------------- matmul


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


# --------------------------------------------------------------------------- forward


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
                    x = _images(batch, config.image_size)
                    run = _forward_runner(model, mode, x)
                    start = time.perf_counter()
                    run()  # trace / compile: the first warm-up run
                    first_s = time.perf_counter() - start
                    timing = _timed(config, run, max(0, config.warmup - 1))
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


# ---------------------------------------------------------------------------- layers


def _reference_pool_unpool(x: tf.Tensor) -> tf.Tensor:
    """`tf.nn.max_pool_with_argmax` + `tf.scatter_nd`: the classic argmax unpooling."""
    pooled, argmax = tf.nn.max_pool_with_argmax(
        x, 2, 2, "SAME", include_batch_in_index=True
    )
    flat = tf.scatter_nd(
        tf.reshape(argmax, (-1, 1)), tf.reshape(pooled, (-1,)),
        tf.cast(tf.reshape(tf.size(x), (1,)), tf.int64),
    )
    return tf.reshape(flat, tf.shape(x))


def _ours_pool_unpool() -> Callable[[tf.Tensor], tf.Tensor]:
    from keras_deconvnet.layers import MaxPoolWithArgmax, Unpool

    pool, unpool = MaxPoolWithArgmax(), Unpool()

    def fn(x):
        pooled, switches = pool(x)
        return unpool(pooled, switches)

    return fn


def _forward_backward(fn: Callable) -> Callable:
    # Returns the forward output too, as a training step uses it downstream: otherwise
    # graph pruning drops the reference's scatter (its gradient is a gather that needs
    # only the indices) and the comparison would time half of the reference.
    def step(x, dy):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = fn(x)
        return y, tape.gradient(y, x, output_gradients=dy)

    return step


def bench_layers(config: SuiteConfig, log=print) -> list:
    """Pool+unpool rows: ours vs the argmax+scatter reference, forward and backward."""
    rows = []
    ours = _ours_pool_unpool()
    impls = {
        "ours": ours,
        "reference": _reference_pool_unpool,
    }
    for batch in config.layer_batches:
        for h, w, c in config.feature_maps:
            x = tf.constant(np.random.default_rng(1).normal(size=(batch, h, w, c)),
                            tf.float32)
            dy = tf.constant(np.random.default_rng(2).normal(size=(batch, h, w, c)),
                             tf.float32)
            row = {"batch": batch, "shape": [h, w, c]}
            for name, fn in impls.items():
                forward = tf.function(fn)
                both = tf.function(_forward_backward(fn))
                row[f"{name}_forward_s"] = _timed(
                    config, lambda f=forward, x=x: f(x).numpy(), config.warmup + 1
                )["median_s"]
                row[f"{name}_forward_backward_s"] = _timed(
                    config, lambda f=both, x=x, dy=dy: [t.numpy() for t in f(x, dy)],
                    config.warmup + 1,
                )["median_s"]
            # The same layers compiled by XLA, which fuses their elementwise ops.
            xla = tf.function(_forward_backward(ours), jit_compile=True)
            row["ours_xla_forward_backward_s"] = _timed(
                config, lambda f=xla, x=x, dy=dy: [t.numpy() for t in f(x, dy)],
                config.warmup + 1,
            )["median_s"]
            row["forward_ratio"] = row["ours_forward_s"] / row["reference_forward_s"]
            row["forward_backward_ratio"] = (
                row["ours_forward_backward_s"] / row["reference_forward_backward_s"]
            )
            rows.append(row)
            log(f"  layers b{batch} {h}x{w}x{c}: fwd+bwd ours "
                f"{row['ours_forward_backward_s'] * 1e3:.2f} ms vs reference "
                f"{row['reference_forward_backward_s'] * 1e3:.2f} ms")
    return rows


# -------------------------------------------------------------------------- training


def bench_training(config: SuiteConfig, log=print) -> list:
    """One SGD step (the paper's optimiser and loss) per preset: examples/s."""
    from keras_deconvnet.training import TrainingConfig, compile_for_training

    rows = []
    for preset in config.presets:
        model = build_model(preset, config.image_size)
        train_config = TrainingConfig(tensorboard=False)
        compile_for_training(model, train_config, train_config.stage1)
        batch = config.train_batch
        x = _images(batch, config.image_size)
        y = np.random.default_rng(3).integers(
            0, model.output_shape[-1], size=(batch, config.image_size, config.image_size)
        ).astype("int32")
        start = time.perf_counter()
        model.train_on_batch(x, y)
        first_s = time.perf_counter() - start
        timing = _timed(config, lambda m=model, x=x, y=y: m.train_on_batch(x, y),
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


def pipeline_dataset(stage: int, crop_size: int, examples: int,
                     image_size: int = 128, batch: int = 32) -> tf.data.Dataset:
    """The stage-1 (object crops) or stage-2 (proposal crops) pipeline on synthetic data."""
    from keras_deconvnet.data import (
        SlidingWindowProposals,
        stage1_crops,
        stage2_crops,
        synthetic_dataset,
    )

    source = synthetic_dataset("train", examples, (image_size, image_size), seed=0)
    resize_size = round(crop_size * 250 / 224)
    if stage == 1:
        crops = stage1_crops(source, crop_size, resize_size, seed=0)
    else:
        crops = stage2_crops(source, SlidingWindowProposals(), max_per_image=8,
                             crop_size=crop_size, resize_size=resize_size, seed=0)
    return crops.batch(batch).prefetch(tf.data.AUTOTUNE)


def crops_per_second(dataset: tf.data.Dataset, repeats: int) -> tuple[int, float]:
    """Crops per pass and the median crops/s over `repeats` passes after a warm-up."""
    def one_pass():
        start = time.perf_counter()
        count = sum(int(images.shape[0]) for images, _ in dataset)
        return count, time.perf_counter() - start

    one_pass()  # warm-up: tracing, thread pools
    runs = [one_pass() for _ in range(max(1, repeats))]
    return runs[0][0], statistics.median(count / seconds for count, seconds in runs)


def bench_pipeline(config: SuiteConfig, log=print) -> list:
    rows = []
    for stage in (1, 2):
        dataset = pipeline_dataset(stage, config.image_size, config.pipeline_examples)
        count, rate = crops_per_second(dataset, min(config.repeats, 3))
        rows.append({"stage": stage, "crop_size": config.image_size,
                     "examples_per_pass": config.pipeline_examples,
                     "crops_per_pass": count, "crops_per_second": rate})
        log(f"  pipeline stage {stage}: {rate:.1f} crops/s")
    return rows


# ----------------------------------------------------------------------------- torch


def torch_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("torch") is not None


def _run_child(function: str, payload: dict, timeout: float = 900) -> dict:
    """Runs `keras_deconvnet.benchmarking.<function>(payload)` in a fresh interpreter."""
    code = ("import json, sys; from keras_deconvnet import benchmarking as b; "
            f"print('@@RESULT@@' + json.dumps(b.{function}(json.loads(sys.argv[1]))))")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    done = subprocess.run([sys.executable, "-c", code, json.dumps(payload)],
                          capture_output=True, text=True, timeout=timeout, env=env)
    for line in done.stdout.splitlines():
        if line.startswith("@@RESULT@@"):
            return json.loads(line[len("@@RESULT@@"):])
    raise RuntimeError(f"{function} failed (exit {done.returncode}): "
                       f"{done.stderr.strip()[-2000:]}")


def torch_child(payload: dict) -> dict:
    """In a subprocess: the DeconvNet layer list in PyTorch eager, timed per batch."""
    import torch
    from torch import nn

    from keras_deconvnet.models import deconvnet_presets

    torch.set_num_threads(payload["threads"])
    cfg = deconvnet_presets.preset_config(payload["preset"])

    def conv(cin, cout, k, pad):
        return [nn.Conv2d(cin, cout, k, padding=pad), nn.BatchNorm2d(cout),
                nn.ReLU(inplace=True)]

    class TorchDeconvNet(nn.Module):
        def __init__(self):
            super().__init__()
            filters, depths = cfg["block_filters"], cfg["block_depths"]
            fc, k = cfg["fc_units"], cfg["fc_kernel_size"]
            self.encoder = nn.ModuleList()
            cin = 3
            for f, d in zip(filters, depths):
                layers = []
                for _ in range(d):
                    layers += conv(cin, f, 3, 1)
                    cin = f
                self.encoder.append(nn.Sequential(*layers))
            self.pool = nn.MaxPool2d(2, 2, return_indices=True, ceil_mode=True)
            self.fc = nn.Sequential(
                *conv(cin, fc, k, 0), *conv(fc, fc, 1, 0),
                nn.ConvTranspose2d(fc, filters[-1], k), nn.BatchNorm2d(filters[-1]),
                nn.ReLU(inplace=True))
            self.unpool = nn.MaxUnpool2d(2, 2)
            self.decoder = nn.ModuleList()
            for block in range(len(filters), 0, -1):
                width = filters[block - 1]
                below = filters[block - 2] if block > 1 else width
                widths = [width] * (depths[block - 1] - 1) + [below]
                layers, c = [], width
                for out in widths:
                    layers += conv(c, out, 3, 1)
                    c = out
                self.decoder.append(nn.Sequential(*layers))
            self.score = nn.Conv2d(filters[0], cfg["num_classes"], 1)

        def forward(self, x):
            switches = []
            for block in self.encoder:
                x = block(x)
                size = x.shape[-2:]
                x, idx = self.pool(x)
                switches.append((idx, size))
            x = self.fc(x)
            for block, (idx, size) in zip(self.decoder, reversed(switches)):
                x = self.unpool(x, idx, output_size=size)
                x = block(x)
            return self.score(x)

    model = TorchDeconvNet().eval()
    size = payload["image_size"]
    rows = []
    with torch.inference_mode():
        for batch in payload["batches"]:
            x = torch.randn(batch, 3, size, size)
            timing = time_runs(lambda x=x: model(x), payload["warmup"] + 1,
                               payload["repeats"], payload["seconds_per_figure"],
                               payload["max_repeats"])
            rows.append({"preset": payload["preset"], "batch": batch,
                         "seconds_per_batch": timing["median_s"],
                         "seconds_per_image": timing["median_s"] / batch})
    return {"torch": torch.__version__, "threads": torch.get_num_threads(), "rows": rows}


def bench_torch(config: SuiteConfig, log=print) -> dict:
    """PyTorch rows (one subprocess per preset), or a note when torch is absent."""
    if not torch_available():
        return {"skipped": "torch is not installed (pip install 'keras-deconvnet[bench]')",
                "rows": []}
    rows, version = [], None
    for preset in config.presets:
        result = _run_child("torch_child", {
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


# -------------------------------------------------------------------------- exported


def _litert_runner(content: bytes, threads: int) -> Callable[[np.ndarray], np.ndarray]:
    """Times what a client does per image: quantize the pixels for an integer input
    (the int8 file takes uint8 pixels as they are), invoke, dequantize the output."""
    from ai_edge_litert.interpreter import Interpreter

    from keras_deconvnet.export.parity import dequantize, quantize

    interpreter = Interpreter(model_content=content, num_threads=threads)
    interpreter.allocate_tensors()
    source = interpreter.get_input_details()[0]
    target = interpreter.get_output_details()[0]

    def run(images):
        interpreter.set_tensor(source["index"], quantize(images, source))
        interpreter.invoke()
        return dequantize(interpreter.get_tensor(target["index"]), target)

    return run


def bench_exported(config: SuiteConfig, log=print) -> dict:
    """Per-image latency at batch 1: Keras float32 vs TFLite files vs ONNX Runtime.

    Every runtime computes the same function: RGB [0, 255] images -> preprocessing ->
    model -> softmax (the exports' contract). The int8 file is the one `deconvnet
    export` writes (uint8 pixels in, integer-only ops); each TFLite row records its
    fraction of integer-only ops.
    """
    from keras_deconvnet.export.common import inference_function
    from keras_deconvnet.export.tflite import convert_to_tflite, integer_op_fraction

    threads = config.thread_count()
    model = build_model(config.exported_preset, config.image_size)
    size = config.image_size
    # Whole pixel values: what a camera frame holds, and what a uint8 input takes.
    image = np.random.default_rng(4).integers(0, 256, (1, size, size, 3)).astype("float32")
    calibration = np.random.default_rng(5).uniform(0, 255, (8, size, size, 3)).astype(
        "float32")
    rows = []

    def add(runtime, variant, run, extra=None):
        timing = _timed(config, lambda: run(image), config.warmup + 1)
        row = {"runtime": runtime, "variant": variant, "batch": 1,
               "seconds_per_image": timing["median_s"], **(extra or {})}
        rows.append(row)
        log(f"  exported {runtime} {variant}: {timing['median_s'] * 1e3:.1f} ms/image")

    probabilities = inference_function(model)
    for mode, jit in (("function", False), ("xla", True)):
        fn = tf.function(probabilities, jit_compile=jit)
        add("keras", f"float32 {mode}", lambda images, fn=fn: fn(images).numpy())
    for quantization in config.quantizations:
        start = time.perf_counter()
        content = convert_to_tflite(
            model, quantization, representative_data=calibration,
            representative_samples=len(calibration),
        )
        convert_s = time.perf_counter() - start
        add("litert", quantization, _litert_runner(content, threads),
            {"size_mb": len(content) / 1e6, "convert_s": convert_s, "threads": threads,
             "integer_ops": integer_op_fraction(content)})
    if config.onnx:
        from keras_deconvnet.export.onnx import export_onnx, onnx_session

        directory = tempfile.mkdtemp(prefix="deconvnet-bench-")
        try:
            start = time.perf_counter()
            path = export_onnx(model, os.path.join(directory, "model.onnx"), check=False)
            convert_s = time.perf_counter() - start
            session = onnx_session(path, threads)
            name = session.get_inputs()[0].name
            add("onnxruntime", "float32",
                lambda images: session.run(None, {name: images})[0],
                {"size_mb": os.path.getsize(path) / 1e6, "convert_s": convert_s,
                 "threads": threads})
        finally:
            shutil.rmtree(directory, ignore_errors=True)
    keras_best = min(r["seconds_per_image"] for r in rows if r["runtime"] == "keras")
    for row in rows:
        row["speedup_vs_keras_float32"] = keras_best / row["seconds_per_image"]
    del model
    keras.backend.clear_session()
    return {"preset": config.exported_preset, "threads": threads, "cpu": _cpu_model(),
            "rows": rows}


# ---------------------------------------------------------------------------- memory


def _peak_rss_mb() -> float:
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
    x = tf.constant(_images(payload["batch"], payload["image_size"]))
    built = _peak_rss_mb()
    for _ in range(2):
        fn(x).numpy()
    return {"after_build_mb": built, "peak_mb": _peak_rss_mb(),
            "ru_maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def bench_memory(config: SuiteConfig, log=print) -> list:
    """Peak resident memory of float32 inference, one fresh process per setting."""
    rows = []
    for preset in config.presets:
        for batch in config.memory_batches:
            result = _run_child("memory_child", {
                "preset": preset, "batch": batch, "image_size": config.image_size})
            rows.append({"preset": preset, "batch": batch, **result})
            log(f"  memory {preset} b{batch}: peak {result['peak_mb']:.0f} MB")
    return rows


# --------------------------------------------------------------------------- profile


def _layer_kinds(model: keras.Model) -> dict:
    from keras_deconvnet.layers import MaxPoolWithArgmax, Unpool

    kinds = {}
    for layer in model.layers:
        if isinstance(layer, keras.Model):  # the backbone inside a segmenter
            kinds.update(_layer_kinds(layer))
            continue
        name = layer.name
        if isinstance(layer, MaxPoolWithArgmax):
            kinds[name] = "pooling (MaxPoolWithArgmax)"
        elif isinstance(layer, Unpool):
            kinds[name] = "unpooling (Unpool)"
        elif isinstance(layer, keras.layers.BatchNormalization):
            kinds[name] = "batchnorm"
        elif isinstance(layer, keras.layers.ReLU):
            kinds[name] = "relu"
        elif isinstance(layer, keras.layers.Conv2DTranspose):
            kinds[name] = "fc (fc6/fc7/deconv_fc6)"
        elif isinstance(layer, keras.layers.Conv2D):
            fc = name.startswith("fc") or layer.kernel_size != (3, 3)
            kinds[name] = "fc (fc6/fc7/deconv_fc6)" if fc and name != "score" else "conv 3x3"
            if name == "score":
                kinds[name] = "score 1x1"
        else:
            kinds[name] = "other"
    return kinds


def _layer_of(op_name: str, op_type: str, kinds: dict) -> str | None:
    """The Keras layer an op belongs to (fused convolutions: the convolution layer)."""
    for part in op_name.split("/"):
        base, _, suffix = part.rpartition("_")
        candidates = [part, base] if suffix.isdigit() else [part]
        for name in candidates:
            if name in kinds:
                if "Conv" in op_type or "MatMul" in op_type:
                    # oneDNN fuses Conv2D+BatchNorm+ReLU and names the fused op after
                    # its last node (..._bn or ..._relu): charge it to the convolution.
                    for tail in ("_relu", "_bn"):
                        if name.endswith(tail) and name[: -len(tail)] in kinds:
                            return name[: -len(tail)]
                return name
    return None


def _variant_calls(variant: str) -> tuple[Callable, Callable]:
    """`(pool_call, unpool_call)` replacing the layers' `call` for an ablation variant.

    - `ours`: the layers as they are.
    - `ours_xla_layers`: each layer's `call` compiled by XLA on its own (the convolutions
      stay on oneDNN), which fuses the switch arithmetic into one loop.
    - `reference`: `tf.nn.max_pool_with_argmax` + `tf.scatter_nd` (the argmax indices
      travel as the "switches"; even sizes only).
    - `no_switches`: plain max pooling and nearest-neighbour enlargement, no mask: the
      lower bound of any exact unpooling.
    """
    from keras_deconvnet.layers import MaxPoolWithArgmax, Unpool

    pool_call, unpool_call = MaxPoolWithArgmax.call, Unpool.call
    if variant == "ours":
        return pool_call, unpool_call
    if variant == "ours_xla_layers":
        def xla_pool(self, inputs):
            if not hasattr(self, "_bench_xla"):
                self._bench_xla = tf.function(
                    lambda t: pool_call(self, t), jit_compile=True, autograph=False)
            return self._bench_xla(inputs)

        def xla_unpool(self, inputs, switches):
            if not hasattr(self, "_bench_xla"):
                self._bench_xla = tf.function(
                    lambda t, m: unpool_call(self, t, m), jit_compile=True, autograph=False)
            return self._bench_xla(inputs, switches)

        return xla_pool, xla_unpool
    if variant == "reference":
        def ref_pool(self, inputs):
            return list(tf.nn.max_pool_with_argmax(
                inputs, 2, 2, "SAME", include_batch_in_index=True))

        def ref_unpool(self, inputs, switches):
            shape = tf.shape(inputs) * tf.constant([1, 2, 2, 1])
            flat = tf.scatter_nd(tf.reshape(switches, (-1, 1)), tf.reshape(inputs, (-1,)),
                                 tf.cast(tf.reshape(tf.reduce_prod(shape), (1,)), tf.int64))
            return tf.reshape(flat, shape)

        return ref_pool, ref_unpool
    if variant == "no_switches":
        def plain_pool(self, inputs):
            return [tf.nn.max_pool2d(inputs, 2, 2, "SAME"), inputs]

        def plain_unpool(self, inputs, switches):
            return tf.nn.depth_to_space(tf.concat([inputs] * 4, axis=-1), 2)

        return plain_pool, plain_unpool
    raise ValueError(f"Unknown variant {variant!r}")


ABLATION_VARIANTS = ("ours", "ours_xla_layers", "reference", "no_switches")


def profile_child(payload: dict) -> dict:
    """In a subprocess (one op at a time, so op times add up): trace + ablation."""
    tf.config.threading.set_inter_op_parallelism_threads(1)
    from keras_deconvnet.private_apis import xplane_pb2

    xplane_pb2 = xplane_pb2()

    from keras_deconvnet.layers import MaxPoolWithArgmax, Unpool

    preset, batch, size = payload["preset"], payload["batch"], payload["image_size"]
    x = tf.constant(_images(batch, size))
    result: dict = {"preset": preset, "batch": batch, "inter_op_threads": 1}

    # Ablation: the same network with other pooling/unpooling implementations.
    ablation = []
    original = MaxPoolWithArgmax.call, Unpool.call
    for variant in payload["variants"]:
        MaxPoolWithArgmax.call, Unpool.call = _variant_calls(variant)
        try:
            model = build_model(preset, size)
            fn = tf.function(lambda t, m=model: m(t, training=False))
            fn(x).numpy()
            timing = time_runs(lambda f=fn: f(x).numpy(), payload["warmup"],
                               payload["repeats"], payload["seconds_per_figure"],
                               payload["max_repeats"])
        finally:
            MaxPoolWithArgmax.call, Unpool.call = original
        ablation.append({"variant": variant, "seconds_per_batch": timing["median_s"]})
        del model, fn
        keras.backend.clear_session()
    base = next((a["seconds_per_batch"] for a in ablation if a["variant"] == "ours"), None)
    for row in ablation:
        row["vs_ours"] = row["seconds_per_batch"] / base if base else None
    result["ablation"] = ablation

    model = build_model(preset, size)
    kinds = _layer_kinds(model)
    fn = tf.function(lambda t: model(t, training=False))
    fn(x).numpy()
    fn(x).numpy()
    steps = 2
    directory = tempfile.mkdtemp(prefix="deconvnet-profile-")
    try:
        tf.profiler.experimental.start(directory)
        start = time.perf_counter()
        for _ in range(steps):
            fn(x).numpy()
        wall = (time.perf_counter() - start) / steps
        tf.profiler.experimental.stop()
        files = glob.glob(os.path.join(directory, "**", "*.xplane.pb"), recursive=True)
        space = xplane_pb2.XSpace()
        with open(files[0], "rb") as f:
            space.ParseFromString(f.read())
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    by_type: dict = defaultdict(float)
    by_kind: dict = defaultdict(float)
    by_layer: dict = defaultdict(float)
    for plane in space.planes:
        if not plane.name.startswith("/host:CPU"):
            continue
        metadata = plane.event_metadata
        for line in plane.lines:
            if not line.name.startswith("tf_Compute"):
                continue
            for event in line.events:
                name = metadata[event.metadata_id].name
                # Op events are "op_name:OpType"; executor and thread-pool events
                # ("ExecutorState::Process", ...) wrap them and are skipped.
                if ":" not in name or "::" in name:
                    continue
                op_name, op_type = name.rsplit(":", 1)
                seconds = event.duration_ps / 1e12 / steps
                layer = _layer_of(op_name, op_type, kinds)
                by_type[op_type] += seconds
                by_kind[kinds.get(layer, "other")] += seconds
                by_layer[layer or "other"] += seconds
    total = sum(by_type.values()) or 1.0

    def table(values, top=None):
        items = sorted(values.items(), key=lambda kv: -kv[1])[:top]
        return [{"name": k, "seconds": v, "share": v / total} for k, v in items]

    result.update({
        "wall_seconds_per_batch": wall, "op_seconds_per_batch": total,
        "by_kind": table(by_kind), "by_op_type": table(by_type, 15),
        "by_layer": table(by_layer, 15),
    })
    return result


def bench_profile(config: SuiteConfig, log=print) -> dict:
    """Where the forward pass spends its time (by layer kind and op type), and what
    the network costs with other pooling/unpooling implementations (ablation).

    Runs in a subprocess with one inter-op thread, so ops do not overlap and their
    profiled durations add up to the step (this does not change the speed measurably
    on 2 cores).
    """
    result = _run_child("profile_child", {
        "preset": config.profile_preset, "batch": config.profile_batch,
        "image_size": config.image_size, "variants": list(ABLATION_VARIANTS),
        # The ablation is a comparison within one process: `repeats` runs each.
        "warmup": config.warmup, "repeats": config.repeats, "seconds_per_figure": 0.0,
        "max_repeats": config.repeats,
    })
    for row in result["ablation"]:
        log(f"  ablation {row['variant']}: {row['seconds_per_batch'] * 1e3:.1f} ms/batch")
    for row in result["by_kind"]:
        log(f"  profile {row['name']}: {row['share']:.1%}")
    return result


# -------------------------------------------------------------------------- verdicts


def _verdict(name, value, target, higher_is_better, detail, unit="x") -> dict:
    met = None if value is None else (value >= target if higher_is_better else value <= target)
    return {"name": name, "value": value, "target": target,
            "comparison": ">=" if higher_is_better else "<=", "unit": unit,
            "met": met, "detail": detail}


def compute_verdicts(results: dict) -> list:
    """The four tracked targets from one run's results (`None` where not measured)."""
    verdicts = []
    forward = [r for r in results.get("forward", []) if r["dtype"] == "float32"]

    paper_b4 = [r for r in forward if r["preset"] == PAPER and r["batch"] == 4]
    best = min(paper_b4, key=lambda r: r["seconds_per_batch"], default=None)
    verdicts.append(_verdict(
        "paper forward, batch 4, fraction of float32 matmul",
        best and best["fraction_of_matmul"], TARGETS["paper_forward_fraction_of_matmul"], True,
        best and f"{best['mode']}: {best['gflops_per_second']:.1f} GFLOP/s vs matmul "
                 f"{results.get('matmul', {}).get('peak_gflops') or 0:.1f}", unit="",
    ))

    layers = results.get("layers", [])
    if layers:
        ours = sum(r["ours_forward_backward_s"] for r in layers)
        ref = sum(r["reference_forward_backward_s"] for r in layers)
        value, detail = ours / ref, (f"sum over {len(layers)} settings: {ours * 1e3:.1f} ms vs "
                                     f"{ref * 1e3:.1f} ms")
    else:
        value, detail = None, None
    verdicts.append(_verdict("pool+unpool cost vs argmax+scatter (fwd+bwd)", value,
                             TARGETS["layers_vs_reference"], False, detail))

    torch_rows = results.get("torch", {}).get("rows", [])
    value = detail = None
    for preset in (PAPER, EDGE):
        t = [r for r in torch_rows if r["preset"] == preset and r["batch"] == 1]
        k = [r for r in forward if r["preset"] == preset and r["batch"] == 1]
        if t and k:
            kbest = min(k, key=lambda r: r["seconds_per_image"])
            value = t[0]["seconds_per_image"] / kbest["seconds_per_image"]
            detail = (f"{preset}: Keras {kbest['mode']} {kbest['seconds_per_image'] * 1e3:.1f} "
                      f"ms vs torch {t[0]['seconds_per_image'] * 1e3:.1f} ms per image")
            break
    if not torch_rows:
        detail = results.get("torch", {}).get("skipped", "not measured")
    verdicts.append(_verdict("speed vs PyTorch at batch 1", value,
                             TARGETS["speedup_vs_torch"], True, detail))

    exported = results.get("exported", {}).get("rows", [])
    int8 = [r for r in exported if r["runtime"] == "litert" and r["variant"] == "int8"]
    keras_rows = [r for r in exported if r["runtime"] == "keras"]
    value = detail = None
    if int8 and keras_rows:
        kbest = min(keras_rows, key=lambda r: r["seconds_per_image"])
        value = kbest["seconds_per_image"] / int8[0]["seconds_per_image"]
        cpu = results["exported"].get("cpu") or results.get("machine", {}).get("cpu")
        detail = (f"{results['exported']['preset']}: Keras {kbest['variant']} "
                  f"{kbest['seconds_per_image'] * 1e3:.1f} ms vs TFLite int8 "
                  f"{int8[0]['seconds_per_image'] * 1e3:.1f} ms on {cpu}")
    verdicts.append(_verdict("edge TFLite int8 vs Keras float32 at batch 1", value,
                             TARGETS["tflite_int8_speedup"], True, detail))
    return verdicts


# ------------------------------------------------------------------------ the suite


def run_suite(config: SuiteConfig, log: Callable[[str], None] = print) -> dict:
    """Runs the configured sections; returns everything as a JSON-serialisable dict."""
    unknown = set(config.sections) - set(SECTIONS)
    if unknown:
        raise ValueError(f"Unknown sections {sorted(unknown)}; choose from {SECTIONS}.")
    started = time.perf_counter()
    results: dict = {"machine": machine_info(), "config": dataclasses.asdict(config),
                     "section_seconds": {}}

    def section(name, fn):
        if name not in config.sections:
            return
        log(f"[{name}]")
        start = time.perf_counter()
        results[name] = fn()
        results["section_seconds"][name] = time.perf_counter() - start

    # The matmul yardstick, measured again after the forward pass: the higher rate is
    # the reference (a conservative denominator when other work shares the machine).
    section("matmul", lambda: bench_matmul(config))
    matmul = results.get("matmul", {}).get("peak_gflops")
    section("forward", lambda: bench_forward(config, matmul, log))
    if "matmul" in results and "forward" in results:
        again = bench_matmul(config)
        mm = results["matmul"]
        mm["repeated_after_forward"] = again
        if again["peak_gflops"] > mm["peak_gflops"]:
            mm["peak_gflops"] = again["peak_gflops"]
            for row in results["forward"]:
                row["fraction_of_matmul"] = row["gflops_per_second"] / mm["peak_gflops"]
        log(f"  matmul reference: {mm['peak_gflops']:.1f} GFLOP/s")
    section("layers", lambda: bench_layers(config, log))
    if "training" in config.sections:
        section("training", lambda: bench_training(config, log))
        results["pipeline"] = bench_pipeline(config, log)
    section("torch", lambda: bench_torch(config, log))
    section("exported", lambda: bench_exported(config, log))
    section("memory", lambda: bench_memory(config, log))
    section("profile", lambda: bench_profile(config, log))
    results["verdicts"] = compute_verdicts(results)
    results["total_seconds"] = time.perf_counter() - started
    return results


# ----------------------------------------------------------------------- formatting


def _table(headers: Sequence[str], rows: Sequence[Sequence]) -> str:
    cells = [[str(c) for c in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    lines = ["  ".join(h.rjust(w) for h, w in zip(headers, widths)),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(c.rjust(w) for c, w in zip(row, widths)) for row in cells]
    return "\n".join(lines)


def _f(value, spec=".1f") -> str:
    return "-" if value is None else format(value, spec)


def format_report(results: dict) -> str:
    """Text tables of every measured section, then the verdicts."""
    out = []
    m = results["machine"]
    cfg = results["config"]
    out.append(f"# {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, "
               f"SIMD {','.join(m['simd']) or '-'}; TF {m['tensorflow']}, "
               f"Keras {m['keras']}, torch {m['torch'] or '-'}; load {m['load_average']}")
    out.append(f"# each figure: median of {cfg['repeats']}-{cfg['max_repeats']} timed runs "
               f"(~{cfg['seconds_per_figure']} s) after {cfg['warmup']} warm-up"
               f"{' (QUICK: CI-sized settings, not for speed claims)' if cfg['quick'] else ''}")
    if "matmul" in results:
        mm = results["matmul"]
        again = mm.get("repeated_after_forward")
        out.append(f"\n## float32 matmul {mm['size']}^3: TF {mm['tensorflow_gflops']:.1f}, "
                   f"numpy {mm['numpy_gflops']:.1f} GFLOP/s"
                   + (f"; after the forward pass TF {again['tensorflow_gflops']:.1f}, numpy "
                      f"{again['numpy_gflops']:.1f}" if again else "")
                   + f" (reference: the highest, {mm['peak_gflops']:.1f})")
    if results.get("forward"):
        out.append("\n## Forward pass (224x224 unless configured)")
        out.append(_table(
            ["preset", "dtype", "mode", "batch", "ms/image", "img/s", "GFLOP/s", "of matmul"],
            [[r["preset"], r["dtype"], r["mode"], r["batch"],
              _f(r["seconds_per_image"] * 1e3), _f(r["images_per_second"], ".2f"),
              _f(r["gflops_per_second"]), _f(r["fraction_of_matmul"], ".0%")]
             for r in results["forward"]]))
    if results.get("layers"):
        out.append("\n## MaxPoolWithArgmax+Unpool (ours) vs max_pool_with_argmax+scatter_nd "
                   "(ref), ms")
        out.append(_table(
            ["batch", "input", "ours fwd", "ref fwd", "ours f+b", "ref f+b",
             "ours f+b xla", "f+b ratio"],
            [[r["batch"], "x".join(map(str, r["shape"])), _f(r["ours_forward_s"] * 1e3, ".2f"),
              _f(r["reference_forward_s"] * 1e3, ".2f"),
              _f(r["ours_forward_backward_s"] * 1e3, ".2f"),
              _f(r["reference_forward_backward_s"] * 1e3, ".2f"),
              _f(r["ours_xla_forward_backward_s"] * 1e3, ".2f"),
              _f(r["forward_backward_ratio"], ".2f")] for r in results["layers"]]))
    if results.get("training"):
        out.append("\n## Training step (SGD, cross-entropy, MeanIoU)")
        out.append(_table(["preset", "batch", "jit", "s/step", "examples/s"],
                          [[r["preset"], r["batch"], r["jit_compile"],
                            _f(r["seconds_per_step"], ".3f"),
                            _f(r["examples_per_second"], ".2f")]
                           for r in results["training"]]))
    if results.get("pipeline"):
        out.append("\n## tf.data crop pipelines (synthetic 128x128 sources)")
        out.append(_table(["stage", "crop", "crops/pass", "crops/s"],
                          [[r["stage"], r["crop_size"], r["crops_per_pass"],
                            _f(r["crops_per_second"])] for r in results["pipeline"]]))
    if "torch" in results:
        t = results["torch"]
        out.append(f"\n## PyTorch {t.get('torch') or ''} eager reference "
                   f"({t.get('threads', '-')} threads)")
        if t.get("skipped"):
            out.append(f"skipped: {t['skipped']}")
        else:
            best: dict = {}  # the fastest float32 Keras mode per (preset, batch)
            for r in results.get("forward", []):
                key = (r["preset"], r["batch"])
                if r["dtype"] == "float32" and (
                    key not in best or r["seconds_per_image"] < best[key]["seconds_per_image"]
                ):
                    best[key] = r
            rows = []
            for r in t["rows"]:
                k = best.get((r["preset"], r["batch"]))
                rows.append([r["preset"], r["batch"], _f(r["seconds_per_image"] * 1e3),
                             k["mode"] if k else "-",
                             _f(k and k["seconds_per_image"] * 1e3),
                             _f(k and r["seconds_per_image"] / k["seconds_per_image"], ".2f")])
            out.append(_table(["preset", "batch", "torch ms/img", "keras mode",
                               "keras ms/img", "keras speed-up"], rows))
    if results.get("exported"):
        e = results["exported"]
        cpu = e.get("cpu") or m["cpu"]
        out.append(f"\n## Exported runtimes, {e['preset']}, batch 1, {e['threads']} threads "
                   f"on {cpu} (RGB -> probabilities)")
        out.append(_table(
            ["runtime", "variant", "ms/image", "vs keras", "MB", "int ops", "convert s"],
            [[r["runtime"], r["variant"], _f(r["seconds_per_image"] * 1e3),
              _f(r["speedup_vs_keras_float32"], ".2f"), _f(r.get("size_mb")),
              _f(r.get("integer_ops") and 100 * r["integer_ops"], ".0f")
              + ("%" if r.get("integer_ops") is not None else ""),
              _f(r.get("convert_s"))] for r in e["rows"]]))
    if results.get("memory"):
        out.append("\n## Peak resident memory, float32 inference (fresh process each)")
        out.append(_table(["preset", "batch", "after build MB", "peak MB"],
                          [[r["preset"], r["batch"], _f(r["after_build_mb"], ".0f"),
                            _f(r["peak_mb"], ".0f")] for r in results["memory"]]))
    if results.get("profile"):
        p = results["profile"]
        out.append(f"\n## Profile: {p['preset']} forward, batch {p['batch']} "
                   f"({p['wall_seconds_per_batch'] * 1e3:.0f} ms wall, "
                   f"{p['op_seconds_per_batch'] * 1e3:.0f} ms op time)")
        out.append(_table(["layer kind", "ms", "share"],
                          [[r["name"], _f(r["seconds"] * 1e3), _f(r["share"], ".1%")]
                           for r in p["by_kind"]]))
        out.append("")
        out.append(_table(["top layers", "ms", "share"],
                          [[r["name"], _f(r["seconds"] * 1e3), _f(r["share"], ".1%")]
                           for r in p["by_layer"][:8]]))
        out.append("")
        out.append(_table(["op type", "ms", "share"],
                          [[r["name"], _f(r["seconds"] * 1e3), _f(r["share"], ".1%")]
                           for r in p["by_op_type"]]))
        out.append("\nSame network, other pooling/unpooling (ablation, one inter-op thread):")
        out.append(_table(["variant", "ms/batch", "vs ours"],
                          [[r["variant"], _f(r["seconds_per_batch"] * 1e3),
                            _f(r["vs_ours"], ".2f")] for r in p["ablation"]]))
    if results.get("verdicts"):
        out.append("\n## Verdicts" + (" (quick settings: indicative only)"
                                      if cfg["quick"] else ""))
        for v in results["verdicts"]:
            state = {True: "MET", False: "NOT MET", None: "NOT MEASURED"}[v["met"]]
            out.append(f"- {v['name']}: {_f(v['value'], '.2f')}{v['unit']} "
                       f"(target {v['comparison']} {v['target']}{v['unit']}): {state}"
                       + (f"  [{v['detail']}]" if v["detail"] else ""))
    out.append(f"\n# total {results['total_seconds']:.0f} s; sections: " + ", ".join(
        f"{k} {v:.0f} s" for k, v in results["section_seconds"].items()))
    return "\n".join(out)


def write_json(results: dict, path: str) -> None:
    """Writes `results` to `path` atomically (directories are created)."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    handle, partial = tempfile.mkstemp(prefix=".bench-", suffix=".json", dir=directory)
    try:
        with os.fdopen(handle, "w") as f:
            json.dump(results, f, indent=2)
        os.replace(partial, path)
    except BaseException:
        if os.path.exists(partial):
            os.remove(partial)
        raise
