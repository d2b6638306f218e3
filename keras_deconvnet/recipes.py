"""The paper's two-stage recipe assembled from the public API: data, model, fit, evaluate.

`train_recipe` is what `deconvnet train` and `deconvnet quickstart` run: it builds the
stage-1 (object-centred) and stage-2 (proposal: sliding windows, or EdgeBoxes files as
the paper) crop pipelines from a dataset in the common format, trains with
`train_two_stage` and saves the segmenter as a keras-hub preset. Each step is a
public function of its own, so a user who needs something else composes them
differently.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable
from pathlib import Path

import keras
import tensorflow as tf

from keras_deconvnet.data import (
    FileProposals,
    SlidingWindowProposals,
    stage1_crops,
    stage2_crops,
)

ARCHITECTURES = ("deconvnet", "fcn8s")


@dataclasses.dataclass
class RecipeResult:
    """What `train_recipe` produced: the segmenter, its preset directory, histories."""

    model: keras.Model
    model_path: Path
    history: dict
    evaluation: dict | None
    train_seconds: float


def stage2_proposals(proposals=None, seed: int = 0, box_format: str = "edgeboxes"):
    """The stage-2 proposal generator: sliding windows, files, or `proposals` itself.

    Args:
        proposals: `None` (sliding windows, seeded), a directory of per-image
            proposal files (`FileProposals`, e.g. EdgeBoxes output), or a
            generator, returned as is.
        seed: the sliding windows' seed.
        box_format: the files' box format (see `FileProposals`). Defaults to
            `"edgeboxes"` (`x y w h [score]`, 1-based, as the MATLAB toolbox).

    Returns:
        A callable `proposals(image, image_id=None) -> boxes`.

    Raises:
        FileNotFoundError: for a directory that does not exist.

    Example:

    >>> type(stage2_proposals(None)).__name__
    'SlidingWindowProposals'
    """
    if proposals is None:
        return SlidingWindowProposals(seed=seed)
    if isinstance(proposals, (str, os.PathLike)):
        return FileProposals(os.fspath(proposals), box_format=box_format)
    return proposals


def crop_datasets(
    train: tf.data.Dataset,
    crop_size: int,
    resize_size: int | None = None,
    batch_size: int = 8,
    seed: int = 0,
    shuffle_buffer: int = 256,
    iou_threshold: float = 0.5,
    proposals=None,
) -> tuple[tf.data.Dataset, tf.data.Dataset]:
    """Batched, shuffled, repeated stage-1 and stage-2 training crops of `train`.

    Stage 1: one object-centred crop per object (box x1.2, resize, random crop,
    flip). Stage 2: crops of proposals overlapping an object with IoU >=
    `iou_threshold`, every class labelled. The pipelines are deterministic for a
    seed (the same crops in the same order on every worker of a cluster).

    Args:
        train: examples in the common format (with `image_id` for file proposals).
        crop_size: side of the crops.
        resize_size: side windows are resized to before cropping; defaults to
            `crop_size * 250 / 224`, the original's 250 for 224.
        batch_size: the (global) batch size.
        seed: seed of the augmentation, shuffling and sliding windows.
        shuffle_buffer: examples in the shuffle buffer.
        iou_threshold: least IoU of a stage-2 proposal with an object.
        proposals: stage-2 proposals, see `stage2_proposals` (None: sliding
            windows; a directory: EdgeBoxes-format files).

    Returns:
        `(stage1, stage2)` infinite datasets of `(images, masks)` batches.

    Example:

    >>> from keras_deconvnet.data import synthetic_dataset
    >>> stage1, stage2 = crop_datasets(
    ...     synthetic_dataset(num_examples=2, image_size=(64, 64)), 32, batch_size=2)
    >>> tuple(next(iter(stage1))[0].shape)
    (2, 32, 32, 3)
    """
    resize_size = resize_size or round(crop_size * 250 / 224)
    train = train.cache()
    stage1 = stage1_crops(train, crop_size, resize_size, training=True, seed=seed)
    stage2 = stage2_crops(
        train, stage2_proposals(proposals, seed), iou_threshold=iou_threshold,
        crop_size=crop_size, resize_size=resize_size, training=True, seed=seed,
    )

    def finish(ds):
        return (ds.shuffle(shuffle_buffer, seed=seed).repeat()
                .batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE))

    return finish(stage1), finish(stage2)


def validation_crops(val: tf.data.Dataset, crop_size: int, batch_size: int = 8):
    """Whole validation images resized to the crop size, for the per-epoch mean IoU.

    Raw RGB: the segmenter's preprocessor runs inside `fit`.
    """

    def to_pair(example):
        image = tf.image.resize(example["image"], (crop_size, crop_size), "bilinear")
        mask = tf.image.resize(example["class_mask"][..., None], (crop_size, crop_size),
                               "nearest")[..., 0]
        return image, tf.cast(mask, tf.int32)

    return (val.map(to_pair, num_parallel_calls=tf.data.AUTOTUNE).cache()
            .batch(batch_size).prefetch(tf.data.AUTOTUNE))


DEFAULT_PRESETS = {"deconvnet": "deconvnet_edge_small", "fcn8s": "fcn8s_edge_small"}


def build_model_fn(
    architecture: str,
    preset: str | None,
    num_classes: int,
    crop_size: int,
    model_path: str | os.PathLike | None = None,
    vgg16_weights: str | None = None,
    class_names=None,
    palette=None,
    decoder_initializer: str | None = None,
) -> Callable[[], keras.Model]:
    """A function building the segmenter to train (inside a distribution strategy).

    A named configuration of `architecture` (default: its `_edge_small` one) at the
    crop size, with `num_classes` classes; or `model_path`, a preset directory or
    `.keras` file to continue from. `vgg16_weights` (`"imagenet"` or a path)
    initialises the encoder (and fc6/fc7 when their shapes are VGG16's, e.g.
    `deconvnet_vgg16_voc` or `fcn8s_vgg16_voc`).

    Args:
        architecture: `"deconvnet"` or `"fcn8s"`.
        preset: the named configuration (or preset directory) to build.
        num_classes: classes including background.
        crop_size: the training crop size (the model's input size).
        model_path: continue from this preset directory or `.keras` file.
        vgg16_weights: `"imagenet"` or a VGG16 `.h5` file, or None.
        class_names: recorded in the segmenter.
        palette: recorded in the segmenter.
        decoder_initializer: DeconvNet named configurations only: `"caffe"` or
            `"glorot"` (see `DeconvNetBackbone`); None keeps the default.

    Returns:
        A function of no arguments returning the segmenter.

    Raises:
        ValueError: on an unknown architecture, or a `decoder_initializer` for a
            model it does not apply to.

    Example:

    >>> build = build_model_fn("deconvnet", None, num_classes=3, crop_size=96)
    >>> build().output_shape
    (None, 96, 96, 3)
    """
    if architecture not in ARCHITECTURES:
        raise ValueError(
            f"`architecture` must be one of {ARCHITECTURES}. Received: {architecture!r}"
        )
    preset = preset or DEFAULT_PRESETS[architecture]
    if decoder_initializer is not None and (
        architecture != "deconvnet" or model_path or preset not in _named_configs()
    ):
        raise ValueError(
            "`decoder_initializer` applies to DeconvNet named configurations only "
            f"(a new model). Received: architecture={architecture!r}, preset={preset!r}, "
            f"model_path={model_path!r}"
        )

    def build():
        from keras_deconvnet.models import (
            DeconvNetBackbone,
            DeconvNetImageSegmenter,
            FCN8sImageSegmenter,
            load_segmenter,
            load_vgg16_weights,
        )

        if model_path:
            return load_segmenter(model_path)
        image_shape = (crop_size, crop_size, 3)
        task = dict(num_classes=num_classes, class_names=class_names, palette=palette)
        if decoder_initializer is not None:
            backbone = DeconvNetBackbone.from_preset(
                preset, image_shape=image_shape, decoder_initializer=decoder_initializer)
            segmenter = DeconvNetImageSegmenter(
                backbone, preprocessor=DeconvNetImageSegmenter.default_preprocessor(backbone),
                **task)
        else:
            cls = FCN8sImageSegmenter if architecture == "fcn8s" else DeconvNetImageSegmenter
            segmenter = cls.from_preset(preset, image_shape=image_shape, **task)
        if vgg16_weights:
            load_vgg16_weights(segmenter, vgg16_weights)
        return segmenter

    return build


def _named_configs() -> dict:
    from keras_deconvnet.models import preset_utils

    return preset_utils.named_configs()


def train_recipe(
    train: tf.data.Dataset,
    val: tf.data.Dataset | None,
    num_classes: int,
    output_dir: str | os.PathLike,
    training_config,
    architecture: str = "deconvnet",
    preset: str | None = None,
    crop_size: int = 224,
    model_path: str | None = None,
    vgg16_weights: str | None = None,
    strategy: str | tf.distribute.Strategy = "default",
    seed: int = 0,
    class_names=None,
    palette=None,
    proposals=None,
    decoder_initializer: str | None = None,
) -> RecipeResult:
    """Two-stage training of a model on a dataset in the common format, then saving.

    For `strategy="multi_worker"` create the strategy first
    (`keras_deconvnet.training.get_strategy("multi_worker")`), before building
    `train`, and pass the instance. Under a multi-worker strategy every worker
    trains on its slice of each batch; only the chief writes (its preset included).

    Args:
        train: training examples (dicts in the common format).
        val: validation examples, or None.
        num_classes: classes including background.
        output_dir: where checkpoints, logs and the trained `preset/` go.
        training_config: a `keras_deconvnet.training.TrainingConfig` (or dict).
        architecture: `"deconvnet"` or `"fcn8s"`.
        preset: the named configuration to build (ignored with `model_path`);
            defaults to the architecture's `_edge_small` one.
        crop_size: training crop size (the paper: 224).
        model_path: continue from a saved `.keras` model instead of building one.
        vgg16_weights: `"imagenet"` or a path: initialise the encoder from VGG16.
        strategy: a strategy name (see `get_strategy`) or instance.
        seed: seed of the augmentation and the proposals.
        class_names: the dataset's, recorded in the segmenter.
        palette: the dataset's, recorded in the segmenter.
        proposals: stage-2 proposals: None (sliding windows), a directory of
            EdgeBoxes-format files (`FileProposals`), or a generator.
        decoder_initializer: `"caffe"` / `"glorot"` for a new DeconvNet, or None
            (the backbone's default, `"caffe"`).

    Returns:
        A `RecipeResult`.

    Raises:
        ValueError: on a bad configuration.
        OutputDirLockedError: when another run holds `output_dir`.

    Example:

    >>> from keras_deconvnet.data import synthetic_dataset  # doctest: +SKIP
    >>> result = train_recipe(synthetic_dataset("train", 8), None, 6, "runs/x",
    ...                       {"stage1": {"epochs": 1}}, crop_size=96)  # doctest: +SKIP
    """
    from keras_deconvnet.training import TrainingConfig, get_strategy, is_chief, train_two_stage

    strategy = get_strategy(strategy)
    if isinstance(training_config, dict):
        training_config = TrainingConfig.from_dict(training_config)
    output_dir = Path(output_dir)
    keras.utils.set_random_seed(seed)
    build = build_model_fn(architecture, preset, num_classes, crop_size, model_path,
                           vgg16_weights, class_names, palette, decoder_initializer)
    stage1, stage2 = crop_datasets(train, crop_size, batch_size=training_config.batch_size,
                                   seed=seed, proposals=proposals)
    validation = validation_crops(val, crop_size) if val is not None else None
    start = time.perf_counter()
    model, history = train_two_stage(
        build, stage1, stage2, validation, str(output_dir), training_config,
        strategy=strategy,
    )
    seconds = time.perf_counter() - start
    preset_dir = output_dir / "preset"
    if is_chief(strategy):
        preset_dir = model.save_to_preset(
            preset_dir, overwrite=True,
            training_data={"examples": int(train.cardinality()), "crop_size": crop_size,
                           "seed": seed},
            description=f"{architecture} trained with the two-stage recipe",
        )
    return RecipeResult(model, preset_dir, history, None, seconds)
