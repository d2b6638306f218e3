"""Arguments and loaders shared by the `deconvnet` commands: models, datasets, JSON."""

from __future__ import annotations

import argparse

from keras_deconvnet.cli import CommandError

DATASETS = ("synthetic", "voc", "pets")


def add_model_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("model")
    group.add_argument(
        "--model",
        help="a trained model: a preset directory (keras-hub's, e.g. written by "
        "`deconvnet quickstart` or `convert-caffe`), a kaggle:// / hf:// handle, or a "
        ".keras file",
    )
    group.add_argument(
        "--preset",
        help="an untrained named configuration when no --model is given "
        "(see `deconvnet presets`)",
    )
    group.add_argument("--num-classes", type=int, default=None,
                       help="classes of a --preset model (default: the dataset's)")


def load_model(args, num_classes: int | None = None, image_shape=None):
    """The segmenter named by `--model` (preset, handle or `.keras`) or `--preset`."""
    from keras_deconvnet.models import load_segmenter

    source = getattr(args, "model", None) or getattr(args, "preset", None)
    if not source:
        raise CommandError("give a model: --model PRESET_DIR (or .keras) or --preset NAME")
    kwargs = {}
    if getattr(args, "model", None) is None:
        classes = getattr(args, "num_classes", None) or num_classes
        if classes is not None:
            kwargs["num_classes"] = classes
        if image_shape is not None:
            kwargs["image_shape"] = image_shape
    elif getattr(args, "num_classes", None) is not None:
        raise CommandError("--num-classes applies to --preset only")
    return load_segmenter(source, **kwargs)


def add_dataset_args(parser: argparse.ArgumentParser, default_split: str = "val") -> None:
    group = parser.add_argument_group("data")
    group.add_argument("--dataset", choices=DATASETS, default="synthetic",
                       help="synthetic (built in), voc (VOCdevkit on disk), pets (TFDS)")
    group.add_argument("--data-dir", help="VOCdevkit directory (voc) or TFDS data_dir (pets)")
    group.add_argument("--sbd-dir", help="SBD directory to add to VOC training (voc)")
    group.add_argument("--split", default=default_split, help="dataset split")
    group.add_argument("--num-examples", type=int, default=None,
                       help="use only the first N examples")
    group.add_argument("--image-size", type=int, default=128,
                       help="synthetic images' size (synthetic only)")
    group.add_argument("--seed", type=int, default=0, help="seed of the synthetic data")


def dataset_length(dataset) -> int | None:
    """Number of examples when known (for progress bars), else None."""
    cardinality = int(dataset.cardinality())
    return cardinality if cardinality >= 0 else None


def build_dataset(args, split: str | None = None):
    """`(dataset, DatasetInfo)` for the command's `--dataset` arguments."""
    from keras_deconvnet import data

    split = split or args.split
    if args.dataset == "synthetic":
        if split not in ("train", "val"):
            raise CommandError(f"the synthetic data has splits train and val, not {split!r}")
        count = args.num_examples or (512 if split == "train" else 64)
        import tensorflow as tf

        ds = data.synthetic_dataset(
            split, count, image_size=(args.image_size, args.image_size), seed=args.seed
        ).apply(tf.data.experimental.assert_cardinality(count))
        return ds, data.SYNTHETIC_INFO
    if args.dataset == "voc":
        if not args.data_dir:
            raise CommandError("--dataset voc needs --data-dir pointing at VOCdevkit")
        ds = data.voc_dataset(args.data_dir, split, sbd_root=args.sbd_dir)
        info = data.VOC_INFO
    else:
        ds = data.pets_dataset(split, data_dir=args.data_dir, download=False)
        info = data.pets_info()
    if args.num_examples:
        ds = ds.take(args.num_examples)
    return ds, info


def add_inference_args(parser: argparse.ArgumentParser) -> None:
    """Proposal, aggregation and ensemble flags (defaults: `InferenceConfig`'s, the
    authors' inference)."""
    from keras_deconvnet.inference.config import (
        AGGREGATIONS,
        ENSEMBLE_MODES,
        RESAMPLINGS,
        SCORE_MODES,
        InferenceConfig,
    )

    defaults = InferenceConfig()
    group = parser.add_argument_group("inference (defaults: the authors' code)")
    group.add_argument("--proposals-dir",
                       help="precomputed proposals, one file per image id (EdgeBoxes' "
                       "output, as the paper, or the authors' <id>.mat cache of "
                       "boxes_padded); default: built-in sliding windows")
    group.add_argument("--proposals-format",
                       choices=("auto", "edgeboxes", "xywh", "yxyx", "boxes_padded"),
                       default="auto",
                       help="columns of the proposal files (edgeboxes: x y w h score, "
                       "1-based, as EdgeBoxes' MATLAB toolbox writes them; boxes_padded: "
                       "the authors' .mat cache, extended already, so --context is not "
                       "applied; auto: boxes_padded when the folder holds .mat files, "
                       "else edgeboxes)")
    group.add_argument("--top-n", type=int, default=defaults.top_n,
                       help="windows actually run per image, after the size filter "
                       f"({defaults.top_n})")
    group.add_argument("--min-box-size", type=float, default=defaults.min_box_size,
                       help="skip windows with a shorter side under this many pixels "
                       "(default: half the network input, 112 at 224)")
    group.add_argument("--context", type=float, default=defaults.context,
                       help=f"proposal enlargement, as the training crops ({defaults.context})")
    group.add_argument("--score-mode", choices=SCORE_MODES, default=defaults.score_mode,
                       help="aggregate raw scores on a zero canvas (the authors') or "
                       "a softmax per window")
    group.add_argument("--aggregation", choices=AGGREGATIONS, default=defaults.aggregation)
    group.add_argument("--resampling", choices=RESAMPLINGS, default=defaults.resampling,
                       help="crops and score maps resized as MATLAB's imresize (the "
                       "authors', antialiased when shrinking) or plain bilinear")
    group.add_argument("--ensemble-mode", choices=ENSEMBLE_MODES,
                       default=defaults.ensemble_mode,
                       help="deconvnet * max(0, fcn) on raw scores (the authors' code) or "
                       "the mean of probabilities (the paper's text)")
    group.add_argument("--fcn-input-size", type=int, default=defaults.fcn_input_size,
                       help="the ensemble's FCN-8s sees the image zero-padded to this "
                       f"square size (the authors' {defaults.fcn_input_size}, VOC's largest "
                       "side)")


def inference_config_from_args(args):
    """An `InferenceConfig` from `add_inference_args` flags."""
    import os

    from keras_deconvnet.data import FileProposals, PaddedBoxProposals
    from keras_deconvnet.inference import InferenceConfig

    proposals = None
    directory = getattr(args, "proposals_dir", None)
    if directory:
        box_format = getattr(args, "proposals_format", "auto")
        if box_format == "auto":
            has_mat = os.path.isdir(directory) and any(
                name.endswith(".mat") for name in os.listdir(directory))
            box_format = "boxes_padded" if has_mat else "edgeboxes"
        try:
            if box_format == "boxes_padded":
                proposals = PaddedBoxProposals(directory)
            else:
                proposals = FileProposals(directory, box_format=box_format)
        except (FileNotFoundError, ValueError) as e:
            raise CommandError(str(e)) from None
    try:
        return InferenceConfig(
            proposals=proposals, top_n=args.top_n, min_box_size=args.min_box_size,
            context=args.context, score_mode=args.score_mode,
            aggregation=args.aggregation, ensemble_mode=args.ensemble_mode,
            fcn_input_size=args.fcn_input_size,
            resampling=getattr(args, "resampling", "matlab"),
        )
    except ValueError as e:
        raise CommandError(str(e)) from None
