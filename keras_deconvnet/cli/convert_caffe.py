"""`deconvnet convert-caffe`: the authors' Caffe models as keras-hub presets, no Caffe needed."""

from __future__ import annotations

import argparse
from pathlib import Path

from keras_deconvnet.cli import CommandError

EPILOG = """\
--arch deconvnet takes DeconvNet_trainval_inference.caffemodel (BN folded: exact) or a
stage_1/stage_2_train_result.caffemodel (BN gamma/beta: recompute the statistics
before use, as the printed note says); --arch fcn8s takes fcn-8s-pascal.caffemodel
(original geometry); --arch vgg16 takes VGG_ILSVRC_16_layers_conv.caffemodel and
writes an untrained DeconvNet (or, with --target fcn8s, FCN-8s) whose encoder and
fc6/fc7 are VGG16's, to train with `deconvnet train --model`. Nothing is written
if any layer does not fit. The weights' licence is the authors'.

Examples:
  deconvnet convert-caffe DeconvNet_trainval_inference.caffemodel --arch deconvnet \\
      --out presets/deconvnet_voc
  deconvnet predict photo.jpg --model presets/deconvnet_voc --out preds
  deconvnet convert-caffe fcn-8s-pascal.caffemodel --arch fcn8s --out presets/fcn8s_voc
  deconvnet convert-caffe VGG_ILSVRC_16_layers_conv.caffemodel --arch vgg16 \\
      --out presets/vgg16_init
  deconvnet convert-caffe stage_2_train_result.caffemodel --describe
"""


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "convert-caffe",
        help="convert the authors' Caffe models (DeconvNet, FCN-8s, VGG16) to presets",
        description=(
            "Reads a binary .caffemodel (memory-mapped, no Caffe installed), builds the "
            "Keras model its blobs describe, checks every layer's name, shape and "
            "geometry, then loads the weights and writes a keras-hub preset with VOC's "
            "21 class names and palette. The preset then works with `deconvnet "
            "evaluate/predict/export/serve --model DIR` and "
            "`keras_hub.models.ImageSegmenter.from_preset(DIR)`."
        ),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("caffemodel", type=Path, help="the .caffemodel file")
    parser.add_argument("--arch", choices=("deconvnet", "fcn8s", "vgg16"),
                        help="what the file holds")
    parser.add_argument("--out", type=Path, help="the preset directory to write")
    parser.add_argument("--target", choices=("deconvnet", "fcn8s"), default=None,
                        help="with --arch vgg16: the network to initialise "
                        "(default: deconvnet)")
    parser.add_argument("--bn", choices=("auto", "folded", "batch"), default="auto",
                        help="with --arch deconvnet: whether the BN blobs are folded "
                        "scale/shift (the inference file) or gamma/beta (the stage "
                        "files); default: detected from the file")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace a non-empty --out")
    parser.add_argument("--describe", action="store_true",
                        help="only list the file's layers, blob shapes and parameters")
    parser.set_defaults(func=run)
    return parser


def describe(path: Path) -> None:
    """Prints one line per layer: name, type, blob shapes, decoded parameters."""
    from keras_deconvnet.models.caffe import describe_caffemodel, read_caffemodel

    rows = describe_caffemodel(path)
    with read_caffemodel(path) as net:
        print(f"{path}: {net.format} NetParameter {net.name!r}, {len(rows)} layers, "
              f"{net.num_parameters:,} values")
    width = max((len(row["name"]) for row in rows), default=4)
    for row in rows:
        shapes = ", ".join("x".join(str(d) for d in shape) for shape in row["blob_shapes"])
        params = "; ".join(
            f"{key}: " + " ".join(f"{k}={v}" for k, v in value.items())
            for key, value in row["params"].items() if value
        )
        line = f"  {row['name']:<{width}}  {row['type_name']:<14} {shapes or '-':<22} {params}"
        print(line.rstrip())


def run(args) -> int:
    if not args.caffemodel.is_file():
        raise CommandError(f"no such file: {args.caffemodel}")
    if args.describe:
        describe(args.caffemodel)
        return 0
    if args.arch is None or args.out is None:
        raise CommandError("give --arch (deconvnet, fcn8s or vgg16) and --out PRESET_DIR "
                           "(or --describe)")
    out = args.out
    if out.exists() and (out.is_file() or any(out.iterdir())) and not args.overwrite:
        raise CommandError(f"--out exists and is not empty: {out} (pass --overwrite)")
    if args.bn != "auto" and args.arch != "deconvnet":
        raise CommandError("--bn applies to --arch deconvnet only")
    if args.target is not None and args.arch != "vgg16":
        raise CommandError("--target applies to --arch vgg16 only")

    from keras_deconvnet.models.caffe import convert_caffemodel

    conversion = convert_caffemodel(
        args.caffemodel, args.arch, bn=args.bn, target=args.target or "deconvnet",
        progress=True,
    )
    for note in conversion.notes:
        print(f"note: {note}")
    path = conversion.save(out, overwrite=args.overwrite)
    segmenter = conversion.segmenter
    print(f"\nWrote {type(segmenter).__name__} ({segmenter.count_params():,} parameters, "
          f"{segmenter.num_classes} classes) to {path}")
    if conversion.needs_batchnorm_statistics:
        print("warning: BatchNorm statistics are not set; recompute them before use "
              "(see the note above).")
    print(f"Use it: deconvnet predict IMAGE --model {path} --out preds, or "
          f"keras_hub.models.ImageSegmenter.from_preset({str(path)!r})")
    return 0
