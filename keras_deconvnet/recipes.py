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
from keras_deconvnet.data.crops import Stage2CropConfig

ARCHITECTURES = ("deconvnet", "fcn8s")


DEFAULT_PRESETS = {"deconvnet": "deconvnet_edge_small", "fcn8s": "fcn8s_edge_small"}


@dataclasses.dataclass
class RecipeConfig:
    """What `train_recipe` trains and how it evaluates (the optimisation settings are
    `TrainingConfig`'s).

    Args:
        architecture: `"deconvnet"` or `"fcn8s"`.
        preset: the named configuration to build; defaults to the architecture's
            `_edge_small` one (ignored with `model_path`).
        crop_size: training crop size (the paper: 224), the model's input size.
        model_path: continue from a preset directory or `.keras` file.
        vgg16_weights: `"imagenet"` or a VGG16 `.h5` file for the encoder (and
            fc6/fc7 when their shapes are VGG16's).
        decoder_initializer: DeconvNet named configurations only: `"caffe"` or
            `"glorot"`; None keeps the backbone's default (`"caffe"`).
        proposals: stage-2 proposals: None (sliding windows), a directory of
            EdgeBoxes-format files, or a generator (see `stage2_proposals`).
        seed: seed of the augmentation and the sliding windows.
        evaluate: inference methods evaluated on the validation split after
            training (`keras_deconvnet.evaluation.METHODS`); `()` skips it.
    """

    architecture: str = "deconvnet"
    preset: str | None = None
    crop_size: int = 224
    model_path: str | os.PathLike | None = None
    vgg16_weights: str | None = None
    decoder_initializer: str | None = None
    proposals: object = None
    seed: int = 0
    evaluate: tuple = ("whole",)

    def __post_init__(self):
        if self.architecture not in ARCHITECTURES:
            raise ValueError(
                f"`architecture` must be one of {ARCHITECTURES}. "
                f"Received: {self.architecture!r}"
            )
        self.preset = self.preset or DEFAULT_PRESETS[self.architecture]
        if self.decoder_initializer is not None and (
            self.architecture != "deconvnet" or self.model_path
            or self.preset not in _named_configs()
        ):
            raise ValueError(
                "`decoder_initializer` applies to DeconvNet named configurations only "
                f"(a new model). Received: architecture={self.architecture!r}, "
                f"preset={self.preset!r}, model_path={self.model_path!r}"
            )
        self.evaluate = tuple(self.evaluate)


@dataclasses.dataclass
class RecipeResult:
    """What `train_recipe` produced: the segmenter, its preset directory, the
    histories, the validation evaluation (`evaluate_methods`' result, or None) and
    the training time."""

    model: keras.Model
    model_path: Path
    history: dict
    evaluation: dict | None
    train_seconds: float


@dataclasses.dataclass
class QuickstartConfig:
    """`deconvnet quickstart`'s settings: the paper's recipe at a size that trains in
    minutes on two CPU cores, on the built-in synthetic shapes.

    Args:
        preset: the model's named configuration.
        image_size: synthetic image size (square).
        crop_size: training crop size, the model's input size.
        train_examples, val_examples: synthetic images per split.
        stage1_epochs, stage2_epochs: epochs of `steps_per_epoch` updates.
        steps_per_epoch: updates per epoch.
        learning_rate: SGD's base rate (biases get twice it).
        top_n: proposal windows run per image (the paper's 50).
        seed: data, augmentation and initialisation seed.

    Example:

    >>> config = QuickstartConfig(seed=1)
    >>> config.training_config().gradient_accumulation_steps is None
    True
    >>> config.inference_config().score_mode
    'probabilities'
    """

    preset: str = "deconvnet_edge_small"
    image_size: int = 128
    crop_size: int = 96
    train_examples: int = 512
    val_examples: int = 48
    stage1_epochs: int = 5
    stage2_epochs: int = 15
    steps_per_epoch: int = 100
    learning_rate: float = 0.05
    top_n: int = 50
    seed: int = 0

    def training_config(self):
        """The paper's recipe at quickstart scale: one batch of 8 per update (no 8x8
        accumulation), the step schedule dropping the rate 10x for stage 2's last
        third, BN statistics recomputed over 50 batches."""
        from keras_deconvnet.training import TrainingConfig

        stage = {"steps_per_epoch": self.steps_per_epoch, "learning_rate": self.learning_rate}
        stage2_updates = self.stage2_epochs * self.steps_per_epoch
        return TrainingConfig(
            stage1={**stage, "epochs": self.stage1_epochs, "lr_step_size": 10**9},
            stage2={**stage, "epochs": self.stage2_epochs,
                    "lr_step_size": max(1, (2 * stage2_updates) // 3)},
            batch_size=8, gradient_accumulation_steps=None,
            batchnorm_batches=50, batchnorm_batch_size=8,
        )

    def inference_config(self):
        """Proposal inference that suits the synthetic shapes: a softmax per window
        over tight windows, every window run (over 3 seeds: +10 to +12 points of mean
        IoU over whole-image inference; the authors' raw-score maximum over 1.2x
        windows, `deconvnet evaluate`'s default, gave -3 to +7 here: the README's
        "What was measured")."""
        from keras_deconvnet.inference.config import InferenceConfig

        return InferenceConfig(top_n=self.top_n, score_mode="probabilities", context=1.0,
                               min_box_size=0, fcn_input_size=self.image_size)

    def recipe(self, architecture: str = "deconvnet") -> RecipeConfig:
        """The `RecipeConfig` of one architecture (`fcn8s` gets its `_edge_small`)."""
        preset = self.preset if architecture == "deconvnet" else None
        return RecipeConfig(architecture=architecture, preset=preset,
                            crop_size=self.crop_size, seed=self.seed, evaluate=())

    def datasets(self) -> tuple:
        """The synthetic `(train, val)` datasets."""
        from keras_deconvnet.data import synthetic_dataset

        size = (self.image_size, self.image_size)
        return (synthetic_dataset("train", self.train_examples, size, seed=self.seed),
                synthetic_dataset("val", self.val_examples, size, seed=self.seed))


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
        train, stage2_proposals(proposals, seed),
        Stage2CropConfig(iou_threshold=iou_threshold, crop_size=crop_size,
                         resize_size=resize_size, training=True, seed=seed),
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


def build_model_fn(
    recipe: RecipeConfig, num_classes: int, class_names=None, palette=None
) -> Callable[[], keras.Model]:
    """A function building the segmenter to train (inside a distribution strategy).

    The named configuration `recipe.preset` at the crop size with `num_classes`
    classes, or the model at `recipe.model_path`; `recipe.vgg16_weights`
    initialises the encoder.

    Args:
        recipe: a `RecipeConfig`.
        num_classes: classes including background.
        class_names: recorded in the segmenter.
        palette: recorded in the segmenter.

    Returns:
        A function of no arguments returning the segmenter.

    Example:

    >>> build = build_model_fn(RecipeConfig(crop_size=96), num_classes=3)
    >>> build().output_shape
    (None, 96, 96, 3)
    """

    def build():
        from keras_deconvnet.models import (
            DeconvNetBackbone,
            DeconvNetImageSegmenter,
            FCN8sImageSegmenter,
            load_segmenter,
            load_vgg16_weights,
        )

        if recipe.model_path:
            return load_segmenter(recipe.model_path)
        image_shape = (recipe.crop_size, recipe.crop_size, 3)
        if recipe.architecture == "fcn8s":
            # Fully convolutional: trained on crops, run on the whole (padded) image.
            image_shape = (None, None, 3)
        task = dict(class_names=class_names, palette=palette)
        if recipe.decoder_initializer is not None:
            backbone = DeconvNetBackbone.from_preset(
                recipe.preset, image_shape=image_shape,
                decoder_initializer=recipe.decoder_initializer,
            )
            segmenter = DeconvNetImageSegmenter.from_backbone(backbone, num_classes, **task)
        else:
            cls = (FCN8sImageSegmenter if recipe.architecture == "fcn8s"
                   else DeconvNetImageSegmenter)
            segmenter = cls.from_preset(recipe.preset, image_shape=image_shape,
                                        num_classes=num_classes, **task)
        if recipe.vgg16_weights:
            load_vgg16_weights(segmenter, recipe.vgg16_weights)
        return segmenter

    return build


def _named_configs() -> dict:
    from keras_deconvnet.models import preset_utils

    return preset_utils.named_configs()


def train_recipe(
    train: tf.data.Dataset,
    val: tf.data.Dataset | None,
    dataset_info,
    output_dir: str | os.PathLike,
    training_config=None,
    recipe: RecipeConfig | None = None,
    strategy: str | tf.distribute.Strategy = "default",
) -> RecipeResult:
    """Two-stage training on a dataset in the common format, saving, evaluation.

    Builds the stage-1 and stage-2 crop pipelines, trains with `train_two_stage`,
    saves the segmenter as a keras-hub preset in `output_dir/preset`, and evaluates
    `recipe.evaluate` on `val` (VOC rules, each image at its own size).

    For `strategy="multi_worker"` create the strategy first
    (`keras_deconvnet.training.get_strategy("multi_worker")`), before building
    `train`, and pass the instance. Under a multi-worker strategy every worker
    trains on its slice of each batch; only the chief writes and evaluates.

    Args:
        train: training examples (dicts in the common format).
        val: validation examples, or None.
        dataset_info: a `keras_deconvnet.data.DatasetInfo` (class names, palette).
        output_dir: where checkpoints, logs and the trained `preset/` go.
        training_config: a `TrainingConfig`, a dict, or None (the paper's).
        recipe: a `RecipeConfig` (what to train); None for its defaults.
        strategy: a strategy name (see `get_strategy`) or instance.

    Returns:
        A `RecipeResult`.

    Raises:
        ValueError: on a bad configuration.
        OutputDirLockedError: when another run holds `output_dir`.

    Example:

    >>> from keras_deconvnet.data import SYNTHETIC_INFO, synthetic_dataset  # doctest: +SKIP
    >>> result = train_recipe(synthetic_dataset("train", 8), None, SYNTHETIC_INFO,
    ...                       "runs/x", {"stage1": {"epochs": 1}},
    ...                       RecipeConfig(crop_size=96))  # doctest: +SKIP
    """
    from keras_deconvnet.training import get_strategy, is_chief, train_two_stage
    from keras_deconvnet.training.config import as_training_config

    recipe = recipe or RecipeConfig()
    strategy = get_strategy(strategy)
    training_config = as_training_config(training_config)
    output_dir = Path(output_dir)
    keras.utils.set_random_seed(recipe.seed)
    build = build_model_fn(recipe, dataset_info.num_classes, dataset_info.class_names,
                           dataset_info.palette[: dataset_info.num_classes].tolist())

    def crops(stage: int):
        # Functions, not datasets: each use gets a new pipeline in its initial
        # random state, which is what makes a resumed run exact.
        return lambda: crop_datasets(train, recipe.crop_size,
                                     batch_size=training_config.batch_size,
                                     seed=recipe.seed, proposals=recipe.proposals)[stage]

    stage1, stage2 = crops(0), crops(1)
    validation = validation_crops(val, recipe.crop_size) if val is not None else None
    start = time.perf_counter()
    model, history = train_two_stage(build, stage1, stage2, validation, str(output_dir),
                                     training_config, strategy=strategy)
    seconds = time.perf_counter() - start
    preset_dir = output_dir / "preset"
    if not is_chief(strategy):
        return RecipeResult(model, preset_dir, history, None, seconds)
    preset_dir = model.save_to_preset(
        preset_dir, overwrite=True,
        training_data={"examples": int(train.cardinality()), "crop_size": recipe.crop_size,
                       "seed": recipe.seed},
        description=f"{recipe.architecture} trained with the two-stage recipe",
    )
    evaluation = None
    if val is not None and recipe.evaluate:
        evaluation = _evaluate(model, preset_dir, val, dataset_info, recipe, strategy)
    return RecipeResult(model, preset_dir, history, evaluation, seconds)


def _evaluate(model, preset_dir, val, dataset_info, recipe, strategy) -> dict:
    from keras_deconvnet.evaluation import evaluate_methods
    from keras_deconvnet.training.distributed import needs_custom_loop

    if needs_custom_loop(strategy):
        # Evaluated alone, outside the cluster (predict would need every worker).
        from keras_deconvnet.models import load_segmenter

        model = load_segmenter(str(preset_dir))
    cardinality = int(val.cardinality())
    return evaluate_methods(model, val.as_numpy_iterator(), dataset_info.num_classes,
                            methods=recipe.evaluate,
                            total=cardinality if cardinality >= 0 else None)
