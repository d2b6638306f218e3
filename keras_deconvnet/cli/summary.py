"""`deconvnet summary`: print a configuration's layers and parameter count."""

from __future__ import annotations

import argparse

LINE_LENGTH = 100


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "summary",
        help="print a model configuration's layers",
        description="Build a named configuration (or load a preset) and print its summary.",
        epilog=(
            "Examples:\n  deconvnet summary deconvnet_vgg16_voc\n"
            "  deconvnet summary deconvnet_edge --num-classes 3"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("preset", help="a name from `deconvnet presets`, or a preset directory")
    parser.add_argument("--num-classes", type=int, default=None, help="override num_classes")
    parser.set_defaults(func=run)
    return parser


def run(args) -> int:
    import os

    from keras_deconvnet.models import load_segmenter

    overrides = {} if args.num_classes is None else {"num_classes": args.num_classes}
    model = load_segmenter(args.preset, **overrides)
    # Keras draws the table with rich, which crops to 80 columns when stdout is not a
    # terminal (a pipe, a log): the parameter column was cut off.
    columns = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = str(max(LINE_LENGTH, int(columns) if (columns or "").isdigit()
                                    else 0))
    try:
        model.summary(line_length=LINE_LENGTH)
    finally:
        if columns is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = columns
    return 0
