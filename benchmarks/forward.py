"""Forward-pass speed of the DeconvNet configurations on this CPU (prints a table).

    python -m benchmarks.forward --presets deconvnet_vgg16_voc deconvnet_edge --batches 1 4

Median seconds per batch over `--repeats` runs after a warm-up, images/s, and achieved
GFLOP/s (2 x the convolution MACs counted from the layers).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from benchmarks.flops import conv_macs  # noqa: E402
from keras_deconvnet.models import DeconvNet  # noqa: E402


def time_forward(model, batch: int, repeats: int, jit_compile: bool = False) -> float:
    size = model.input_shape[1:]
    x = tf.constant(np.random.default_rng(0).normal(size=(batch, *size)).astype("float32"))
    fn = tf.function(lambda x: model(x, training=False), jit_compile=jit_compile)
    fn(x).numpy()  # trace + warm-up
    fn(x).numpy()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn(x).numpy()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=["deconvnet_vgg16_voc", "deconvnet_edge"])
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 4])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--xla", action="store_true", help="also time jit_compile=True")
    parser.add_argument("--json", default=None, help="write the rows as JSON here")
    args = parser.parse_args(argv)

    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"TF {tf.__version__}")
    print(f"{'preset':<22} {'batch':>5} {'xla':>4} {'s/batch':>8} {'s/image':>8} "
          f"{'img/s':>7} {'GFLOP/s':>8}")
    rows = []
    for preset in args.presets:
        model = DeconvNet.from_preset(preset)
        flops = 2 * conv_macs(model)
        for batch in args.batches:
            for xla in ([False, True] if args.xla else [False]):
                seconds = time_forward(model, batch, args.repeats, xla)
                row = {
                    "preset": preset, "batch": batch, "xla": xla,
                    "seconds_per_batch": seconds, "seconds_per_image": seconds / batch,
                    "images_per_second": batch / seconds,
                    "gflops_per_second": flops * batch / seconds / 1e9,
                    "gflop_per_image": flops / 1e9,
                }
                rows.append(row)
                print(f"{preset:<22} {batch:>5} {'yes' if xla else 'no':>4} "
                      f"{seconds:>8.3f} {seconds / batch:>8.3f} {batch / seconds:>7.2f} "
                      f"{row['gflops_per_second']:>8.1f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
