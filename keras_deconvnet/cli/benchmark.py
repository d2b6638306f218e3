"""`deconvnet benchmark`: the speed and memory suite (tables + JSON), see `benchmarking`."""

from __future__ import annotations

import argparse

EPILOG = """\
Sections: matmul, forward, layers, training (+ tf.data pipelines), torch, exported,
memory, profile. Each figure is a median over --repeats runs after --warmup runs.
The report ends with four verdicts (paper forward vs matmul rate, pool+unpool vs
argmax+scatter, Keras vs PyTorch, TFLite int8 vs Keras). --quick is CI-sized (edge
preset, few settings, about 1 minute on 2 cores); its speed figures are indicative.

Examples:
  deconvnet benchmark --quick
  deconvnet benchmark --json runs/benchmark.json
  deconvnet benchmark --sections forward layers --presets deconvnet_edge --batches 1 4
"""


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "benchmark",
        help="measure speed and memory on this machine (tables + JSON)",
        description=(
            "Time the DeconvNet forward pass, the pooling/unpooling layers, a training "
            "step, the data pipelines, PyTorch and the exported runtimes, and peak memory."
        ),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(parser)
    parser.set_defaults(func=run)
    return parser


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The suite's options (shared with `python -m benchmarks.suite`)."""
    from keras_deconvnet.benchmarking import SECTIONS

    parser.add_argument("--quick", action="store_true",
                        help="CI-sized settings (edge preset only, batch 1, 3 repeats)")
    parser.add_argument("--sections", nargs="+", choices=SECTIONS, default=None,
                        help="sections to run (default: all)")
    parser.add_argument("--presets", nargs="+", default=None, help="DeconvNet presets")
    parser.add_argument("--batches", nargs="+", type=int, default=None,
                        help="forward/torch batch sizes")
    parser.add_argument("--repeats", type=int, default=None, help="timed runs per figure")
    parser.add_argument("--warmup", type=int, default=None, help="untimed runs first")
    parser.add_argument("--threads", type=int, default=None,
                        help="threads for PyTorch, LiteRT, ONNX Runtime (default: cores)")
    parser.add_argument("--no-bfloat16", action="store_true", help="float32 only")
    parser.add_argument("--json", default=None, help="also write the results as JSON here")


def config_from_args(args):
    """A `SuiteConfig` from parsed arguments."""
    import dataclasses

    from keras_deconvnet.benchmarking import SuiteConfig

    config = SuiteConfig.quick_config() if args.quick else SuiteConfig()
    changes = {}
    if args.sections:
        changes["sections"] = tuple(args.sections)
    if args.presets:
        changes["presets"] = tuple(args.presets)
    if args.batches:
        if min(args.batches) < 1:
            raise ValueError(f"--batches must be >= 1. Received: {args.batches}")
        changes["batches"] = tuple(args.batches)
    for name in ("repeats", "warmup", "threads"):
        value = getattr(args, name)
        if value is not None:
            if value < (0 if name == "warmup" else 1):
                raise ValueError(f"--{name} is too small. Received: {value}")
            changes[name] = value
    if args.no_bfloat16:
        changes["dtypes"] = ("float32",)
    return dataclasses.replace(config, **changes)


def run(args) -> int:
    from keras_deconvnet import benchmarking

    config = config_from_args(args)
    if args.presets:
        from keras_deconvnet.models import DeconvNetBackbone

        unknown = [p for p in args.presets if p not in DeconvNetBackbone.presets]
        if unknown:
            raise ValueError(f"unknown presets {unknown}; see `deconvnet presets`")
    results = benchmarking.run_suite(config)
    print()
    print(benchmarking.format_report(results))
    if args.json:
        benchmarking.write_json(results, args.json)
        print(f"wrote {args.json}")
    return 0
