"""The paper's two-stage recipe assembled from the public API: data, model, fit, evaluate.

`train_recipe` is what `deconvnet train` and `deconvnet quickstart` run: it builds the
stage-1 (object-centred) and stage-2 (proposal) crop pipelines from a dataset in the
common format, trains with `train_two_stage` and saves the segmenter as a keras-hub
preset. Each step is a public function of its own, so
a user who needs something else composes them differently.
"""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path

import keras
import tensorflow as tf

from keras_deconvnet.data import SlidingWindowProposals, stage1_crops, stage2_crops

ARCHITECTURES = ("deconvnet", "fcn8s")


@dataclasses.dataclass
class RecipeResult:
    """What `train_recipe` produced: the segmenter, its preset directory, histories."""

    model: keras.Model
    model_path: Path
    history: dict
    evaluation: dict | None
    train_seconds: float


def crop_datasets(
    train: tf.data.Dataset,
    crop_size: int,
    resize_size: int | None = None,
    batch_size: int = 8,
    seed: int = 0,
    shuffle_buffer: int = 256,
    iou_threshold: float = 0.5,
) -> tuple[tf.data.Dataset, tf.data.Dataset]:
    """Batched, shuffled, repeated stage-1 and stage-2 training crops of `train`.

    Stage 1: one object-centred crop per object (box x1.2, resize, random crop,
    flip). Stage 2: crops of sliding-window proposals overlapping an object with
    IoU >= `iou_threshold`, every class labelled.
    """
    resize_size = resize_size or round(crop_size * 250 / 224)
    train = train.cache()
    stage1 = stage1_crops(train, crop_size, resize_size, training=True, seed=seed)
    stage2 = stage2_crops(
        train, SlidingWindowProposals(seed=seed), iou_threshold=iou_threshold,
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
):
    """A function building the segmenter to train (inside a distribution strategy).

    A named configuration of `architecture` (default: its `_edge_small` one) at the
    crop size, with `num_classes` classes; or `model_path`, a preset directory or
    `.keras` file to continue from. `vgg16_weights` (`"imagenet"` or a path)
    initialises the encoder (and fc6/fc7 when their shapes are VGG16's).
    """
    if architecture not in ARCHITECTURES:
        raise ValueError(
            f"`architecture` must be one of {ARCHITECTURES}. Received: {architecture!r}"
        )

    def build():
        from keras_deconvnet.models import (
            DeconvNetImageSegmenter,
            FCN8sImageSegmenter,
            load_segmenter,
            load_vgg16_weights,
        )

        if model_path:
            return load_segmenter(model_path)
        cls = FCN8sImageSegmenter if architecture == "fcn8s" else DeconvNetImageSegmenter
        segmenter = cls.from_preset(
            preset or DEFAULT_PRESETS[architecture], num_classes=num_classes,
            image_shape=(crop_size, crop_size, 3), class_names=class_names,
            palette=palette,
        )
        if vgg16_weights:
            load_vgg16_weights(segmenter, vgg16_weights)
        return segmenter

    return build


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
    strategy: str = "default",
    seed: int = 0,
    class_names=None,
    palette=None,
) -> RecipeResult:
    """Two-stage training of a model on a dataset in the common format, then saving.

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
        strategy: `"default"`, `"mirrored"` or `"multi_worker"`.
        seed: seed of the augmentation and the proposals.
        class_names, palette: the dataset's, recorded in the segmenter.

    Returns:
        A `RecipeResult`.
    """
    from keras_deconvnet.training import TrainingConfig, train_two_stage

    if isinstance(training_config, dict):
        training_config = TrainingConfig.from_dict(training_config)
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(seed)
    stage1, stage2 = crop_datasets(train, crop_size, batch_size=training_config.batch_size,
                                   seed=seed)
    validation = validation_crops(val, crop_size) if val is not None else None
    start = time.perf_counter()
    model, history = train_two_stage(
        build_model_fn(architecture, preset, num_classes, crop_size, model_path,
                       vgg16_weights, class_names, palette),
        stage1, stage2, validation, str(output_dir), training_config, strategy=strategy,
    )
    seconds = time.perf_counter() - start
    preset = model.save_to_preset(
        output_dir / "preset", overwrite=True,
        training_data={"examples": int(train.cardinality()), "crop_size": crop_size,
                       "seed": seed},
        description=f"{architecture} trained with the two-stage recipe",
    )
    return RecipeResult(model, preset, history, None, seconds)
