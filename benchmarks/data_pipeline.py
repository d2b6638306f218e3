"""Speed of the training-crop pipelines on the synthetic data (prints a table).

    python -m benchmarks.data_pipeline --crop-sizes 224 128 --json runs/data_pipeline.json

For each stage (1: object crops, 2: sliding-window proposal crops) and crop size, the
median crops/s over `--repeats` passes through `--examples` synthetic 128x128 images
(generation included, batched by 32, prefetched) after one warm-up pass.
`resize_size` is `crop_size * 250 / 224`, as in the paper.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402

from keras_deconvnet.data import (  # noqa: E402
    SlidingWindowProposals,
    stage1_crops,
    stage2_crops,
    synthetic_dataset,
)


def build(stage: int, crop_size: int, examples: int, image_size: int) -> tf.data.Dataset:
    source = synthetic_dataset("train", examples, (image_size, image_size), seed=0)
    resize_size = round(crop_size * 250 / 224)
    if stage == 1:
        crops = stage1_crops(source, crop_size, resize_size, seed=0)
    else:
        crops = stage2_crops(source, SlidingWindowProposals(), max_per_image=8,
                             crop_size=crop_size, resize_size=resize_size, seed=0)
    return crops.batch(32).prefetch(tf.data.AUTOTUNE)


def crops_per_second(dataset: tf.data.Dataset, repeats: int) -> tuple:
    def one_pass():
        start = time.perf_counter()
        count = sum(int(images.shape[0]) for images, _ in dataset)
        return count, time.perf_counter() - start

    one_pass()  # warm-up: tracing, thread pools
    runs = [one_pass() for _ in range(repeats)]
    count = runs[0][0]
    return count, statistics.median(count / seconds for _, seconds in runs)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--crop-sizes", nargs="+", type=int, default=[224, 128])
    parser.add_argument("--stages", nargs="+", type=int, default=[1, 2], choices=[1, 2])
    parser.add_argument("--examples", type=int, default=128, help="synthetic images per pass")
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", default=None, help="write the rows as JSON here")
    args = parser.parse_args(argv)

    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"TF {tf.__version__}, synthetic {args.image_size}x{args.image_size}, "
          f"{args.examples} images/pass, median of {args.repeats}")
    print(f"{'stage':>5} {'crop':>5} {'crops/pass':>10} {'crops/s':>9}")
    rows = []
    for stage in args.stages:
        for crop_size in args.crop_sizes:
            dataset = build(stage, crop_size, args.examples, args.image_size)
            count, rate = crops_per_second(dataset, args.repeats)
            rows.append({
                "stage": stage, "crop_size": crop_size, "image_size": args.image_size,
                "examples_per_pass": args.examples, "crops_per_pass": count,
                "crops_per_second": rate, "repeats": args.repeats,
                "cpu_count": os.cpu_count(), "tensorflow": tf.__version__,
            })
            print(f"{stage:>5} {crop_size:>5} {count:>10} {rate:>9.1f}")
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
