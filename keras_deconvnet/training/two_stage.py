"""The paper's two-stage training (Noh et al. 2015, section 4.2) with `model.fit`.

Stage 1 trains on object-centred crops (only the centred object labelled), stage 2
continues from stage 1's weights on proposal crops with every class labelled. Both
stages use SGD with momentum 0.9, learning rate 0.01, weight decay 0.0005, the
learning rate lowered 10x when validation stalls (or every N updates, as the
original Caffe solver did), and softmax cross-entropy ignoring label 255.

`train_two_stage` is restartable: kill it at any point and run it again with the
same `output_dir` and it resumes. Layout of `output_dir`:

```
config.json                  the TrainingConfig used
stage1/ stage2/
    backup/                  keras BackupAndRestore state while the stage runs
    last.weights.h5          weights after the latest epoch (atomic)
    best.weights.h5          weights of the best epoch by `checkpoint_monitor`
    best.json                {"monitor", "value", "epoch"}
    final.weights.h5         weights at the end of the stage
    history.csv              one row per epoch (kept across restarts)
    COMPLETE.json            written when the stage finished: the stage is skipped
                             on a rerun and its final weights are loaded instead
logs/stage1/ logs/stage2/    TensorBoard
final.weights.h5             weights at the end of training
```
"""

from __future__ import annotations

import csv
import dataclasses
import importlib.util
import json
import math
import os
import shutil
import warnings
from collections.abc import Callable, Sequence

import keras
import tensorflow as tf

from keras_deconvnet.metrics import MeanIoU
from keras_deconvnet.training.callbacks import (
    AtomicCheckpoint,
    atomic_save_weights,
    atomic_write_json,
)
from keras_deconvnet.training.optimizers import build_optimizer

IGNORE_LABEL = 255
STRATEGIES = ("default", "mirrored", "multi_worker")
LR_SCHEDULES = ("plateau", "step", "constant")


@dataclasses.dataclass
class StageConfig:
    """Length and learning rate of one training stage.

    Args:
        epochs: epochs to train; `0` skips the stage.
        steps_per_epoch: batches per epoch; `None` for one pass over the dataset.
            Needed for infinite (repeated) datasets.
        learning_rate: initial learning rate. Defaults to `0.01`.
        lr_step_size: optimizer updates between x`lr_decay_factor` steps when
            `TrainingConfig.lr_schedule == "step"` (the original solver: 9000 in
            stage 1, 10000 in stage 2); ignored otherwise.
        validation_steps: validation batches per epoch; `None` for the whole set.
    """

    epochs: int = 20
    steps_per_epoch: int | None = None
    learning_rate: float = 0.01
    lr_step_size: int | None = None
    validation_steps: int | None = None

    def validate(self, name: str) -> None:
        def is_int(value):
            return isinstance(value, int) and not isinstance(value, bool)

        if not is_int(self.epochs) or self.epochs < 0:
            raise ValueError(
                f"`{name}.epochs` must be an int >= 0 (0 skips the stage). "
                f"Received: epochs={self.epochs!r}"
            )
        for field in ("steps_per_epoch", "lr_step_size", "validation_steps"):
            value = getattr(self, field)
            if value is not None and (not is_int(value) or value < 1):
                raise ValueError(
                    f"`{name}.{field}` must be None or an int >= 1. "
                    f"Received: {field}={value!r}"
                )
        if not isinstance(self.learning_rate, (int, float)) or not self.learning_rate > 0:
            raise ValueError(
                f"`{name}.learning_rate` must be a float > 0. "
                f"Received: learning_rate={self.learning_rate!r}"
            )


def _default_stage1():
    return StageConfig(epochs=20, lr_step_size=9000)


def _default_stage2():
    return StageConfig(epochs=40, lr_step_size=10000)


@dataclasses.dataclass
class TrainingConfig:
    """Hyper-parameters of `train_two_stage`; the defaults are the paper's.

    Args:
        stage1: `StageConfig` (or dict) of stage 1. Defaults to 20 epochs.
        stage2: `StageConfig` (or dict) of stage 2. Defaults to 40 epochs.
        batch_size: batch size used to batch *unbatched* datasets (batched ones
            are used as they are). Defaults to `8`, the original per-step batch.
        momentum: SGD momentum. Defaults to `0.9`.
        weight_decay: Defaults to `0.0005`.
        weight_decay_mode: `"coupled"` (default; L2 through the momentum, as
            Caffe) or `"decoupled"` (Keras's `weight_decay`); see
            `keras_deconvnet.training.optimizers`.
        gradient_accumulation_steps: `None` or an int >= 2: one update per that
            many batches (the original: 8 batches of 8 = 64). Defaults to `None`.
        lr_schedule: `"plateau"` (default, the paper: x`lr_decay_factor` when
            `plateau_monitor` stalls for `plateau_patience` epochs), `"step"`
            (the original solver: x`lr_decay_factor` every `lr_step_size`
            updates) or `"constant"`.
        lr_decay_factor: Defaults to `0.1`.
        plateau_monitor: log watched by the plateau schedule; `"auto"` (default)
            is `"val_mean_iou"` with validation data, else `"loss"`.
        plateau_patience: epochs without improvement before lowering. Defaults to `3`.
        min_learning_rate: floor of the plateau schedule. Defaults to `1e-6`.
        checkpoint_monitor: log that picks `best.weights.h5`; `"auto"` as above.
        stage2_init: `"last"` (default, as the original) or `"best"`: which
            stage-1 weights stage 2 starts from.
        backup_save_freq: `"epoch"` (default) or an int: how often (batches)
            `BackupAndRestore` saves. A resumed run restarts the interrupted epoch.
        tensorboard: write TensorBoard logs (needs the `tensorboard` package; a
            warning and no logs without it). Defaults to `True`.
        jit_compile: passed to `model.compile`. Defaults to `"auto"`.
        steps_per_execution: passed to `model.compile`. Defaults to `1`.
        verbose: passed to `model.fit`. Defaults to `"auto"` (progress bars).

    Example:

    >>> config = TrainingConfig(stage1={"epochs": 2}, stage2={"epochs": 0})
    >>> TrainingConfig.from_dict(config.to_dict()) == config
    True
    """

    stage1: StageConfig = dataclasses.field(default_factory=_default_stage1)
    stage2: StageConfig = dataclasses.field(default_factory=_default_stage2)
    batch_size: int = 8
    momentum: float = 0.9
    weight_decay: float = 5e-4
    weight_decay_mode: str = "coupled"
    gradient_accumulation_steps: int | None = None
    lr_schedule: str = "plateau"
    lr_decay_factor: float = 0.1
    plateau_monitor: str = "auto"
    plateau_patience: int = 3
    min_learning_rate: float = 1e-6
    checkpoint_monitor: str = "auto"
    stage2_init: str = "last"
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
        self.validate()

    def validate(self) -> None:
        """Raises `ValueError` on an inconsistent configuration."""
        self.stage1.validate("stage1")
        self.stage2.validate("stage2")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(
                f"`lr_schedule` must be one of {LR_SCHEDULES}. "
                f"Received: lr_schedule={self.lr_schedule!r}"
            )
        if self.lr_schedule == "step":
            for name in ("stage1", "stage2"):
                stage = getattr(self, name)
                if stage.epochs and stage.lr_step_size is None:
                    raise ValueError(
                        f"lr_schedule='step' needs `{name}.lr_step_size`. Received: None"
                    )
        if self.weight_decay_mode not in ("coupled", "decoupled"):
            raise ValueError(
                "`weight_decay_mode` must be 'coupled' or 'decoupled'. "
                f"Received: weight_decay_mode={self.weight_decay_mode!r}"
            )
        if self.stage2_init not in ("last", "best"):
            raise ValueError(
                f"`stage2_init` must be 'last' or 'best'. Received: {self.stage2_init!r}"
            )
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ValueError(f"`batch_size` must be an int >= 1. Received: {self.batch_size!r}")
        if self.gradient_accumulation_steps is not None and (
            not isinstance(self.gradient_accumulation_steps, int)
            or self.gradient_accumulation_steps < 1
        ):
            raise ValueError(
                "`gradient_accumulation_steps` must be None or an int >= 1. "
                f"Received: {self.gradient_accumulation_steps!r}"
            )
        if not (isinstance(self.weight_decay, (int, float)) and self.weight_decay >= 0):
            raise ValueError(f"`weight_decay` must be >= 0. Received: {self.weight_decay!r}")
        if not 0 < self.lr_decay_factor < 1:
            raise ValueError(
                f"`lr_decay_factor` must be in (0, 1). Received: {self.lr_decay_factor!r}"
            )
        if self.backup_save_freq != "epoch" and (
            not isinstance(self.backup_save_freq, int) or self.backup_save_freq < 1
        ):
            raise ValueError(
                "`backup_save_freq` must be 'epoch' or an int >= 1. "
                f"Received: {self.backup_save_freq!r}"
            )

    def to_dict(self) -> dict:
        """A JSON-serialisable dict (nested dicts for the stages)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, config: dict) -> TrainingConfig:
        """Inverse of `to_dict`; unknown keys raise `ValueError`."""
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
        atomic_write_json(self.to_dict(), path)

    @classmethod
    def load(cls, path: str) -> TrainingConfig:
        """Reads a config written by `save` (or any JSON of `to_dict`'s form)."""
        with open(path) as f:
            return cls.from_dict(json.load(f))


def _stage_from_dict(value: dict, name: str) -> StageConfig:
    known = {f.name for f in dataclasses.fields(StageConfig)}
    unknown = sorted(set(value) - known)
    if unknown:
        raise ValueError(f"Unknown `{name}` keys {unknown}. Known keys: {sorted(known)}")
    return StageConfig(**value)


def get_strategy(strategy: str | tf.distribute.Strategy = "default") -> tf.distribute.Strategy:
    """Resolves a strategy name to a `tf.distribute.Strategy`.

    Args:
        strategy: `"default"` (no distribution: one device), `"mirrored"`
            (`tf.distribute.MirroredStrategy` over all local GPUs, or the CPU),
            `"multi_worker"` (`tf.distribute.MultiWorkerMirroredStrategy`,
            cluster from the `TF_CONFIG` environment variable; create it at the
            start of the program, before other TensorFlow work), or a
            `tf.distribute.Strategy` instance, returned as is.

    Returns:
        A `tf.distribute.Strategy`.
    """
    if isinstance(strategy, tf.distribute.Strategy):
        return strategy
    if strategy == "default":
        return tf.distribute.get_strategy()
    if strategy == "mirrored":
        return tf.distribute.MirroredStrategy()
    if strategy == "multi_worker":
        try:
            return tf.distribute.MultiWorkerMirroredStrategy()
        except RuntimeError as e:
            raise RuntimeError(
                "tf.distribute.MultiWorkerMirroredStrategy must be created at program "
                "startup, before any other TensorFlow work (building datasets "
                "included). Create it first and pass the instance as `strategy`. "
                f"TensorFlow said: {e}"
            ) from e
    raise ValueError(
        f"`strategy` must be one of {STRATEGIES} or a tf.distribute.Strategy. "
        f"Received: strategy={strategy!r}"
    )


def _is_chief(strategy) -> bool:
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not getattr(resolver, "task_type", None):
        return True
    task_type, task_id = resolver.task_type, resolver.task_id
    if task_type == "chief":
        return True
    cluster = resolver.cluster_spec().as_dict()
    return task_type == "worker" and task_id == 0 and "chief" not in cluster


def _check_dataset(dataset, name: str, batch_size: int, drop_remainder: bool):
    """Validates a dataset of (image, mask) pairs; batches it if it is not batched."""
    if dataset is None:
        return None
    if not isinstance(dataset, tf.data.Dataset):
        raise ValueError(
            f"`{name}` must be a tf.data.Dataset of (image, mask) pairs. "
            f"Received: {type(dataset).__name__}"
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


def _read_history(path: str) -> dict:
    """Reads a CSVLogger file into {key: [values]}, one entry per epoch (last wins)."""
    if not os.path.exists(path):
        return {}
    rows = {}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            if not row.get("epoch"):
                continue
            rows[int(row["epoch"])] = row
    history = {}
    for epoch in sorted(rows):
        for key, value in rows[epoch].items():
            if key == "epoch" or key is None:
                continue
            try:
                number = float(value)
            except (TypeError, ValueError):
                number = math.nan
            history.setdefault(key, []).append(number)
    # CSVLogger adds `val_*` columns ("NA") even without validation data: drop
    # columns that never had a value.
    return {
        key: values
        for key, values in history.items()
        if not all(math.isnan(v) for v in values)
        or not all(rows[e].get(key) in ("NA", "", None) for e in rows)
    }


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
) -> keras.Model:
    """Compiles `model` with the paper's optimiser, loss and `MeanIoU` metric.

    Call inside the strategy's scope. The loss is
    `SparseCategoricalCrossentropy(ignore_class=255)`, from logits unless the
    model ends in a softmax (`model.activation == "softmax"`).
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
    )
    from_logits = getattr(model, "activation", None) != "softmax"
    model.compile(
        optimizer=optimizer,
        loss=keras.losses.SparseCategoricalCrossentropy(
            from_logits=from_logits, ignore_class=IGNORE_LABEL
        ),
        metrics=[MeanIoU(num_classes, ignore_class=IGNORE_LABEL)],
        jit_compile=config.jit_compile,
        steps_per_execution=config.steps_per_execution,
    )
    return model


def train_two_stage(
    build_model: Callable[[], keras.Model],
    stage1_train: tf.data.Dataset | None,
    stage2_train: tf.data.Dataset | None,
    validation: tf.data.Dataset | None,
    output_dir: str,
    config: TrainingConfig | dict | None = None,
    strategy: str | tf.distribute.Strategy = "default",
    callbacks: Sequence[keras.callbacks.Callback] = (),
) -> tuple[keras.Model, dict]:
    """Trains stage 1, then stage 2 from stage 1's weights, resuming after a kill.

    The model is built (`build_model()`) and compiled inside `strategy.scope()`.
    Each stage compiles a fresh optimizer (as the original, whose stage 2 was a new
    solver started from stage 1's weights) and runs `model.fit` with
    `BackupAndRestore` (in `output_dir/stageN/backup`), TensorBoard, a CSV log and
    atomic best/last checkpoints; the plateau or step schedule of `config`; and
    `MeanIoU` on `validation`. A finished stage leaves `COMPLETE.json`; on a rerun
    it is skipped (its final weights are loaded) and an interrupted stage resumes
    from its last backed-up epoch.

    Args:
        build_model: a function returning a new segmenter (logits
            `(batch, height, width, num_classes)`), e.g.
            `lambda: DeconvNetImageSegmenter.from_preset("deconvnet_vgg16_voc")` plus
            weight loading. Its preprocessor is applied to the images inside `fit`.
        stage1_train: `tf.data.Dataset` of `(image, mask)` pairs for stage 1:
            float32 RGB images `(H, W, 3)` in [0, 255] and int32 masks `(H, W)` with
            `255` for ignored pixels; batched or not (unbatched datasets are
            batched with `config.batch_size`, dropping the remainder). Shuffle
            and `repeat()` it yourself (with `steps_per_epoch`). `None` only if
            `config.stage1.epochs == 0`.
        stage2_train: the same for stage 2.
        validation: `(image, mask)` dataset evaluated at every epoch end, or `None`.
        output_dir: directory for checkpoints, logs and the resume state.
        config: a `TrainingConfig`, a dict for `TrainingConfig.from_dict`, or
            `None` for the defaults.
        strategy: `"default"`, `"mirrored"`, `"multi_worker"` or a
            `tf.distribute.Strategy` (see `get_strategy`).
        callbacks: extra Keras callbacks for both stages.

    Returns:
        `(model, history)`: the trained model (weights at the end of the last
        stage that ran) and `{"stage1": {log: [per-epoch values]}, "stage2": ...}`
        covering every epoch, including those before a restart (empty for a
        skipped stage).

    Example:

    >>> from keras_deconvnet.models import DeconvNetImageSegmenter
    >>> import numpy as np, tensorflow as tf, tempfile
    >>> data = tf.data.Dataset.from_tensor_slices(
    ...     (np.random.uniform(0, 255, (4, 96, 96, 3)).astype("float32"),
    ...      np.random.randint(0, 3, (4, 96, 96)).astype("int32"))).batch(2)
    >>> model, history = train_two_stage(
    ...     lambda: DeconvNetImageSegmenter.from_preset(
    ...         "deconvnet_edge_small", num_classes=3, image_shape=(96, 96, 3)),
    ...     data, data, data, tempfile.mkdtemp(),
    ...     TrainingConfig(stage1={"epochs": 1}, stage2={"epochs": 1},
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
    if config is None:
        config = TrainingConfig()
    elif isinstance(config, dict):
        config = TrainingConfig.from_dict(config)
    elif not isinstance(config, TrainingConfig):
        raise ValueError(
            f"`config` must be a TrainingConfig, a dict or None. Received: {config!r}"
        )
    else:
        config.validate()
    if not output_dir:
        raise ValueError(f"`output_dir` must be a directory path. Received: {output_dir!r}")
    stages = [
        ("stage1", config.stage1, _check_dataset(stage1_train, "stage1_train",
                                                 config.batch_size, True)),
        ("stage2", config.stage2, _check_dataset(stage2_train, "stage2_train",
                                                 config.batch_size, True)),
    ]
    for name, stage, dataset in stages:
        if stage.epochs and dataset is None:
            raise ValueError(
                f"`{name}_train` is None but config.{name}.epochs={stage.epochs}. "
                f"Pass a dataset or set {name}.epochs=0 to skip the stage."
            )
    validation = _check_dataset(validation, "validation", config.batch_size, False)
    has_validation = validation is not None
    plateau_monitor = _resolve_monitor(config.plateau_monitor, has_validation)
    checkpoint_monitor = _resolve_monitor(config.checkpoint_monitor, has_validation)

    strategy = get_strategy(strategy)
    chief = _is_chief(strategy)
    output_dir = os.fspath(output_dir)
    if not chief:
        # Workers other than the chief write their (identical) state aside.
        resolver = strategy.cluster_resolver
        output_dir = os.path.join(
            output_dir, "workers", f"{resolver.task_type}_{resolver.task_id}"
        )
    os.makedirs(output_dir, exist_ok=True)
    config_path = os.path.join(output_dir, "config.json")
    if os.path.exists(config_path):
        try:
            previous = TrainingConfig.load(config_path)
        except (ValueError, OSError, json.JSONDecodeError):
            previous = None
        if previous is not None and previous != config:
            warnings.warn(
                f"{config_path} holds a different TrainingConfig: resuming a run with "
                "changed settings. Completed stages are not retrained.",
                stacklevel=2,
            )
    config.save(config_path)

    with strategy.scope():
        model = build_model()
        if not isinstance(model, keras.Model):
            raise ValueError(
                f"`build_model()` must return a keras.Model. Received: {type(model).__name__}"
            )

    history = {}
    previous_dir = None
    for name, stage, dataset in stages:
        stage_dir = os.path.join(output_dir, name)
        if not stage.epochs:
            history[name] = {}
            continue
        if previous_dir is not None:
            init = os.path.join(
                previous_dir,
                "best.weights.h5" if config.stage2_init == "best" else "final.weights.h5",
            )
            if not os.path.exists(init):  # "best" without a monitored value.
                init = os.path.join(previous_dir, "final.weights.h5")
            model.load_weights(init)
        marker = os.path.join(stage_dir, "COMPLETE.json")
        if os.path.exists(marker):
            model.load_weights(os.path.join(stage_dir, "final.weights.h5"))
            shutil.rmtree(os.path.join(stage_dir, "backup"), ignore_errors=True)
        else:
            _run_stage(
                model, name, stage, dataset, validation, output_dir, stage_dir, config,
                strategy, plateau_monitor, checkpoint_monitor, list(callbacks),
            )
        history[name] = _read_history(os.path.join(stage_dir, "history.csv"))
        previous_dir = stage_dir

    if previous_dir is not None:
        atomic_save_weights(model, os.path.join(output_dir, "final.weights.h5"))
    return model, history


def _run_stage(model, name, stage, dataset, validation, output_dir, stage_dir, config,
               strategy, plateau_monitor, checkpoint_monitor, extra_callbacks):
    os.makedirs(stage_dir, exist_ok=True)
    with strategy.scope():
        optimizer = getattr(model, "optimizer", None)
        if (
            config.lr_schedule != "step"
            and optimizer is not None
            and optimizer.built
            and getattr(model, "_deconvnet_compiled", False)
        ):
            # Stage 2 after stage 1 in this process: a fresh optimizer state
            # (zero momentum and step count, the stage's learning rate) without
            # recompiling, so the traced (or XLA-compiled) train step is reused.
            for variable in optimizer.variables:
                variable.assign(keras.ops.zeros(variable.shape, variable.dtype))
            optimizer.learning_rate = float(stage.learning_rate)
        else:
            compile_for_training(model, config, stage)
            model._deconvnet_compiled = True
    backup_dir = os.path.join(stage_dir, "backup")
    callbacks = list(extra_callbacks) + [
        keras.callbacks.BackupAndRestore(
            backup_dir,
            save_freq=config.backup_save_freq,
            double_checkpoint=True,
            delete_checkpoint=False,  # Removed below, after COMPLETE.json exists.
        ),
        keras.callbacks.CSVLogger(os.path.join(stage_dir, "history.csv"), append=True),
        AtomicCheckpoint(stage_dir, monitor=checkpoint_monitor),
        keras.callbacks.TerminateOnNaN(),
    ]
    if config.lr_schedule == "plateau":
        callbacks.append(
            keras.callbacks.ReduceLROnPlateau(
                monitor=plateau_monitor,
                factor=config.lr_decay_factor,
                patience=config.plateau_patience,
                min_lr=config.min_learning_rate,
                mode="max" if ("iou" in plateau_monitor or "acc" in plateau_monitor)
                else "min",
                verbose=1 if config.verbose else 0,
            )
        )
    if config.tensorboard and importlib.util.find_spec("tensorboard") is None:
        warnings.warn(
            "TrainingConfig.tensorboard is True but the `tensorboard` package is not "
            "installed (`pip install tensorboard`): no TensorBoard logs are written.",
            stacklevel=3,
        )
    elif config.tensorboard:
        callbacks.append(
            keras.callbacks.TensorBoard(
                os.path.join(output_dir, "logs", name), profile_batch=0
            )
        )
    model.fit(
        dataset,
        epochs=stage.epochs,
        steps_per_epoch=stage.steps_per_epoch,
        validation_data=validation,
        validation_steps=stage.validation_steps if validation is not None else None,
        callbacks=callbacks,
        verbose=config.verbose,
        shuffle=False,  # tf.data datasets are shuffled by their pipeline.
    )
    if model.stop_training and _last_loss_is_nan(model):
        raise RuntimeError(
            f"{name} stopped on a NaN loss; the stage is not marked complete. "
            f"Lower the learning rate and rerun (the backup in {backup_dir} is kept)."
        )
    # Every worker writes its own (identical) copy: non-chief workers under
    # output_dir/workers/, so that all of them skip the same stages on a rerun.
    atomic_save_weights(model, os.path.join(stage_dir, "final.weights.h5"))
    atomic_write_json(
        {"stage": name, "epochs": stage.epochs, "config": dataclasses.asdict(stage)},
        os.path.join(stage_dir, "COMPLETE.json"),
    )
    shutil.rmtree(backup_dir, ignore_errors=True)


def _last_loss_is_nan(model) -> bool:
    history = getattr(model, "history", None)
    losses = getattr(history, "history", {}).get("loss", []) if history else []
    return bool(losses) and math.isnan(float(losses[-1]))
