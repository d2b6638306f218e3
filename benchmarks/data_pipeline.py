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

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402

from keras_deconvnet.benchmarking import crops_per_second, pipeline_dataset  # noqa: E402


def build(stage: int, crop_size: int, examples: int, image_size: int) -> tf.data.Dataset:
    """The stage-1 or stage-2 crop pipeline, batched by 32 and prefetched."""
    return pipeline_dataset(stage, crop_size, examples, image_size)


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
