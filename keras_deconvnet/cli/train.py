"""`deconvnet train`: the two-stage recipe on a dataset, then a validation summary."""

from __future__ import annotations

import argparse
import json

from keras_deconvnet.cli import CommandError
from keras_deconvnet.cli.common import (
    add_dataset_args,
    build_dataset,
    dataset_length,
    write_json,
)


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "train",
        help="two-stage training (object crops, then proposal crops) with model.fit",
        description=(
            "Trains a DeconvNet (or FCN-8s) with the paper's two-stage recipe: stage 1 on "
            "object-centred crops, stage 2 on proposal crops, SGD with momentum 0.9, "
            "weight decay 5e-4 and learning-rate drops on plateau. A killed run resumes "
            "where it stopped when started again with the same --out. Prints per-class "
            "IoU on the validation split and writes train_summary.json."
        ),
        epilog=(
            "Examples:\n"
            "  deconvnet train --out runs/shapes --crop-size 96 --stage1-epochs 4 \\\n"
            "      --stage2-epochs 4 --steps-per-epoch 40\n"
            "  deconvnet train --dataset voc --data-dir VOCdevkit --sbd-dir SBD \\\n"
            "      --preset deconvnet_vgg16_voc --vgg16-weights imagenet --crop-size 224 \\\n"
            "      --strategy mirrored --out runs/voc\n"
            "  deconvnet train --arch fcn8s --out runs/fcn  # the ensemble's partner"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--out", required=True, help="output directory (resumes if it exists)")
    add_dataset_args(parser, default_split="train")
    parser.add_argument("--val-split", default="val", help="validation split ('' for none)")
    model = parser.add_argument_group("model")
    model.add_argument("--arch", choices=("deconvnet", "fcn8s"), default="deconvnet")
    model.add_argument("--preset", default=None,
                       help="named configuration (see `deconvnet presets`); default: "
                       "deconvnet_edge_small or fcn8s_edge_small")
    model.add_argument("--model", help="continue training a preset directory or .keras file")
    model.add_argument("--vgg16-weights", help="'imagenet' or a VGG16 .h5 file for the encoder")
    fit = parser.add_argument_group("training")
    fit.add_argument("--crop-size", type=int, default=224, help="training crop size")
    fit.add_argument("--stage1-epochs", type=int, default=None)
    fit.add_argument("--stage2-epochs", type=int, default=None)
    fit.add_argument("--steps-per-epoch", type=int, default=None)
    fit.add_argument("--batch-size", type=int, default=None)
    fit.add_argument("--learning-rate", type=float, default=None)
    fit.add_argument("--lr-schedule", choices=("plateau", "step", "constant"), default=None)
    fit.add_argument("--config", help="a TrainingConfig JSON file; flags override it")
    fit.add_argument("--strategy", choices=("default", "mirrored", "multi_worker"),
                     default="default", help="tf.distribute strategy")
    fit.set_defaults(func=run)
    return parser


def training_config_from_args(args):
    from keras_deconvnet.training import TrainingConfig

    config = {}
    if args.config:
        try:
            with open(args.config) as f:
                config = json.load(f)
        except (OSError, json.JSONDecodeError) as e:
            raise CommandError(f"cannot read --config {args.config}: {e}") from None
    for stage, epochs in (("stage1", args.stage1_epochs), ("stage2", args.stage2_epochs)):
        stage_config = dict(config.get(stage, {}))
        if epochs is not None:
            stage_config["epochs"] = epochs
        if args.steps_per_epoch is not None:
            stage_config["steps_per_epoch"] = args.steps_per_epoch
        stage_config.setdefault("steps_per_epoch", 100)
        if args.learning_rate is not None:
            stage_config["learning_rate"] = args.learning_rate
        config[stage] = stage_config
    if args.batch_size is not None:
        config["batch_size"] = args.batch_size
    if args.lr_schedule is not None:
        config["lr_schedule"] = args.lr_schedule
    try:
        return TrainingConfig.from_dict(config)
    except (TypeError, ValueError) as e:
        raise CommandError(f"bad training configuration: {e}") from None


def run(args) -> int:
    from keras_deconvnet.cli.evaluate import comparison_table
    from keras_deconvnet.evaluation import evaluate_methods
    from keras_deconvnet.recipes import train_recipe

    config = training_config_from_args(args)
    train, info = build_dataset(args, args.split)
    val = build_dataset(args, args.val_split)[0] if args.val_split else None
    result = train_recipe(
        train, val, info.num_classes, args.out, config, architecture=args.arch,
        preset=args.preset, crop_size=args.crop_size, model_path=args.model,
        vgg16_weights=args.vgg16_weights, strategy=args.strategy, seed=args.seed,
        class_names=info.class_names, palette=info.palette[: info.num_classes].tolist(),
    )
    summary = {
        "model": str(result.model_path),
        "train_seconds": round(result.train_seconds, 1),
        "training_config": config.to_dict(),
        "history": result.history,
    }
    if val is not None:
        evaluation = evaluate_methods(result.model, val.as_numpy_iterator(),
                                      info.num_classes, methods=("whole",),
                                      total=dataset_length(val))
        print(f"\nValidation ({args.dataset}/{args.val_split}, whole-image inference):")
        print(comparison_table(evaluation, ["whole"], info.class_names))
        summary["validation"] = evaluation["whole"]
    path = write_json(summary, f"{args.out}/train_summary.json")
    print(f"\nModel: {result.model_path}\nSummary: {path}\n"
          f"TensorBoard: tensorboard --logdir {args.out}")
    return 0
