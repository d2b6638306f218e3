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
            "Without PRESET: list the built-in DeconvNet configurations with their "
            "parameter counts. With PRESET (a built-in name, a preset directory written "
            "by `model.save_to_preset`, or a file:// / kaggle:// / hf:// handle): "
            "describe it from its config.json and metadata.json; --check also builds "
            "the model and loads and verifies its weights."
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
    from keras_deconvnet.models import DeconvNet

    presets = DeconvNet.presets()
    if as_json:
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
    print("\nDescribe one with `deconvnet presets NAME_OR_DIRECTORY`.")
    return 0


def _describe(preset: str, as_json: bool, check: bool) -> int:
    from keras_deconvnet.models import describe_preset, load_preset

    try:
        description = describe_preset(preset)
        if check:
            model = load_preset(preset)
            description["check"] = {
                "ok": True,
                "class_name": type(model).__name__,
                "parameter_count": int(model.count_params()),
                "input_shape": list(model.input_shape[1:]),
                "output_shape": list(model.output_shape[1:]),
                "weights": not description["builtin"] or bool(description.get("handle")),
            }
    except ImportError as e:  # keras-hub missing for a hub handle.
        raise CommandError(str(e)) from None
    if as_json:
        print(json.dumps(description, indent=2))
        return 0
    for line in _describe_lines(description):
        print(line)
    return 0


def _describe_lines(d: dict) -> list[str]:
    meta = d["metadata"]
    config = d["config"] or {}
    lines = [f"preset       {d['preset']}" + ("  (built in)" if d["builtin"] else "")]
    lines.append(f"class        {d['class_name']}")
    if d["builtin"]:
        lines.append(f"parameters   {meta['params']:,}")
        lines.append(f"description  {meta['description']}")
        lines.append(f"weights      {d.get('handle') or 'untrained (architecture only)'}")
    else:
        if meta.get("description"):
            lines.append(f"description  {meta['description']}")
        count = meta.get("parameter_count")
        lines.append(f"parameters   {count:,}" if isinstance(count, int) else
                     f"parameters   {count}")
        lines.append(f"input        {meta.get('input_shape')}")
        classes = meta.get("classes", {}).get("names", [])
        lines.append(f"classes      {len(classes)}: {', '.join(classes)}")
        lines.append(f"training     {json.dumps(meta.get('training_data'))}")
        lines.append(f"metrics      {json.dumps(meta.get('metrics'))}")
        lines.append(
            f"saved        {meta.get('date_saved')} with keras_deconvnet "
            f"{meta.get('keras_deconvnet_version')}, keras {meta.get('keras_version')}, "
            f"tensorflow {meta.get('tensorflow_version')}"
        )
        if d.get("files"):
            lines.append("files        " + ", ".join(
                f"{name} ({size:,} B)" for name, size in d["files"].items()))
    lines.append(f"preprocess   {json.dumps(d.get('preprocessing'))}")
    lines.append("config       " + json.dumps(config))
    if "check" in d:
        c = d["check"]
        weights = "weights loaded and verified" if c["weights"] else "untrained"
        lines.append(
            f"check        ok: built {c['class_name']} ({c['parameter_count']:,} "
            f"parameters), {weights}"
        )
    return lines
