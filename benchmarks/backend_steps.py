"""The forward pass and one training step of named DeconvNet configurations on the Keras
backend of this process, with the same-run matmul rate as the yardstick.

Written in Keras and NumPy only (no TensorFlow import), so it runs on TensorFlow, JAX
and PyTorch alike: the `backends` section of `deconvnet benchmark` runs it once per
installed backend in a child process (`python -m keras_deconvnet.benchmarks.backend_steps`
with `KERAS_BACKEND` set), and `benchmarks/gpu_jax.py` runs it on a GPU machine that
has JAX and no TensorFlow. Prints one JSON object.

Each figure is a median over `--repeats` timed runs after `--warmup` untimed runs
(the first call compiles). Inputs are NumPy batches of synthetic crops (already
mean-subtracted, as the preprocessor would give them) and integer masks. FLOPs are the
convolutions' (2 x multiply-adds, counted from the layer shapes); a training step is
counted as 3 forward passes.

Example:

>>> rows = run(["deconvnet_edge_small"], image_size=96, batches=[1], repeats=1,
...            warmup=1, dtypes=["float32"], matmul_size=256)
>>> sorted(rows["rows"][0])[:4]
['backend', 'batch', 'dtype', 'forward_examples_per_s']
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable, Sequence

import keras
import numpy as np

NUM_CLASSES = 21  # PASCAL VOC's, as the paper's configuration


def median_seconds(fn: Callable[[], object], warmup: int = 1, repeats: int = 3) -> dict:
    """`fn` run `warmup` times untimed, then `repeats` times: median and all seconds."""
    for _ in range(warmup):
        fn()
    runs = []
    for _ in range(max(1, repeats)):
        start = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - start)
    return {"median_s": statistics.median(runs), "runs_s": runs}


def _block(x) -> None:
    """Waits for a backend tensor (JAX and CUDA run asynchronously)."""
    keras.ops.convert_to_numpy(keras.ops.ravel(x)[:1])


def matmul_gflops(dtype: str = "float32", size: int = 2048, repeats: int = 5) -> float:
    """The rate of a square `keras.ops.matmul` in `dtype` on this backend, GFLOP/s."""
    rng = np.random.default_rng(0)
    a = keras.ops.convert_to_tensor(rng.normal(size=(size, size)).astype("float32"), dtype)
    b = keras.ops.convert_to_tensor(rng.normal(size=(size, size)).astype("float32"), dtype)
    timing = median_seconds(lambda: _block(keras.ops.matmul(a, b)), 1, repeats)
    return 2 * size**3 / timing["median_s"] / 1e9


def conv_flops(model: keras.Model) -> int:
    """FLOPs (2 x multiply-adds) of the convolutions of `model` for one image.

    Needs a fixed input size. Transposed convolutions count their input positions.
    """
    total = 0
    for layer in _leaf_layers(model):
        if not isinstance(layer, keras.layers.Conv2D | keras.layers.Conv2DTranspose):
            continue
        kernel = int(np.prod(layer.kernel_size))
        in_channels = int(layer.input.shape[-1])
        positions = layer.input.shape if isinstance(
            layer, keras.layers.Conv2DTranspose) else layer.output.shape
        total += 2 * int(np.prod(positions[1:3])) * kernel * in_channels * layer.filters
    return total


def _leaf_layers(model):
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from _leaf_layers(layer)
        else:
            yield layer


def synthetic_crops(batch: int, size: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Mean-subtracted float32 crops `(batch, size, size, 3)` and int32 masks with
    blob-shaped regions of `NUM_CLASSES` classes and some 255 (ignored) pixels."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, NUM_CLASSES, (batch, size // 16 + 1, size // 16 + 1))
    masks = np.repeat(np.repeat(coarse, 16, 1), 16, 2)[:, :size, :size].astype("int32")
    masks[:, :2] = 255
    images = rng.normal(0.0, 60.0, (batch, size, size, 3)).astype("float32")
    return images, masks


def build_segmenter(preset: str, image_size: int, dtype: str) -> keras.Model:
    """A named configuration at `image_size`, in the dtype policy `dtype`, compiled with
    the paper's optimiser and loss (SGD momentum 0.9, cross-entropy ignoring 255)."""
    from keras_deconvnet.models import DeconvNetImageSegmenter

    model = DeconvNetImageSegmenter.from_preset(
        preset, num_classes=NUM_CLASSES, image_shape=(image_size, image_size, 3),
        dtype=dtype)
    model.compile(metrics=[])
    return model


def time_configuration(preset: str, image_size: int, batch: int, dtype: str,
                       repeats: int, warmup: int) -> dict:
    """Forward pass (`predict_on_batch`) and training step (`train_on_batch`)."""
    model = build_segmenter(preset, image_size, dtype)
    images, masks = synthetic_crops(batch, image_size)
    flops = conv_flops(model) * batch
    forward = median_seconds(lambda: _block(model.predict_on_batch(images)), warmup, repeats)
    start = time.perf_counter()
    model.train_on_batch(images, masks)  # compiles
    first_step_s = time.perf_counter() - start
    step = median_seconds(lambda: model.train_on_batch(images, masks),
                          max(0, warmup - 1), repeats)
    row = {
        "backend": keras.config.backend(), "preset": preset, "image_size": image_size,
        "batch": batch, "dtype": dtype, "jit_compile": str(model.jit_compile),
        "forward_s": forward["median_s"], "forward_examples_per_s": batch / forward["median_s"],
        "forward_gflops_per_s": flops / forward["median_s"] / 1e9,
        "train_step_s": step["median_s"],
        "train_examples_per_s": batch / step["median_s"],
        "train_gflops_per_s": 3 * flops / step["median_s"] / 1e9,
        "first_train_step_s": first_step_s, "gflops_per_forward": flops / 1e9,
    }
    keras.backend.clear_session()
    return row


def run(presets: Sequence[str], image_size: int = 224, batches: Sequence[int] = (1,),
        repeats: int = 3, warmup: int = 1, dtypes: Sequence[str] = ("float32",),
        matmul_size: int = 2048) -> dict:
    """Every (preset, batch, dtype) row, each with its fraction of the same-run matmul
    rate in its compute dtype (`float32`, or `bfloat16` for bfloat16 policies)."""
    rates = {}
    rows = []
    for dtype in dtypes:
        compute = keras.DTypePolicy(dtype).compute_dtype
        if compute not in rates:
            rates[compute] = matmul_gflops(compute, matmul_size)
        for preset in presets:
            for batch in batches:
                row = time_configuration(preset, image_size, batch, dtype, repeats, warmup)
                row["matmul_gflops_per_s"] = rates[compute]
                row["forward_fraction_of_matmul"] = row["forward_gflops_per_s"] / rates[compute]
                row["train_fraction_of_matmul"] = row["train_gflops_per_s"] / rates[compute]
                rows.append(row)
    return {"backend": keras.config.backend(), "keras": keras.__version__,
            "devices": _devices(), "matmul_gflops_per_s": rates, "rows": rows}


def _devices() -> list[str]:
    backend = keras.config.backend()
    if backend == "jax":
        import jax

        return [str(d) for d in jax.devices()]
    if backend == "torch":
        import torch

        return [torch.cuda.get_device_name(0)] if torch.cuda.is_available() else ["cpu"]
    return ["default"]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--presets", nargs="+", default=["deconvnet_edge"])
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--batches", nargs="+", type=int, default=[1])
    parser.add_argument("--dtypes", nargs="+", default=["float32"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--matmul-size", type=int, default=2048)
    args = parser.parse_args(argv)
    result = run(args.presets, args.image_size, args.batches, args.repeats, args.warmup,
                 args.dtypes, args.matmul_size)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
