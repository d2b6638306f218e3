"""`deconvnet presets`: list the named model configurations."""

from __future__ import annotations

import argparse
import json


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "presets",
        help="list the named model configurations",
        description="List the named DeconvNet configurations with their parameter counts.",
        epilog="Examples:\n  deconvnet presets\n  deconvnet presets --json",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.set_defaults(func=run)
    return parser


def run(args) -> int:
    from keras_deconvnet.models import DeconvNet

    presets = DeconvNet.presets()
    if args.json:
        print(json.dumps(
            {name: {"metadata": p["metadata"], "config": p["config"]}
             for name, p in presets.items()},
            indent=2,
        ))
        return 0
    print(f"{'preset':<24} {'params':>12}  description")
    for name, preset in presets.items():
        meta = preset["metadata"]
        print(f"{name:<24} {meta['params']:>12,}  {meta['description']}")
    return 0
