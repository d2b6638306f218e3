"""Forward-pass speed of the DeconvNet configurations on this CPU (prints a table).

    python -m benchmarks.forward --presets deconvnet_vgg16_voc deconvnet_edge --batches 1 4

The `matmul` and `forward` sections of the suite (`python -m benchmarks.suite`):
median seconds per batch, images/s, achieved GFLOP/s (2 x the convolution MACs
counted from the layers) and its fraction of a float32 matmul measured in the same run.
"""

from __future__ import annotations

import argparse
import dataclasses
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from keras_deconvnet import benchmarking  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=[benchmarking.PAPER, benchmarking.EDGE])
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 4])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--xla", action="store_true", help="also time jit_compile=True")
    parser.add_argument("--bfloat16", action="store_true",
                        help="also time mixed_bfloat16 (where the CPU supports it)")
    parser.add_argument("--json", default=None, help="write the results as JSON here")
    args = parser.parse_args(argv)
    config = dataclasses.replace(
        benchmarking.SuiteConfig(),
        sections=("matmul", "forward"), presets=tuple(args.presets),
        batches=tuple(args.batches), repeats=args.repeats,
        modes=("function", "xla") if args.xla else ("function",),
        dtypes=("float32", "mixed_bfloat16") if args.bfloat16 else ("float32",),
    )
    results = benchmarking.run_suite(config)
    print(benchmarking.format_report(results))
    if args.json:
        benchmarking.write_json(results, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
