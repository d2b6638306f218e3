"""`deconvnet summary`: print a configuration's layers and parameter count."""

from __future__ import annotations

import argparse


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
    from keras_deconvnet.models import load_segmenter

    overrides = {} if args.num_classes is None else {"num_classes": args.num_classes}
    model = load_segmenter(args.preset, **overrides)
    model.summary(line_length=100)
    return 0
