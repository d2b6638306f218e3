"""`deconvnet train`: the two-stage recipe on a dataset, then a validation summary."""

from __future__ import annotations

import argparse
import hashlib
import json

from keras_deconvnet.atomic_io import write_json
from keras_deconvnet.cli import CommandError
from keras_deconvnet.cli.arguments import (
    add_dataset_args,
    build_dataset,
)

STRATEGIES = ("default", "mirrored", "multi_worker", "tpu")


_DESCRIPTION = (
    "Trains a DeconvNet (or FCN-8s) with the paper's two-stage recipe: stage 1 on "
    "object-centred crops, stage 2 on proposal crops (sliding windows, or "
    "EdgeBoxes files with --proposals-dir), then BatchNorm statistics recomputed "
    "over training batches. The defaults are the authors' Caffe solver: batches "
    "of 8 accumulated 8 times, SGD lr 0.01 (biases x2, not decayed), momentum "
    "0.9, weight decay 5e-4, lr x0.1 every 9000 (stage 1, 20000 updates) and "
    "10000 updates (stage 2, 40000). A killed run resumes where it stopped when "
    "started again with the same --out; a second run on the same --out is "
    "refused. Prints per-class IoU on the validation split and writes "
    "train_summary.json."
)

_EPILOG = (
    "Examples:\n"
    "  deconvnet train --out runs/shapes --crop-size 96 --stage1-epochs 4 \\\n"
    "      --stage2-epochs 4 --steps-per-epoch 40 --gradient-accumulation-steps 1\n"
    "  deconvnet train --dataset voc --data-dir VOCdevkit --sbd-dir SBD \\\n"
    "      --preset deconvnet_vgg16_voc --vgg16-weights imagenet --crop-size 224 \\\n"
    "      --proposals-dir edgeboxes/ --strategy mirrored --out runs/voc\n"
    "  deconvnet train --arch fcn8s --out runs/fcn  # the ensemble's partner\n"
    "  TF_CONFIG='{\"cluster\": {\"worker\": [\"host1:2222\", \"host2:2222\"]}, \\\n"
    "      \"task\": {\"type\": \"worker\", \"index\": 0}}' \\\n"
    "      deconvnet train --strategy multi_worker --out /shared/runs/voc ..."
)


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "train",
        help="two-stage training (object crops, then proposal crops), the authors' solver",
        description=_DESCRIPTION,
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--out", required=True, help="output directory (resumes if it exists)")
    _add_data_args(parser)
    _add_model_args(parser.add_argument_group("model"))
    fit = parser.add_argument_group("training (defaults: the authors' solver)")
    _add_solver_args(fit)
    _add_batchnorm_args(fit)
    _add_run_args(fit)
    parser.set_defaults(func=run)
    return parser


def _add_data_args(parser) -> None:
    add_dataset_args(parser, default_split="train")
    parser.add_argument("--val-split", default="val", help="validation split ('' for none)")
    parser.add_argument("--proposals-dir",
                        help="stage-2 proposals: a folder of per-image files <image_id>.txt/"
                        ".csv/.npy (EdgeBoxes output); default: sliding windows")
    parser.add_argument("--proposals-format", default="edgeboxes",
                        choices=("edgeboxes", "xywh", "yxyx"),
                        help="box format of --proposals-dir files (default: edgeboxes, "
                        "'x y w h [score]' 1-based as the MATLAB toolbox writes)")


def _add_model_args(model) -> None:
    model.add_argument("--arch", choices=("deconvnet", "fcn8s"), default="deconvnet")
    model.add_argument("--preset", default=None,
                       help="named configuration (see `deconvnet presets`); default: "
                       "deconvnet_edge_small or fcn8s_edge_small")
    model.add_argument("--model", help="continue training a preset directory or .keras file")
    model.add_argument("--vgg16-weights", help="'imagenet' or a VGG16 .h5 file for the encoder")
    model.add_argument("--decoder-init", choices=("caffe", "glorot"), default=None,
                       help="a new DeconvNet's decoder and BN initialisation (default: caffe, "
                       "the authors': gaussian 0.01, BN shift 0.001)")


def _add_solver_args(fit) -> None:
    fit.add_argument("--crop-size", type=int, default=224, help="training crop size")
    fit.add_argument("--stage1-epochs", type=int, default=None, help="default 20")
    fit.add_argument("--stage2-epochs", type=int, default=None, help="default 40")
    fit.add_argument("--steps-per-epoch", type=int, default=None,
                     help="batches per epoch, both stages (default 8000: 1000 updates)")
    fit.add_argument("--batch-size", type=int, default=None,
                     help="global batch, split across replicas (default 8)")
    fit.add_argument("--gradient-accumulation-steps", type=int, default=None,
                     help="batches per update, Caffe's iter_size (default 8; 1 for none)")
    fit.add_argument("--learning-rate", type=float, default=None, help="default 0.01")
    fit.add_argument("--lr-schedule", choices=("plateau", "step", "constant"), default=None,
                     help="default step")
    fit.add_argument("--stage1-lr-step-size", type=int, default=None,
                     help="updates between x0.1 steps in stage 1 (default 9000)")
    fit.add_argument("--stage2-lr-step-size", type=int, default=None,
                     help="the same in stage 2 (default 10000)")
    fit.add_argument("--bias-lr-multiplier", type=float, default=None, help="default 2")
    fit.add_argument("--bias-decay-multiplier", type=float, default=None, help="default 0")
    fit.add_argument("--class-balancing", choices=("none", "median_frequency"), default=None,
                     help="loss weights per class (default none, as the original)")


def _add_batchnorm_args(fit) -> None:
    fit.add_argument("--no-batchnorm-recompute", action="store_true",
                     help="keep Keras's moving averages instead of recomputing BN "
                     "statistics after the last stage")
    fit.add_argument("--batchnorm-batches", type=int, default=None, help="default 501")
    fit.add_argument("--batchnorm-batch-size", type=int, default=None, help="default 28")


def _add_run_args(fit) -> None:
    fit.add_argument("--config", help="a TrainingConfig JSON file; flags override it")
    fit.add_argument("--strategy", choices=STRATEGIES, default="default",
                     help="tf.distribute strategy; multi_worker reads TF_CONFIG (or Slurm's "
                     "variables inside srun); every worker runs the same command")


# Flags that set a TrainingConfig field as they are.
_FIELDS = {
    "batch_size": "batch_size",
    "gradient_accumulation_steps": "gradient_accumulation_steps",
    "lr_schedule": "lr_schedule",
    "bias_lr_multiplier": "bias_lr_multiplier",
    "bias_decay_multiplier": "bias_decay_multiplier",
    "batchnorm_batches": "batchnorm_batches",
    "batchnorm_batch_size": "batchnorm_batch_size",
}


def training_config_from_args(args):
    """The `TrainingConfig` of `--config` and the flags (flags win)."""
    from keras_deconvnet.training import TrainingConfig

    config = {}
    if args.config:
        try:
            with open(args.config) as f:
                config = json.load(f)
        except (OSError, json.JSONDecodeError) as e:
            raise CommandError(f"cannot read --config {args.config}: {e}") from None
        if not isinstance(config, dict):
            raise CommandError(f"--config {args.config} must hold a JSON object")
    for stage in ("stage1", "stage2"):
        stage_config = dict(config.get(stage, {}))
        for key, value in (("epochs", getattr(args, f"{stage}_epochs")),
                           ("steps_per_epoch", args.steps_per_epoch),
                           ("learning_rate", args.learning_rate),
                           ("lr_step_size", getattr(args, f"{stage}_lr_step_size"))):
            if value is not None:
                stage_config[key] = value
        config[stage] = stage_config
    for flag, field in _FIELDS.items():
        if getattr(args, flag) is not None:
            config[field] = getattr(args, flag)
    if args.no_batchnorm_recompute:
        config["recompute_batchnorm"] = False
    if args.class_balancing is not None:
        config["class_balancing"] = None if args.class_balancing == "none" else (
            args.class_balancing)
    try:
        return TrainingConfig.from_dict(config)
    except (TypeError, ValueError) as e:
        raise CommandError(f"bad training configuration: {e}") from None


def weights_digest(model) -> str:
    """SHA-256 of all the model's weights, in order: equal digests, equal weights."""
    import keras
    import numpy as np

    digest = hashlib.sha256()
    for weight in model.weights:
        digest.update(np.ascontiguousarray(keras.ops.convert_to_numpy(weight)).tobytes())
    return digest.hexdigest()


def run(args) -> int:
    from keras_deconvnet.training import CheckpointError, OutputDirLockedError, get_strategy
    from keras_deconvnet.training.distributed import worker_info

    config = training_config_from_args(args)
    try:
        # First, before any TensorFlow op: MultiWorkerMirroredStrategy (and a TPU
        # system) can only be set up at program start.
        strategy = get_strategy(args.strategy)
    except (RuntimeError, ValueError) as e:
        raise CommandError(str(e)) from None
    try:
        return _train(args, config, strategy)
    except (OutputDirLockedError, CheckpointError) as e:
        raise CommandError(str(e)) from None
    except _lost_worker_errors() as e:
        if worker_info(strategy)[2] < 2:
            raise
        reason = " ".join(str(e).split())[:200]
        raise CommandError(
            f"lost contact with another worker ({type(e).__name__}: {reason}); restart "
            f"every worker with the same command: they resume from the backups in {args.out}"
        ) from None


def _lost_worker_errors() -> tuple:
    # What a collective raises when a peer died or the network failed.
    import tensorflow as tf

    return (tf.errors.UnavailableError, tf.errors.AbortedError,
            tf.errors.DeadlineExceededError, tf.errors.CancelledError)


def _train(args, config, strategy) -> int:
    from keras_deconvnet.evaluation import comparison_table
    from keras_deconvnet.recipes import RecipeConfig, train_recipe
    from keras_deconvnet.training import is_chief
    from keras_deconvnet.training.distributed import worker_info

    train, info = build_dataset(args, args.split)
    val = build_dataset(args, args.val_split)[0] if args.val_split else None
    recipe = RecipeConfig(
        architecture=args.arch, preset=args.preset, crop_size=args.crop_size,
        model_path=args.model, vgg16_weights=args.vgg16_weights,
        decoder_initializer=args.decoder_init, proposals=_proposals(args), seed=args.seed,
    )
    result = train_recipe(train, val, info, args.out, config, recipe, strategy=strategy)
    task_type, task_id, workers = worker_info(strategy)
    worker = f"{task_type} {task_id}" if task_type else "single worker"
    # Every worker prints it: equal digests mean the workers ended with equal weights.
    print(f"Weights sha256 ({worker} of {workers}): {weights_digest(result.model)}")
    if not is_chief(strategy):
        return 0  # The chief evaluates and writes the summary.
    summary = {
        "model": str(result.model_path),
        "train_seconds": round(result.train_seconds, 1),
        "training_config": config.to_dict(),
        "history": result.history,
        "workers": workers,
    }
    if result.evaluation is not None:
        print(f"\nValidation ({args.dataset}/{args.val_split}, whole-image inference):")
        print(comparison_table(result.evaluation, ["whole"], info.class_names))
        summary["validation"] = result.evaluation["whole"]
    path = write_json(f"{args.out}/train_summary.json", summary)
    print(f"\nModel: {result.model_path}\nSummary: {path}\n"
          f"TensorBoard: tensorboard --logdir {args.out}")
    return 0


def _proposals(args):
    if not args.proposals_dir:
        return None
    from keras_deconvnet.recipes import stage2_proposals

    return stage2_proposals(args.proposals_dir, args.seed, args.proposals_format)
