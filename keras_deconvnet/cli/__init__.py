"""The `deconvnet` command line: a thin layer over the Python API.

Each command lives in its own module of this package with two functions,
`add_parser(subparsers)` and `run(args) -> int`; `COMMANDS` lists them in the order
`deconvnet --help` shows them.
"""

from __future__ import annotations

import argparse
import importlib
import sys

COMMANDS = (
    "quickstart", "train", "evaluate", "predict", "export", "serve", "benchmark", "presets",
    "summary", "convert-caffe",
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
    parser.add_argument(
        "--verbose", action="store_true", help="show full tracebacks and TensorFlow logs"
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        # A hyphenated command lives in the module of that name with underscores.
        module = importlib.import_module(f"keras_deconvnet.cli.{name.replace('-', '_')}")
        module.add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
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
