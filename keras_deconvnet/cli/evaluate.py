"""`deconvnet evaluate`: mean IoU of whole-image, proposal, +CRF and ensemble inference."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from keras_deconvnet.atomic_io import write_json
from keras_deconvnet.cli import CommandError
from keras_deconvnet.cli.arguments import (
    add_dataset_args,
    add_inference_args,
    add_model_args,
    build_dataset,
    dataset_length,
    inference_config_from_args,
    load_model,
)
from keras_deconvnet.evaluation import comparison_table  # noqa: F401 (train imports it)


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
    add_inference_args(parser)
    parser.add_argument("--out", default=None, help="directory for JSON and plots")
    parser.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    parser.set_defaults(func=run)
    return parser


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
    config = inference_config_from_args(args)
    results = evaluate_methods(
        model, dataset.as_numpy_iterator(), info.num_classes, methods=args.methods,
        fcn=fcn, config=config, total=dataset_length(dataset),
    )
    print(f"\nMean IoU (%) on {args.dataset}/{args.split}, {results['num_images']} images:")
    print(comparison_table(results, args.methods, info.class_names))
    if args.out:
        out = Path(args.out)
        write_json(out / "evaluation.json", {
            "dataset": args.dataset, "split": args.split,
            "class_names": list(info.class_names),
            # What the numbers depend on: the settings, the data's seed (synthetic)
            # and the image count (also `num_images`, from the results).
            "seed": args.seed, "image_size": args.image_size if args.dataset == "synthetic"
            else None, "model": args.model or args.preset, "fcn": args.fcn,
            "inference_config": config.to_dict(), **results})
        if not args.no_plots:
            for method in args.methods:
                visualize.save_confusion_matrix(
                    np.asarray(results[method]["confusion_matrix"]),
                    out / f"confusion_{method}.png", info.class_names,
                    title=f"{method}: mean IoU {100 * results[method]['mean_iou']:.1f}%",
                )
        print(f"Results in {out / 'evaluation.json'}")
    return 0
