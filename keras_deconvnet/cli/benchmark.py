"""`deconvnet benchmark`: the speed and memory suite (tables + JSON), see `benchmarks`."""

from __future__ import annotations

import argparse

EPILOG = """\
Sections: matmul, forward, layers, training (+ tf.data pipelines), torch, exported,
memory, profile by default; proposals (instance-wise inference), serving (the local
server's throughput), soak (mixed good and bad requests; exit status 1 on any wrong
answer), seeds (the quickstart's mean IoU over --seeds) and backends (the edge and
paper configurations' forward pass and training step on every installed Keras
backend: TensorFlow, JAX, PyTorch, one child process each) when named.
Each figure is a median over --repeats runs after --warmup runs.
The report ends with four verdicts (paper forward vs matmul rate, pool+unpool vs
argmax+scatter, Keras vs PyTorch, TFLite int8 vs Keras). --quick is CI-sized (edge
preset, few settings, about 1 minute on 2 cores); its speed figures are indicative.

Examples:
  deconvnet benchmark --quick
  deconvnet benchmark --json runs/benchmark.json
  deconvnet benchmark --sections forward layers --presets deconvnet_edge --batches 1 4
  deconvnet benchmark --sections serving soak --concurrency 1 4 16
  deconvnet benchmark --sections soak --model-base exported/serving --model-name deconvnet
  deconvnet benchmark --sections seeds --seeds 0 1 2 --json runs/seeds.json
  deconvnet benchmark --sections matmul backends --repeats 2
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
    """The suite's options."""
    from keras_deconvnet.benchmarks.config import ALL_SECTIONS

    parser.add_argument("--quick", action="store_true",
                        help="CI-sized settings (edge preset only, batch 1, 3 repeats)")
    parser.add_argument("--sections", nargs="+", choices=ALL_SECTIONS, default=None,
                        help="sections to run (default: the first eight)")
    parser.add_argument("--presets", nargs="+", default=None, help="DeconvNet presets")
    parser.add_argument("--batches", nargs="+", type=int, default=None,
                        help="forward/torch batch sizes")
    parser.add_argument("--repeats", type=int, default=None, help="timed runs per figure")
    parser.add_argument("--warmup", type=int, default=None, help="untimed runs first")
    parser.add_argument("--threads", type=int, default=None,
                        help="threads for PyTorch, LiteRT, ONNX Runtime (default: cores)")
    parser.add_argument("--no-bfloat16", action="store_true", help="float32 only")
    parser.add_argument("--image-size", type=int, default=None,
                        help="square input size of every model (default 224)")
    parser.add_argument("--json", default=None, help="also write the results as JSON here")
    opt_in = parser.add_argument_group("opt-in sections (proposals, serving, soak, seeds)")
    opt_in.add_argument("--concurrency", nargs="+", type=int, default=None,
                        help="serving: client threads per figure; soak: the largest")
    opt_in.add_argument("--requests", type=int, default=None,
                        help="serving: requests per level (64); soak: in all (3000)")
    opt_in.add_argument("--model-base", default=None,
                        help="soak: a TF Serving base directory (default: export a preset)")
    opt_in.add_argument("--model-name", default=None, help="soak/serving: the model's name")
    opt_in.add_argument("--server-arg", action="append", default=[], metavar="ARG",
                        help="extra server option (repeatable), e.g. --server-arg=--no-batching")
    opt_in.add_argument("--no-grpc", action="store_true", help="serving/soak: REST only")
    opt_in.add_argument("--seeds", nargs="+", type=int, default=None,
                        help="seeds: the seeds to train (default 0 1 2)")
    opt_in.add_argument("--output-dir", default=None,
                        help="seeds: where the models are trained (default: a temporary "
                             "directory; an existing run resumes)")


def config_from_args(args):
    """A `SuiteConfig` from parsed arguments."""
    import dataclasses

    from keras_deconvnet.benchmarks.config import SuiteConfig

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
    for name in ("repeats", "warmup", "threads", "image_size"):
        value = getattr(args, name)
        if value is not None:
            if value < (0 if name == "warmup" else 1):
                raise ValueError(f"--{name.replace('_', '-')} is too small. Received: {value}")
            changes[name] = value
    if args.no_bfloat16:
        changes["dtypes"] = ("float32",)
    changes["serving"] = _serving_config(args, config.serving)
    if args.presets:
        changes["proposals"] = dataclasses.replace(config.proposals, preset=args.presets[0])
    if args.seeds or args.output_dir:
        changes["seeds"] = dataclasses.replace(
            config.seeds, seeds=tuple(args.seeds or config.seeds.seeds),
            output_dir=args.output_dir)
    return dataclasses.replace(config, **changes)


def _serving_config(args, serving):
    import dataclasses

    changes = {"server_args": tuple(args.server_arg), "grpc": not args.no_grpc}
    if args.concurrency:
        if min(args.concurrency) < 1:
            raise ValueError(f"--concurrency must be >= 1. Received: {args.concurrency}")
        changes["concurrency"] = tuple(args.concurrency)
    if args.requests is not None:
        if args.requests < 1:
            raise ValueError(f"--requests must be >= 1. Received: {args.requests}")
        changes["requests"] = changes["soak_requests"] = args.requests
    if args.model_base:
        changes["model_base"] = args.model_base
    if args.model_name:
        changes["model_name"] = args.model_name
    if args.presets:
        changes["preset"] = args.presets[0]
    return dataclasses.replace(serving, **changes)


def run(args) -> int:
    from keras_deconvnet.atomic_io import write_json
    from keras_deconvnet.benchmarks.report import format_report
    from keras_deconvnet.benchmarks.suite import run_suite

    config = config_from_args(args)
    if args.presets:
        from keras_deconvnet.models import DeconvNetBackbone

        unknown = [p for p in args.presets if p not in DeconvNetBackbone.presets]
        if unknown:
            raise ValueError(f"unknown presets {unknown}; see `deconvnet presets`")
    results = run_suite(config)
    print()
    print(format_report(results))
    if args.json:
        write_json(args.json, results)
        print(f"wrote {args.json}")
    return 0 if results.get("soak", {}).get("passed", True) else 1
