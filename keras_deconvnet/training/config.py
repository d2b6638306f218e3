"""`TrainingConfig` and `StageConfig`: the settings of `train_two_stage`, validated.

The defaults are the authors' Caffe solver and scripts (HyeonwooNoh/DeconvNet,
`training/`); each setting is a field, checked on construction (a `ValueError` names
the field), and a config round-trips through JSON (`to_dict`/`from_dict`,
`save`/`load`), which is how `train_two_stage` records it in `config.json`.
"""

from __future__ import annotations

import dataclasses
import os

from keras_deconvnet import atomic_io
from keras_deconvnet.training.checkpoints import read_json_file

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
        gradient_accumulation_steps: batches combined per update (Caffe's
            `iter_size`). Defaults to `8` (8 x 8 = 64 per update, the original).
            `None` or `1` updates every batch.
        accumulation_mode: `"caffe"` (default: the fork's solver arithmetic, see
            `CaffeSGD`: the decay added to the *summed* gradients, the whole
            scaled by `lr / gradient_accumulation_steps`, and BatchNorm's scale
            and shift from the last batch of each group only) or `"mean"` (the
            mean gradient plus the decay at the full rate: this package's earlier
            behaviour). The same for 1 batch per update.
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
            `keras_deconvnet.training.batchnorm`). Defaults to `False`, as the
            released model: the authors' Python 2 script computes `m / (m - 1)`
            with integer `m`, an integer division that equals 1.
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
    accumulation_mode: str = "caffe"
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
    batchnorm_unbiased: bool = False
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
        _check_choice(self.accumulation_mode, ("caffe", "mean"), "accumulation_mode")
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


def as_training_config(config: TrainingConfig | dict | None) -> TrainingConfig:
    """`config` as a validated `TrainingConfig`.

    Args:
        config: a `TrainingConfig` (validated again: its fields may have been
            changed since it was made), a dict for `TrainingConfig.from_dict`, or
            `None` for the defaults.

    Raises:
        ValueError: for another type or a bad setting.

    Example:

    >>> as_training_config({"stage2": {"epochs": 0}}).stage2.epochs
    0
    """
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


def resolve_monitor(monitor: str, has_validation: bool) -> str:
    """The log that `monitor` (`plateau_monitor` or `checkpoint_monitor`) watches.

    Args:
        monitor: a log name, or `"auto"`: `"val_mean_iou"` with validation data,
            else `"loss"`.
        has_validation: whether the run has validation data.

    Raises:
        ValueError: for a validation log (`"val_..."`) without validation data.

    Example:

    >>> resolve_monitor("auto", has_validation=False)
    'loss'
    """
    if monitor == "auto":
        return "val_mean_iou" if has_validation else "loss"
    if monitor.startswith("val_") and not has_validation:
        raise ValueError(
            f"Monitoring {monitor!r} needs validation data. Pass `validation` or "
            "use 'auto' or a training log such as 'loss'."
        )
    return monitor

