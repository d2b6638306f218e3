"""`deconvnet presets`: list the built-in presets, or describe and check one preset."""

from __future__ import annotations

import argparse
import json

from keras_deconvnet.cli import CommandError


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "presets",
        help="list the built-in presets, or describe a preset directory",
        description=(
            "Without PRESET: list the named configurations (DeconvNet, FCN-8s) with "
            "their parameter counts. With PRESET (a name, or a keras-hub preset "
            "directory written by `segmenter.save_to_preset`): describe it from its "
            "JSON files; --check also loads it with keras_hub's own "
            "`ImageSegmenter.from_preset`."
        ),
        epilog=(
            "Examples:\n"
            "  deconvnet presets\n"
            "  deconvnet presets --json\n"
            "  deconvnet presets deconvnet_edge\n"
            "  deconvnet presets runs/shapes_preset --check\n"
            "  deconvnet presets file:///models/voc_preset --json"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("preset", nargs="?", help="a preset to describe (name or directory)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    parser.add_argument(
        "--check", action="store_true",
        help="with PRESET: build the model and load its weights, running every check",
    )
    parser.set_defaults(func=run)
    return parser


def run(args) -> int:
    if args.preset is None:
        if args.check:
            raise CommandError("--check needs a PRESET to check")
        return _list(args.json)
    return _describe(args.preset, args.json, args.check)


def _list(as_json: bool) -> int:
    from keras_deconvnet.models import named_configs

    presets = named_configs()
    for name, preset in presets.items():
        preset["minimum_input_size"] = named_minimum_input_size(name)
    if as_json:
        print(json.dumps(presets, indent=2))
        return 0
    print(f"{'preset':<24} {'params':>12}  {'input':<10} description")
    for name, preset in presets.items():
        meta = preset["metadata"]
        params = f"{meta['params']:,}" if "params" in meta else "-"
        print(f"{name:<24} {params:>12}  {_input_text(preset):<10} {meta['description']}")
    print("\nDescribe one with `deconvnet presets NAME_OR_DIRECTORY`.")
    return 0


def named_minimum_input_size(name: str) -> int:
    """The smallest input side a named configuration takes (1: any size), computed from
    its configuration as the backbone's own check computes it."""
    from keras_deconvnet.models.preset_utils import NAMED_CONFIGS
    from keras_deconvnet.models.vgg16_encoder import minimum_input_size

    backbone_cls, entry = NAMED_CONFIGS[name]
    if backbone_cls.__name__ != "DeconvNetBackbone":  # FCN-8s: "same" or padded fc6
        return 1
    config = entry["config"]
    return minimum_input_size(len(config["block_filters"]), config["fc_kernel_size"])


def _input_text(preset: dict) -> str:
    height, width = preset["config"]["image_shape"][:2]
    if height and width:
        return f"{height}x{width}"
    smallest = preset["minimum_input_size"]
    return "any size" if smallest <= 1 else f">= {smallest} px"


def _describe(preset: str, as_json: bool, check: bool) -> int:
    from keras_deconvnet.models import describe_preset, load_segmenter

    try:
        description = describe_preset(preset)
        if check:
            model = load_segmenter(preset)
            description["check"] = {
                "ok": True,
                "class_name": type(model).__name__,
                "parameter_count": int(model.count_params()),
                "input_shape": list(model.input_shape[1:]),
                "output_shape": list(model.output_shape[1:]),
                "weights": not description["named"],
            }
    except ImportError as e:  # kagglehub / huggingface_hub missing for a handle.
        raise CommandError(str(e)) from None
    if as_json:
        print(json.dumps(description, indent=2))
        return 0
    for line in _describe_lines(description):
        print(line)
    return 0


def _describe_lines(d: dict) -> list[str]:
    meta = d["metadata"]
    lines = [f"preset       {d['preset']}" + ("  (named configuration)" if d["named"] else "")]
    lines.append(f"class        {d['class_name']}")
    if d["named"]:
        if "params" in meta:
            lines.append(f"parameters   {meta['params']:,} in all, with "
                         f"{d.get('num_classes')} classes")
        smallest = named_minimum_input_size(d["preset"])
        if smallest > 1:
            lines.append(f"input        at least {smallest}x{smallest} pixels")
        lines.append(f"description  {meta['description']}")
        lines.append("weights      untrained (architecture only)")
    else:
        ours = meta.get("keras_deconvnet", {})
        if ours.get("description"):
            lines.append(f"description  {ours['description']}")
        count = meta.get("parameter_count")  # keras-hub counts the backbone only
        lines.append(f"parameters   {count:,} in the backbone (keras-hub's metadata.json)"
                     if isinstance(count, int) else f"parameters   {count}")
        names = ours.get("class_names") or []
        lines.append(f"classes      {d.get('num_classes')}: {', '.join(names)}")
        lines.append(f"training     {json.dumps(ours.get('training_data'))}")
        lines.append(f"metrics      {json.dumps(ours.get('metrics'))}")
        lines.append(
            f"saved        {meta.get('date_saved')} with keras-hub "
            f"{meta.get('keras_hub_version')}, keras {meta.get('keras_version')}"
        )
        if d.get("files"):
            lines.append("files        " + ", ".join(
                f"{name} ({size:,} B)" for name, size in d["files"].items()))
    lines.append("config       " + json.dumps(d["config"] or {}))
    if "check" in d:
        c = d["check"]
        weights = "weights loaded" if c["weights"] else "untrained"
        lines.append(
            f"check        ok: keras-hub loaded {c['class_name']} "
            f"({c['parameter_count']:,} parameters in all: backbone and class layer), "
            f"{weights}"
        )
    return lines
