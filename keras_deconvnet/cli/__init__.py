"""The `deconvnet` command line: a thin layer over the Python API.

Each command lives in its own module of this package with two functions,
`add_parser(subparsers)` and `run(args) -> int`; `COMMANDS` lists them in the order
`deconvnet --help` shows them.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from keras_deconvnet.cli import console, options

COMMANDS = (
    "quickstart", "train", "evaluate", "predict", "export", "serve", "serve-web", "benchmark",
    "presets", "summary", "convert-caffe",
)


class CommandError(Exception):
    """An error the user can fix; printed as one line, without a traceback."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="deconvnet",
        description=(
            "DeconvNet semantic segmentation for Keras 3: train, evaluate, export."
        ),
        epilog="Run `deconvnet COMMAND --help` for a command's options and examples.",
    )
    options.add_global_options(parser)  # --version, --verbose
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        # A hyphenated command lives in the module of that name with underscores.
        module = importlib.import_module(f"keras_deconvnet.cli.{name.replace('-', '_')}")
        options.finish_command_parser(module.add_parser(subparsers))
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    from keras_deconvnet.backends import TensorFlowRequiredError, select_tensorflow_backend

    try:  # the commands use TensorFlow (see keras_deconvnet.backends)
        select_tensorflow_backend()
    except TensorFlowRequiredError as e:
        print(f"deconvnet: error: {e}", file=sys.stderr)
        return 2
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        with console.command_output(args.verbose):
            return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("deconvnet: interrupted", file=sys.stderr)
        return 130
    except (CommandError, ValueError, FileNotFoundError, OSError) as e:
        if args.verbose:
            raise
        print(f"deconvnet {args.command}: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
