"""`deconvnet evaluate`: mean IoU of whole-image, proposal, +CRF and ensemble inference."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from keras_deconvnet.cli import CommandError
from keras_deconvnet.cli.common import (
    add_dataset_args,
    add_model_args,
    build_dataset,
    dataset_length,
    load_model,
    write_json,
)


def add_parser(subparsers) -> argparse.ArgumentParser:
    from keras_deconvnet.evaluation import METHODS

    parser = subparsers.add_parser(
        "evaluate",
        help="mean IoU per class of several inference methods (the paper's Table 1)",
        description=(
            "Evaluates a model on a dataset split with the PASCAL VOC rules (confusion "
            "matrix, IoU = TP / (TP + FP + FN) per class, label 255 ignored) for each "
            "method, prints a per-class table with one column per method, and writes "
            "evaluation.json and confusion-matrix plots to --out."
        ),
        epilog=(
            "Examples:\n"
            "  deconvnet evaluate --model runs/quickstart/preset --out runs/eval\n"
            "  deconvnet evaluate --model runs/quickstart/preset --methods whole proposals \\\n"
            "      proposals_crf ensemble --fcn runs/fcn/preset --out runs/eval\n"
            "  deconvnet evaluate --model voc_preset --dataset voc --data-dir VOCdevkit "
            "--out runs/voc"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_model_args(parser)
    add_dataset_args(parser, default_split="val")
    parser.add_argument("--methods", nargs="+", choices=METHODS,
                        default=["whole", "proposals"])
    parser.add_argument("--fcn", help="FCN-8s segmenter (preset directory) for the ensemble")
    parser.add_argument("--top-n", type=int, default=50, help="proposals per image")
    parser.add_argument("--aggregation", choices=("max", "mean"), default="max")
    parser.add_argument("--out", default=None, help="directory for JSON and plots")
    parser.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    parser.set_defaults(func=run)
    return parser


def comparison_table(results: dict, methods, class_names) -> str:
    """One line per class, one column per method, percentages; mean IoU last."""
    width = max(12, *(len(m) + 2 for m in methods))
    lines = [f"{'class':<14}" + "".join(f"{m:>{width}}" for m in methods)]
    for c, name in enumerate(class_names):
        cells = []
        for m in methods:
            value = results[m]["per_class_iou"][c]
            cells.append(f"{'-':>{width}}" if not np.isfinite(value)
                         else f"{100 * value:>{width}.1f}")
        lines.append(f"{name:<14}" + "".join(cells))
    lines.append("-" * len(lines[0]))
    for key, label in (("mean_iou", "mean IoU"), ("pixel_accuracy", "pixel acc.")):
        lines.append(f"{label:<14}" + "".join(
            f"{100 * results[m][key]:>{width}.1f}" for m in methods))
    return "\n".join(lines)


def run(args) -> int:
    from keras_deconvnet import visualize
    from keras_deconvnet.evaluation import evaluate_methods
    from keras_deconvnet.models import load_segmenter

    dataset, info = build_dataset(args)
    model = load_model(args, num_classes=info.num_classes)
    if model.output_shape[-1] != info.num_classes:
        raise CommandError(
            f"the model predicts {model.output_shape[-1]} classes, the {args.dataset} "
            f"data has {info.num_classes}"
        )
    fcn = None
    if args.fcn:
        fcn = load_segmenter(args.fcn)
    results = evaluate_methods(
        model, dataset.as_numpy_iterator(), info.num_classes, methods=args.methods,
        fcn=fcn, top_n=args.top_n, aggregation=args.aggregation,
        total=dataset_length(dataset),
    )
    print(f"\nMean IoU (%) on {args.dataset}/{args.split}, {results['num_images']} images:")
    print(comparison_table(results, args.methods, info.class_names))
    if args.out:
        out = Path(args.out)
        write_json({"dataset": args.dataset, "split": args.split,
                    "class_names": list(info.class_names), **results},
                   out / "evaluation.json")
        if not args.no_plots:
            for method in args.methods:
                visualize.save_confusion_matrix(
                    np.asarray(results[method]["confusion_matrix"]),
                    out / f"confusion_{method}.png", info.class_names,
                    title=f"{method}: mean IoU {100 * results[method]['mean_iou']:.1f}%",
                )
        print(f"Results in {out / 'evaluation.json'}")
    return 0
