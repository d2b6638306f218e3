"""The paper's two-stage training (Noh et al. 2015, section 4.2), as the authors ran it.

Stage 1 trains on object-centred crops (only the centred object labelled), stage 2
continues from stage 1's weights on proposal crops with every class labelled, then
BatchNorm statistics are recomputed over training batches. The defaults are the
authors' Caffe solver and scripts (HyeonwooNoh/DeconvNet, `training/`): batches of
8 accumulated 8 times (64 per update), SGD with momentum 0.9, learning rate 0.01
(biases x2, not decayed), weight decay 0.0005, the learning rate x0.1 every 9000
updates of 20000 (stage 1) and every 10000 of 40000 (stage 2), softmax
cross-entropy ignoring label 255, and BN statistics from 501 batches of 28 after
stage 2. Each is a `TrainingConfig` field.

`train_two_stage` is restartable: kill it at any point (inside a stage, between
stages, during the BN recomputation) and run it again with the same `output_dir`:
every stage still runs all its epochs. A second run on the same directory stops at
once with a one-line error (an exclusive lock). Layout of `output_dir`:

```
.lock                        held while a run is going (flock; released on exit)
config.json                  the TrainingConfig used
stage1/ stage2/
    backup/                  ckpt-NNNNNN.weights.h5 + .json: the two newest epoch
                             backups (weights and optimizer); removed when done
    last.weights.h5          weights after the latest epoch (atomic)
    best.weights.h5          weights of the best epoch by `checkpoint_monitor`
    best.json                {"monitor", "value", "epoch"}
    final.weights.h5         weights at the end of the stage
    class_weights.json       the stage's class weights (with class balancing)
    history.csv              one row per epoch (kept across restarts, atomic)
    COMPLETE.json            written when the stage finished: the stage is skipped
                             on a rerun and its final weights are loaded instead
    batchnorm/               (last stage) its final weights with BN statistics
        final.weights.h5     recomputed, and COMPLETE.json
logs/stage1/ logs/stage2/    TensorBoard
final.weights.h5             weights at the end of training
```

Under a multi-worker strategy only the chief writes; the other workers read the
chief's files when they resume (so `output_dir` must be on a filesystem all workers
see), and train with `DistributedLoop` instead of `fit`
(`keras_deconvnet.training.distributed`).
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
import math
import os
import shutil
import warnings
from collections.abc import Callable, Sequence

import keras
import tensorflow as tf

from keras_deconvnet import atomic_io, private_apis
from keras_deconvnet.labels import IGNORE_LABEL
from keras_deconvnet.metrics import MeanIoU
from keras_deconvnet.training.batchnorm import (
    batchnorm_layers,
    recompute_batchnorm_statistics,
)
from keras_deconvnet.training.callbacks import (
    AtomicCheckpoint,
    CheckpointError,
    EpochBackup,
    HistoryLogger,
    OutputDirLock,
    atomic_save_weights,
    load_first_readable,
    read_history,
    read_json_file,
)
from keras_deconvnet.training.distributed import (
    STRATEGIES,
    DistributedLoop,
    get_strategy,
    is_chief,
    needs_custom_loop,
)
from keras_deconvnet.training.losses import ClassWeightedCrossentropy, median_frequency_weights
from keras_deconvnet.training.optimizers import build_optimizer

__all__ = [
    "STRATEGIES",
    "StageConfig",
    "TrainingConfig",
    "compile_for_training",
    "get_strategy",
    "train_two_stage",
]

LR_SCHEDULES = ("plateau", "step", "constant")
ENGINES = ("auto", "fit", "loop")
CLASS_BALANCING = (None, "median_frequency")


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclasses.dataclass
class StageConfig:
    """Length and learning rate of one training stage.

    Args:
        epochs: epochs to train; `0` skips the stage.
        steps_per_epoch: batches per epoch; `None` for one pass over the dataset.
            Needed for infinite (repeated) datasets. With gradient accumulation an
            epoch makes `steps_per_epoch / gradient_accumulation_steps` updates.
        learning_rate: initial learning rate. Defaults to `0.01`.
        lr_step_size: optimizer *updates* between x`lr_decay_factor` steps when
            `TrainingConfig.lr_schedule == "step"` (the original solver: 9000 in
            stage 1, 10000 in stage 2); `None` keeps the rate constant.
        validation_steps: validation batches per epoch; `None` for the whole set.

    Raises:
        ValueError: from `validate`, naming the field.

    Example:

    >>> StageConfig(epochs=2, steps_per_epoch=16).validate("stage1")
    """

    epochs: int = 20
    steps_per_epoch: int | None = None
    learning_rate: float = 0.01
    lr_step_size: int | None = None
    validation_steps: int | None = None

    def validate(self, name: str) -> None:
        """Raises `ValueError` naming `name.field` for a bad value."""
        if not _is_int(self.epochs) or self.epochs < 0:
            raise ValueError(
                f"`{name}.epochs` must be an int >= 0 (0 skips the stage). "
                f"Received: epochs={self.epochs!r}"
            )
        for field in ("steps_per_epoch", "lr_step_size", "validation_steps"):
            value = getattr(self, field)
            if value is not None and (not _is_int(value) or value < 1):
                raise ValueError(
                    f"`{name}.{field}` must be None or an int >= 1. "
                    f"Received: {field}={value!r}"
                )
        if isinstance(self.learning_rate, bool) or not isinstance(
            self.learning_rate, (int, float)
        ) or not self.learning_rate > 0:
            raise ValueError(
                f"`{name}.learning_rate` must be a float > 0. "
                f"Received: learning_rate={self.learning_rate!r}"
            )


# The original solvers (training/00{1,2}_stage_*/solver.prototxt): max_iter 20000 and
# 40000 updates of iter_size 8 batches, stepsize 9000 and 10000. An epoch here is 1000
# updates (8000 batches of 8), so 20 and 40 epochs.
ORIGINAL_STEPS_PER_EPOCH = 8000


def default_stage(name: str) -> StageConfig:
    """The original solver's length and schedule of stage `name` ("stage1"/"stage2")."""
    if name == "stage1":
        return StageConfig(epochs=20, steps_per_epoch=ORIGINAL_STEPS_PER_EPOCH,
                           lr_step_size=9000)
    return StageConfig(epochs=40, steps_per_epoch=ORIGINAL_STEPS_PER_EPOCH,
                       lr_step_size=10000)


@dataclasses.dataclass
class TrainingConfig:
    """Hyper-parameters of `train_two_stage`; the defaults are the authors' code's.

    Args:
        stage1: `StageConfig` (or dict, merged onto the default) of stage 1.
            Defaults to 20 epochs of 8000 batches (20000 updates), lr x0.1 every
            9000 updates.
        stage2: the same for stage 2. Defaults to 40 epochs of 8000 batches (40000
            updates), lr x0.1 every 10000 updates.
        batch_size: batch size used to batch *unbatched* datasets (batched ones
            are used as they are); the global batch, split across replicas.
            Defaults to `8`, the original per-step batch.
        gradient_accumulation_steps: batches averaged per update (Caffe's
            `iter_size`). Defaults to `8` (8 x 8 = 64 per update, the original).
            `None` or `1` updates every batch.
        momentum: SGD momentum. Defaults to `0.9`.
        weight_decay: Defaults to `0.0005`.
        weight_decay_mode: `"coupled"` (default; L2 through the momentum, as
            Caffe) or `"decoupled"` (Keras's); see `CaffeSGD`.
        bias_lr_multiplier: learning-rate multiplier of convolution biases.
            Defaults to `2.0` (the prototxts' `blobs_lr: 2`).
        bias_decay_multiplier: weight-decay multiplier of convolution biases.
            Defaults to `0.0` (`weight_decay: 0`). BatchNorm's scale and shift keep
            1 and 1, Caffe's defaults, as in the original.
        lr_schedule: `"step"` (default, the original solver: x`lr_decay_factor`
            every `lr_step_size` updates), `"plateau"` (x`lr_decay_factor` when
            `plateau_monitor` stalls for `plateau_patience` epochs) or `"constant"`.
        lr_decay_factor: Defaults to `0.1`.
        plateau_monitor: log watched by the plateau schedule; `"auto"` (default)
            is `"val_mean_iou"` with validation data, else `"loss"`.
        plateau_patience: epochs without improvement before lowering. Defaults to `3`.
        min_learning_rate: floor of the plateau schedule. Defaults to `1e-6`.
        checkpoint_monitor: log that picks `best.weights.h5`; `"auto"` as above.
        stage2_init: `"last"` (default, as the original) or `"best"`: which
            stage-1 weights stage 2 starts from.
        recompute_batchnorm: recompute BN statistics after the last stage, as the
            original's BN script. Defaults to `True` (skipped for models without BN).
        batchnorm_batches: batches for it. Defaults to `501` (the script's first
            forward plus `iteration = 500`).
        batchnorm_batch_size: their size; the training data is re-batched to it.
            Defaults to `28` (the script's prototxt); `None` keeps the training batch.
        batchnorm_unbiased: the `m / (m - 1)` variance correction (see
            `keras_deconvnet.training.batchnorm`). Defaults to `True`.
        class_balancing: `None` (default, the original) or `"median_frequency"`:
            class weights computed from each stage's first `class_balancing_batches`
            batches.
        class_weights: explicit per-class loss weights (overrides
            `class_balancing`). Defaults to `None`.
        class_balancing_batches: Defaults to `100`.
        engine: `"auto"` (default: `model.fit`, or `DistributedLoop` under a
            multi-worker strategy, where `fit` fails), `"fit"` or `"loop"`.
        backup_save_freq: `"epoch"` (default) or an int: how often (batches) the
            stage's backup is written. A resumed run restarts the interrupted epoch.
        tensorboard: write TensorBoard logs (needs the `tensorboard` package; a
            warning and no logs without it). Defaults to `True`.
        jit_compile: passed to `model.compile`. Defaults to `"auto"`.
        steps_per_execution: passed to `model.compile`. Defaults to `1`.
        verbose: passed to `model.fit`. Defaults to `"auto"` (progress bars).

    Raises:
        ValueError: on an inconsistent configuration, naming the field.

    Example:

    >>> config = TrainingConfig(stage1={"epochs": 2}, stage2={"epochs": 0})
    >>> config.stage1.lr_step_size, TrainingConfig.from_dict(config.to_dict()) == config
    (9000, True)
    """

    stage1: StageConfig = dataclasses.field(default_factory=lambda: default_stage("stage1"))
    stage2: StageConfig = dataclasses.field(default_factory=lambda: default_stage("stage2"))
    batch_size: int = 8
    gradient_accumulation_steps: int | None = 8
    momentum: float = 0.9
    weight_decay: float = 5e-4
    weight_decay_mode: str = "coupled"
    bias_lr_multiplier: float = 2.0
    bias_decay_multiplier: float = 0.0
    lr_schedule: str = "step"
    lr_decay_factor: float = 0.1
    plateau_monitor: str = "auto"
    plateau_patience: int = 3
    min_learning_rate: float = 1e-6
    checkpoint_monitor: str = "auto"
    stage2_init: str = "last"
    recompute_batchnorm: bool = True
    batchnorm_batches: int = 501
    batchnorm_batch_size: int | None = 28
    batchnorm_unbiased: bool = True
    class_balancing: str | None = None
    class_weights: list[float] | None = None
    class_balancing_batches: int = 100
    engine: str = "auto"
    backup_save_freq: str | int = "epoch"
    tensorboard: bool = True
    jit_compile: str | bool = "auto"
    steps_per_execution: int = 1
    verbose: str | int = "auto"

    def __post_init__(self):
        for name in ("stage1", "stage2"):
            value = getattr(self, name)
            if isinstance(value, dict):
                setattr(self, name, _stage_from_dict(value, name))
            elif not isinstance(value, StageConfig):
                raise ValueError(
                    f"`{name}` must be a StageConfig or a dict. Received: {name}={value!r}"
                )
        if self.class_weights is not None:
            self.class_weights = list(self.class_weights)
        self.validate()

    def validate(self) -> None:
        """Raises `ValueError` on an inconsistent configuration."""
        self.stage1.validate("stage1")
        self.stage2.validate("stage2")
        _check_choice(self.lr_schedule, LR_SCHEDULES, "lr_schedule")
        _check_choice(self.weight_decay_mode, ("coupled", "decoupled"), "weight_decay_mode")
        _check_choice(self.stage2_init, ("last", "best"), "stage2_init")
        _check_choice(self.class_balancing, CLASS_BALANCING, "class_balancing")
        _check_choice(self.engine, ENGINES, "engine")
        for field in ("batch_size", "batchnorm_batches", "class_balancing_batches"):
            _check_positive_int(getattr(self, field), field)
        for field in ("gradient_accumulation_steps", "batchnorm_batch_size"):
            if getattr(self, field) is not None:
                _check_positive_int(getattr(self, field), field)
        for field in ("weight_decay", "bias_lr_multiplier", "bias_decay_multiplier"):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ValueError(f"`{field}` must be a float >= 0. Received: {value!r}")
        if not 0 < self.lr_decay_factor < 1:
            raise ValueError(
                f"`lr_decay_factor` must be in (0, 1). Received: {self.lr_decay_factor!r}"
            )
        if self.backup_save_freq != "epoch":
            _check_positive_int(self.backup_save_freq, "backup_save_freq", "'epoch' or ")
        if self.class_weights is not None and (
            not self.class_weights or min(self.class_weights) < 0
        ):
            raise ValueError(
                f"`class_weights` must be None or floats >= 0. Received: {self.class_weights!r}"
            )

    def to_dict(self) -> dict:
        """A JSON-serialisable dict (nested dicts for the stages)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, config: dict) -> TrainingConfig:
        """Inverse of `to_dict`; unknown keys raise `ValueError`; stage dicts are
        merged onto the default stages."""
        if not isinstance(config, dict):
            raise ValueError(f"`config` must be a dict. Received: {type(config).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(config) - known)
        if unknown:
            raise ValueError(
                f"Unknown TrainingConfig keys {unknown}. Known keys: {sorted(known)}"
            )
        return cls(**config)

    def save(self, path: str) -> None:
        """Writes the config as JSON (atomically)."""
        atomic_io.write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str) -> TrainingConfig:
        """Reads a config written by `save` (or any JSON of `to_dict`'s form)."""
        return cls.from_dict(read_json_file(os.fspath(path), "training config"))

    @property
    def updates_per_batch(self) -> float:
        """Optimizer updates per batch (`1 / gradient_accumulation_steps`)."""
        return 1.0 / (self.gradient_accumulation_steps or 1)


def _check_choice(value, choices, name):
    if value not in choices:
        raise ValueError(f"`{name}` must be one of {choices}. Received: {name}={value!r}")


def _check_positive_int(value, name, prefix=""):
    if not _is_int(value) or value < 1:
        raise ValueError(f"`{name}` must be {prefix}an int >= 1. Received: {name}={value!r}")


def _stage_from_dict(value: dict, name: str) -> StageConfig:
    known = {f.name for f in dataclasses.fields(StageConfig)}
    unknown = sorted(set(value) - known)
    if unknown:
        raise ValueError(f"Unknown `{name}` keys {unknown}. Known keys: {sorted(known)}")
    return StageConfig(**{**dataclasses.asdict(default_stage(name)), **value})


def _as_config(config) -> TrainingConfig:
    if config is None:
        return TrainingConfig()
    if isinstance(config, dict):
        return TrainingConfig.from_dict(config)
    if not isinstance(config, TrainingConfig):
        raise ValueError(
            f"`config` must be a TrainingConfig, a dict or None. Received: {config!r}"
        )
    config.validate()
    return config


def _check_dataset(dataset, name: str, batch_size: int, drop_remainder: bool):
    """Validates a dataset of (image, mask) pairs; batches it if it is not batched."""
    if dataset is None:
        return None
    if callable(dataset) and not isinstance(dataset, tf.data.Dataset):
        dataset = dataset()  # a factory, called once the strategy exists
    if not isinstance(dataset, tf.data.Dataset):
        raise ValueError(
            f"`{name}` must be a tf.data.Dataset of (image, mask) pairs (or a function "
            f"returning one). Received: {type(dataset).__name__}"
        )
    spec = dataset.element_spec
    if not isinstance(spec, tuple) or len(spec) not in (2, 3):
        raise ValueError(
            f"`{name}` must yield (image, mask) or (image, mask, weight) tuples. "
            f"Received element_spec={spec}"
        )
    image_rank = spec[0].shape.rank
    mask_rank = spec[1].shape.rank
    if image_rank == 3 and mask_rank in (2, 3):
        return dataset.batch(batch_size, drop_remainder=drop_remainder)
    if image_rank == 4 and mask_rank in (3, 4):
        return dataset
    raise ValueError(
        f"`{name}` must yield images (height, width, 3) and masks (height, width), "
        "batched or not. Received: "
        f"image shape {spec[0].shape}, mask shape {spec[1].shape}"
    )


def _resolve_monitor(monitor: str, has_validation: bool) -> str:
    if monitor == "auto":
        return "val_mean_iou" if has_validation else "loss"
    if monitor.startswith("val_") and not has_validation:
        raise ValueError(
            f"Monitoring {monitor!r} needs validation data. Pass `validation` or "
            "use 'auto' or a training log such as 'loss'."
        )
    return monitor


def compile_for_training(
    model: keras.Model,
    config: TrainingConfig,
    stage: StageConfig,
    class_weights: Sequence[float] | None = None,
) -> keras.Model:
    """Compiles `model` with the original solver, loss and a `MeanIoU` metric.

    Call inside the strategy's scope. The optimizer is `build_optimizer` with the
    config's momentum, decay, accumulation, bias multipliers and (with
    `lr_schedule="step"`) the stage's step schedule. The loss is
    `SparseCategoricalCrossentropy(ignore_class=255)`, or `ClassWeightedCrossentropy`
    with `class_weights`; from logits unless the model ends in a softmax
    (`model.activation == "softmax"`).

    Args:
        model: the model to compile.
        config: the `TrainingConfig`.
        stage: the `StageConfig` of the stage (its learning rate and steps).
        class_weights: per-class loss weights, or None.

    Returns:
        `model`, compiled.

    Example:

    >>> inputs = keras.Input((8, 8, 3))
    >>> model = keras.Model(inputs, keras.layers.Conv2D(3, 1)(inputs))
    >>> config = TrainingConfig()
    >>> compile_for_training(model, config, config.stage1).optimizer.accumulation_steps
    8
    """
    num_classes = model.output_shape[-1]
    lr_step_size = stage.lr_step_size if config.lr_schedule == "step" else None
    optimizer = build_optimizer(
        learning_rate=stage.learning_rate,
        momentum=config.momentum,
        weight_decay=config.weight_decay,
        weight_decay_mode=config.weight_decay_mode,
        lr_step_size=lr_step_size,
        lr_decay_factor=config.lr_decay_factor,
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        bias_lr_multiplier=config.bias_lr_multiplier,
        bias_decay_multiplier=config.bias_decay_multiplier,
    )
    from_logits = getattr(model, "activation", None) != "softmax"
    if class_weights is not None:
        if len(class_weights) != num_classes:
            raise ValueError(
                f"`class_weights` has {len(class_weights)} values for a model with "
                f"{num_classes} classes."
            )
        loss = ClassWeightedCrossentropy(class_weights, from_logits=from_logits,
                                         ignore_class=IGNORE_LABEL)
    else:
        loss = keras.losses.SparseCategoricalCrossentropy(
            from_logits=from_logits, ignore_class=IGNORE_LABEL)
    model.compile(
        optimizer=optimizer,
        loss=loss,
        metrics=[MeanIoU(num_classes, ignore_class=IGNORE_LABEL)],
        jit_compile=config.jit_compile,
        steps_per_execution=config.steps_per_execution,
    )
    return model


@dataclasses.dataclass
class _Stage:
    """One stage to run: its name, config, dataset and directory."""

    name: str
    config: StageConfig
    dataset: tf.data.Dataset | None
    directory: str

    @property
    def marker(self) -> str:
        return os.path.join(self.directory, "COMPLETE.json")

    @property
    def final(self) -> str:
        return os.path.join(self.directory, "final.weights.h5")


@dataclasses.dataclass
class _Run:
    """What every stage of one `train_two_stage` call shares."""

    model: keras.Model
    config: TrainingConfig
    strategy: tf.distribute.Strategy
    output_dir: str
    chief: bool
    validation: tf.data.Dataset | None
    extra_callbacks: list
    # What the model was last compiled for: a later stage with the same key resets
    # the optimizer instead of compiling (and tracing) again.
    compile_key: tuple | None = None

    @property
    def plateau_monitor(self) -> str:
        return _resolve_monitor(self.config.plateau_monitor, self.validation is not None)

    @property
    def checkpoint_monitor(self) -> str:
        return _resolve_monitor(self.config.checkpoint_monitor, self.validation is not None)

    @functools.cached_property
    def loop(self) -> DistributedLoop:
        """One loop for every stage: its traced steps are reused."""
        return DistributedLoop(self.model, self.strategy)

    @property
    def uses_loop(self) -> bool:
        engine = self.config.engine
        return engine == "loop" or (engine == "auto" and needs_custom_loop(self.strategy))


class _StageRunner:
    """Runs one stage: compile, callbacks, `fit` (or the loop), completion marker."""

    def __init__(self, run: _Run, stage: _Stage):
        self.run = run
        self.stage = stage
        self.backup_dir = os.path.join(stage.directory, "backup")

    def __call__(self) -> dict:
        """Runs the stage; returns its history (every epoch, restarts included)."""
        run, stage = self.run, self.stage
        if run.chief:
            os.makedirs(stage.directory, exist_ok=True)
        self.compile()
        private_apis.set_initial_epoch(run.model, None)  # never from an earlier fit
        history = HistoryLogger(os.path.join(stage.directory, "history.csv"),
                                enabled=run.chief)
        self.fit([*self.callbacks(), history])
        if run.model.stop_training and _last_loss_is_nan(run.model):
            raise RuntimeError(
                f"{stage.name} stopped on a NaN loss; the stage is not marked complete. "
                f"Lower the learning rate and rerun (the backup in {self.backup_dir} is kept)."
            )
        if run.chief:
            atomic_save_weights(run.model, stage.final)
            atomic_io.write_json(stage.marker, {"stage": stage.name,
                                                "epochs": stage.config.epochs,
                                                "config": dataclasses.asdict(stage.config)})
            shutil.rmtree(self.backup_dir, ignore_errors=True)
        return history.history()

    def compile(self) -> None:
        """A fresh optimizer for the stage (the original's stage 2 was a new solver).

        After an earlier stage in this process the optimizer is reset instead
        (`CaffeSGD.reset`: zero state, the stage's learning rate and step), so that
        the traced, possibly XLA-compiled, training step is reused: compiling the
        paper's network again would cost minutes.
        """
        run, stage = self.run, self.stage
        class_weights = self.class_weights()
        step = stage.config.lr_step_size if run.config.lr_schedule == "step" else None
        key = (id(run), None if class_weights is None else tuple(class_weights))
        with run.strategy.scope():
            if run.compile_key == key:
                run.model.optimizer.reset(stage.config.learning_rate, step)
                return
            compile_for_training(run.model, run.config, stage.config, class_weights)
        run.compile_key = key

    def fit(self, callbacks: list) -> None:
        run, stage = self.run, self.stage
        kwargs = dict(
            epochs=stage.config.epochs,
            steps_per_epoch=stage.config.steps_per_epoch,
            validation_data=run.validation,
            validation_steps=stage.config.validation_steps if run.validation else None,
            callbacks=callbacks,
            verbose=run.config.verbose if run.chief else 0,
        )
        try:
            if run.uses_loop:
                run.loop.fit(stage.dataset, **kwargs)
            else:
                run.model.fit(stage.dataset, shuffle=False, **kwargs)
        finally:
            private_apis.set_initial_epoch(run.model, None)

    def class_weights(self) -> list[float] | None:
        run, stage = self.run, self.stage
        if run.config.class_weights is not None:
            return list(run.config.class_weights)
        if run.config.class_balancing is None:
            return None
        path = os.path.join(stage.directory, "class_weights.json")
        if os.path.exists(path):  # a resumed stage keeps its weights
            return list(read_json_file(path, "class weights")["class_weights"])
        weights = median_frequency_weights(
            stage.dataset.as_numpy_iterator(), run.model.output_shape[-1],
            run.config.class_balancing_batches, IGNORE_LABEL)
        if run.chief:
            atomic_io.write_json(path, {"class_weights": weights,
                                        "method": run.config.class_balancing})
        return weights

    def callbacks(self) -> list:
        run, stage, config = self.run, self.stage, self.run.config
        callbacks = list(run.extra_callbacks) + [
            EpochBackup(self.backup_dir, save_freq=config.backup_save_freq,
                        enabled=run.chief),
            AtomicCheckpoint(stage.directory, monitor=run.checkpoint_monitor,
                             enabled=run.chief),
            keras.callbacks.TerminateOnNaN(),
        ]
        if config.lr_schedule == "plateau":
            monitor = run.plateau_monitor
            callbacks.append(keras.callbacks.ReduceLROnPlateau(
                monitor=monitor, factor=config.lr_decay_factor,
                patience=config.plateau_patience, min_lr=config.min_learning_rate,
                mode="max" if ("iou" in monitor or "acc" in monitor) else "min",
                verbose=1 if config.verbose and run.chief else 0,
            ))
        if config.tensorboard and run.chief:
            if importlib.util.find_spec("tensorboard") is None:
                warnings.warn(
                    "TrainingConfig.tensorboard is True but the `tensorboard` package is "
                    "not installed (`pip install tensorboard`): no TensorBoard logs.",
                    stacklevel=4,
                )
            else:
                callbacks.append(keras.callbacks.TensorBoard(
                    os.path.join(run.output_dir, "logs", stage.name), profile_batch=0))
        return callbacks


def _load_stage_weights(model, stage: _Stage, which: str = "final") -> str:
    """Loads a completed stage's `final` (or `best`) weights, falling back to its
    last epoch's weights when the file is unreadable; returns the path loaded."""
    candidates = [os.path.join(stage.directory, f"{which}.weights.h5")]
    if which == "best":
        candidates.append(stage.final)
    candidates.append(os.path.join(stage.directory, "last.weights.h5"))
    existing = [p for p in candidates if os.path.exists(p)] or candidates[:1]
    return load_first_readable(model, existing, f"{stage.name}'s weights")


def _recompute_batchnorm(run: _Run, stage: _Stage) -> bool:
    """BN statistics after the last stage, resumable: returns True when applied.

    Kept inside that stage's directory, so that a later run which trains another
    stage after it (or retrains it) never picks up statistics of other weights.
    """
    config = run.config
    dataset = stage.dataset
    if not config.recompute_batchnorm or dataset is None or not batchnorm_layers(run.model):
        return False
    directory = os.path.join(stage.directory, "batchnorm")
    marker = os.path.join(directory, "COMPLETE.json")
    final = os.path.join(directory, "final.weights.h5")
    if os.path.exists(marker):
        load_first_readable(run.model, [final], "recomputed BatchNorm weights")
        return True
    if config.batchnorm_batch_size:
        dataset = dataset.unbatch().batch(config.batchnorm_batch_size)
    used = recompute_batchnorm_statistics(
        run.model, dataset, num_batches=config.batchnorm_batches, method="caffe",
        unbiased=config.batchnorm_unbiased)
    if run.chief:
        atomic_save_weights(run.model, final)
        atomic_io.write_json(marker, {"batches": used,
                                      "batch_size": config.batchnorm_batch_size,
                                      "unbiased": config.batchnorm_unbiased})
    return True


def train_two_stage(
    build_model: Callable[[], keras.Model],
    stage1_train: tf.data.Dataset | Callable[[], tf.data.Dataset] | None,
    stage2_train: tf.data.Dataset | Callable[[], tf.data.Dataset] | None,
    validation: tf.data.Dataset | Callable[[], tf.data.Dataset] | None,
    output_dir: str,
    config: TrainingConfig | dict | None = None,
    strategy: str | tf.distribute.Strategy = "default",
    callbacks: Sequence[keras.callbacks.Callback] = (),
) -> tuple[keras.Model, dict]:
    """Trains stage 1, then stage 2 from stage 1's weights, then BN statistics.

    The strategy is created first; then the datasets (functions returning datasets
    are called now, so that `strategy="multi_worker"` can be given by name); the
    model is built (`build_model()`) and compiled inside `strategy.scope()`. Each
    stage compiles a fresh optimizer (as the original, whose stage 2 was a new
    solver started from stage 1's weights) and runs `model.fit` (or
    `DistributedLoop` under a multi-worker strategy) with an epoch backup, a CSV
    history, TensorBoard and atomic best/last checkpoints. A finished stage leaves
    `COMPLETE.json`; on a rerun it is skipped and an interrupted one resumes from
    its last backed-up epoch, running all its epochs. After the last stage BN
    statistics are recomputed (`config.recompute_batchnorm`).

    Args:
        build_model: a function returning a new segmenter (logits
            `(batch, height, width, num_classes)`), e.g.
            `lambda: DeconvNetImageSegmenter.from_preset("deconvnet_vgg16_voc")` plus
            weight loading. Its preprocessor is applied to the images inside `fit`.
        stage1_train: `tf.data.Dataset` (or a function returning one) of
            `(image, mask)` pairs for stage 1: float32 RGB images `(H, W, 3)` in
            [0, 255] and int32 masks `(H, W)` with `255` for ignored pixels;
            batched or not (unbatched datasets are batched with `config.batch_size`,
            dropping the remainder). Batches are global: split across replicas.
            Shuffle and `repeat()` it yourself (with `steps_per_epoch`). `None`
            only if `config.stage1.epochs == 0`.
        stage2_train: the same for stage 2 (also used for the BN statistics).
        validation: `(image, mask)` dataset evaluated at every epoch end, or `None`.
        output_dir: directory for checkpoints, logs and the resume state.
        config: a `TrainingConfig`, a dict for `TrainingConfig.from_dict`, or
            `None` for the defaults.
        strategy: `"default"`, `"mirrored"`, `"multi_worker"`, `"tpu"` or a
            `tf.distribute.Strategy` (see `get_strategy`).
        callbacks: extra Keras callbacks for both stages (run on every worker).

    Returns:
        `(model, history)`: the trained model (weights at the end of training) and
        `{"stage1": {log: [per-epoch values]}, "stage2": ...}` covering every
        epoch, including those before a restart (empty for a skipped stage).

    Raises:
        ValueError: on bad arguments or configuration.
        OutputDirLockedError: when another run holds `output_dir`.
        CheckpointError: when a checkpoint exists but cannot be read (naming it).
        RuntimeError: when a stage ends on a NaN loss or the strategy cannot be
            created.

    Example:

    >>> from keras_deconvnet.models import DeconvNetImageSegmenter
    >>> import numpy as np, tempfile
    >>> data = tf.data.Dataset.from_tensor_slices(
    ...     (np.random.uniform(0, 255, (4, 96, 96, 3)).astype("float32"),
    ...      np.random.randint(0, 3, (4, 96, 96)).astype("int32"))).batch(2)
    >>> model, history = train_two_stage(
    ...     lambda: DeconvNetImageSegmenter.from_preset(
    ...         "deconvnet_edge_small", num_classes=3, image_shape=(96, 96, 3)),
    ...     data, data, data, tempfile.mkdtemp(),
    ...     TrainingConfig(stage1={"epochs": 1, "steps_per_epoch": None},
    ...                    stage2={"epochs": 1, "steps_per_epoch": None},
    ...                    gradient_accumulation_steps=None, batchnorm_batches=2,
    ...                    batchnorm_batch_size=None, jit_compile=False,
    ...                    tensorboard=False, verbose=0))
    >>> sorted(history), len(history["stage2"]["val_mean_iou"])
    (['stage1', 'stage2'], 1)
    """
    if isinstance(build_model, keras.Model) or not callable(build_model):
        raise ValueError(
            "`build_model` must be a function returning a new Keras model (it is "
            "called inside the strategy's scope), not a model. "
            f"Received: {type(build_model).__name__}"
        )
    config = _as_config(config)
    if not output_dir:
        raise ValueError(f"`output_dir` must be a directory path. Received: {output_dir!r}")
    strategy = get_strategy(strategy)  # before any dataset is built
    output_dir = os.fspath(output_dir)
    stages = [
        _Stage(name, getattr(config, name),
               _check_dataset(data, f"{name}_train", config.batch_size, True),
               os.path.join(output_dir, name))
        for name, data in (("stage1", stage1_train), ("stage2", stage2_train))
    ]
    for stage in stages:
        if stage.config.epochs and stage.dataset is None:
            raise ValueError(
                f"`{stage.name}_train` is None but config.{stage.name}.epochs="
                f"{stage.config.epochs}. Pass a dataset or set {stage.name}.epochs=0 "
                "to skip the stage."
            )
    validation = _check_dataset(validation, "validation", config.batch_size, False)
    _resolve_monitor(config.plateau_monitor, validation is not None)
    _resolve_monitor(config.checkpoint_monitor, validation is not None)
    _check_replicas(config, strategy)

    chief = is_chief(strategy)
    lock = OutputDirLock(output_dir) if chief else None
    if lock is not None:
        lock.acquire()
    try:
        if chief:
            _save_config(config, output_dir)
        with strategy.scope():
            model = build_model()
            if not isinstance(model, keras.Model):
                raise ValueError(
                    f"`build_model()` must return a keras.Model. Received: "
                    f"{type(model).__name__}"
                )
        run = _Run(model, config, strategy, output_dir, chief, validation, list(callbacks))
        history = _run_stages(run, stages)
    finally:
        if lock is not None:
            lock.release()
    return model, history


def _check_replicas(config: TrainingConfig, strategy) -> None:
    replicas = strategy.num_replicas_in_sync
    if replicas > 1 and config.batch_size % replicas:
        raise ValueError(
            f"`batch_size` {config.batch_size} is the global batch, split across "
            f"{replicas} replicas: it must be a multiple of {replicas}."
        )


def _save_config(config: TrainingConfig, output_dir: str) -> None:
    config_path = os.path.join(output_dir, "config.json")
    if os.path.exists(config_path):
        try:
            previous = TrainingConfig.load(config_path)
        except (ValueError, TypeError, CheckpointError):
            previous = None
        if previous is not None and previous != config:
            warnings.warn(
                f"{config_path} holds a different TrainingConfig: resuming a run with "
                "changed settings. Completed stages are not retrained.",
                stacklevel=3,
            )
    config.save(config_path)


def _run_stages(run: _Run, stages: list[_Stage]) -> dict:
    """Runs or skips each stage, then the BN recomputation; returns the histories."""
    history = {}
    pending = None  # (completed stage, which weights) not yet loaded into the model
    last = None
    for stage in stages:
        history[stage.name] = {}
        if not stage.config.epochs:
            continue
        last = stage
        if os.path.exists(stage.marker):
            read_json_file(stage.marker, f"{stage.name} completion marker")
            init = "best" if run.config.stage2_init == "best" else "final"
            pending = (stage, init)
        else:
            if pending is not None:
                _load_stage_weights(run.model, *pending)
                pending = None
            history[stage.name] = _StageRunner(run, stage)()
            continue
        history[stage.name] = read_history(os.path.join(stage.directory, "history.csv"))
    if pending is not None:
        _load_stage_weights(run.model, pending[0], "final")
    if last is not None:
        _recompute_batchnorm(run, last)
        if run.chief:
            atomic_save_weights(run.model, os.path.join(run.output_dir, "final.weights.h5"))
    return history


def _last_loss_is_nan(model) -> bool:
    history = getattr(model, "history", None)
    losses = getattr(history, "history", {}).get("loss", []) if history else []
    return bool(losses) and math.isnan(float(losses[-1]))

