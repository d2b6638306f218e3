"""The stages of one `train_two_stage` run: each trained, skipped or resumed.

`run_stages` goes through the stages in order. A stage whose `COMPLETE.json` exists
is skipped (its weights are loaded before the next stage trains, `final` or, for
`stage2_init="best"`, `best`); any other runs in full through `_StageRunner`:
compile (or reset the optimizer of an earlier stage), restore the newest epoch
backup, position the data where the interrupted run was, the callbacks (atomic
best/last checkpoints, NaN stop, plateau schedule, TensorBoard, CSV history, and
the epoch backup last, so that a backup exists only for an epoch whose history row
and checkpoints are written), `model.fit` or `DistributedLoop`, then its final
weights and marker. After the last stage BatchNorm statistics are recomputed,
resumably, inside that stage's directory. The directory layout is in
`keras_deconvnet.training.two_stage`.

Exact resume: a resumed run ends with the same weights, bit for bit, as a run that
was never interrupted. Everything a stage's training depends on is either in the
backup (weights, optimizer variables: momentum, accumulators, update count,
learning rate; BatchNorm moving statistics; the plateau schedule's counters) or
rebuilt identically: a stage's data comes from a *new* dataset (the stage's
dataset function called again) advanced past the batches that the completed
epochs consumed, and the BatchNorm statistics read a new dataset too, so no
`tf.data` random state of an earlier iterator leaks into them.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
import math
import os
import shutil
import warnings
from collections.abc import Callable

import keras
import tensorflow as tf

from keras_deconvnet import atomic_io, private_apis
from keras_deconvnet.training.batchnorm import (
    batchnorm_layers,
    recompute_batchnorm_statistics,
)
from keras_deconvnet.training.checkpoints import (
    AtomicCheckpoint,
    EpochBackup,
    atomic_save_weights,
    callback_states,
    load_first_readable,
    read_json_file,
    restore_metric_variables,
)
from keras_deconvnet.training.compile import compile_for_training
from keras_deconvnet.training.config import StageConfig, TrainingConfig, resolve_monitor
from keras_deconvnet.training.distributed import DistributedLoop, needs_custom_loop
from keras_deconvnet.training.history import HistoryLogger, read_history
from keras_deconvnet.training.losses import stage_class_weights
from keras_deconvnet.training.progress import (
    BatchProgress,
    PlainProgress,
    announce,
    fit_verbosity,
)

_DESCRIPTIONS = {"stage1": "object-centred crops", "stage2": "proposal crops"}


@dataclasses.dataclass
class Stage:
    """One stage to run.

    Args:
        name: `"stage1"` or `"stage2"`.
        config: its `StageConfig`.
        dataset: its batched `(images, masks)` dataset, a function of no arguments
            returning a new one (needed for an exact resume: each use reads a new
            dataset, see the module docstring), or `None` (a skipped stage).
        directory: its directory, `output_dir/name`.

    Example:

    >>> Stage("stage1", StageConfig(), None, os.path.join("run", "stage1")).marker
    'run/stage1/COMPLETE.json'
    """

    name: str
    config: StageConfig
    dataset: tf.data.Dataset | Callable[[], tf.data.Dataset] | None
    directory: str

    @property
    def marker(self) -> str:
        """`COMPLETE.json`: written when the stage finished."""
        return os.path.join(self.directory, "COMPLETE.json")

    @property
    def final(self) -> str:
        """The weights at the end of the stage."""
        return os.path.join(self.directory, "final.weights.h5")

    @property
    def backup_dir(self) -> str:
        """The epoch backups, removed when the stage is complete."""
        return os.path.join(self.directory, "backup")

    def make_dataset(self) -> tf.data.Dataset | None:
        """The stage's dataset: a new one when `dataset` is a function."""
        if self.dataset is None or isinstance(self.dataset, tf.data.Dataset):
            return self.dataset
        return self.dataset()


def positioned_dataset(dataset: tf.data.Dataset, epochs_done: int,
                       steps_per_epoch: int | None, batches_done: int = 0) -> tf.data.Dataset:
    """`dataset` advanced to where an uninterrupted `fit` reads batch `batches_done`
    of epoch `epochs_done` (0-based).

    With `steps_per_epoch`, `fit` reads one iterator across epochs: the first
    `epochs_done * steps_per_epoch + batches_done` batches are skipped. Without,
    `fit` starts a new iterator (new shuffle and augmentation draws) every epoch:
    `epochs_done` passes are read and discarded, then `batches_done` batches of the
    next. Either way the data pipeline runs for those batches (the model does not),
    which is what makes the continuation the same sequence.

    Example:

    >>> data = tf.data.Dataset.range(10).repeat()
    >>> int(next(iter(positioned_dataset(data, 2, 3))))
    6
    """
    if steps_per_epoch:
        skipped = epochs_done * steps_per_epoch + batches_done
        return dataset.skip(skipped) if skipped else dataset
    for _ in range(epochs_done):
        for _ in dataset:
            pass
    return dataset.skip(batches_done) if batches_done else dataset


@dataclasses.dataclass
class TrainingRun:
    """What every stage of one `train_two_stage` call shares.

    Args:
        model: the model, built inside `strategy.scope()`.
        config: the `TrainingConfig`.
        strategy: the `tf.distribute.Strategy`.
        output_dir: the run's directory.
        chief: whether this worker writes the files.
        validation: the batched validation dataset, or `None`.
        extra_callbacks: the caller's Keras callbacks, for every stage.
        compile_key: what the model was last compiled for (set by the stages).

    Example:

    >>> model = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(3, 1)])
    >>> run = TrainingRun(model, TrainingConfig(), tf.distribute.get_strategy(), "run",
    ...                   chief=True, validation=None, extra_callbacks=[])
    >>> run.checkpoint_monitor, run.uses_loop
    ('loss', False)
    """

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
        """The log `ReduceLROnPlateau` watches."""
        return resolve_monitor(self.config.plateau_monitor, self.validation is not None)

    @property
    def checkpoint_monitor(self) -> str:
        """The log that picks `best.weights.h5`."""
        return resolve_monitor(self.config.checkpoint_monitor, self.validation is not None)

    @functools.cached_property
    def loop(self) -> DistributedLoop:
        """One loop for every stage: its traced steps are reused."""
        return DistributedLoop(self.model, self.strategy)

    @property
    def uses_loop(self) -> bool:
        """Whether the stages run `DistributedLoop` rather than `model.fit`."""
        engine = self.config.engine
        return engine == "loop" or (engine == "auto" and needs_custom_loop(self.strategy))


class _StageRunner:
    """Runs one stage: compile, restore, callbacks, `fit` (or the loop), marker."""

    def __init__(self, run: TrainingRun, stage: Stage, number: str = ""):
        self.run = run
        self.stage = stage
        self.number = number
        self.backup_dir = stage.backup_dir

    @property
    def talks(self) -> bool:
        return self.run.chief and self.run.config.verbose != 0

    def __call__(self) -> dict:
        """Runs the stage; returns its history (every epoch, restarts included)."""
        run, stage = self.run, self.stage
        if run.chief:
            os.makedirs(stage.directory, exist_ok=True)
        self.compile()
        private_apis.set_initial_epoch(run.model, None)  # never from an earlier fit
        plateau = self.plateau()
        backup = EpochBackup(self.backup_dir, save_freq=run.config.backup_save_freq,
                             enabled=run.chief, restore_on_train_begin=False,
                             state_callbacks=plateau)
        epoch = backup.restore(run.model)
        record = backup.restored_record or {}
        batch = record.get("batch", 0) if epoch < stage.config.epochs else 0
        batch = batch if isinstance(batch, int) and batch > 0 else 0
        self.announce(epoch, backup, batch)
        history = HistoryLogger(os.path.join(stage.directory, "history.csv"),
                                enabled=run.chief)
        # The backup comes last: written once the epoch's history row and
        # checkpoints are, so that a resume never skips a row.
        callbacks = [*self.callbacks(), *plateau, *self.progress(), history, backup]
        steps = stage.config.steps_per_epoch
        if batch:
            # A mid-epoch backup: first the rest of that epoch, its running
            # metrics as they were, then the other epochs on a new dataset.
            dataset = positioned_dataset(stage.make_dataset(), epoch, steps, batch)
            backup.batch_offset = batch
            metrics = _MetricState(record.get("metrics"))
            self.fit(dataset, [metrics, *callbacks], epoch, epochs=epoch + 1,
                     steps=steps - batch if steps else None)
            backup.batch_offset = 0
            backup.restored_record = {"callbacks": callback_states(plateau)}
            epoch += 1
        if epoch < stage.config.epochs or not batch:
            self.fit(positioned_dataset(stage.make_dataset(), epoch, steps), callbacks, epoch)
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

    def announce(self, epoch: int, backup: EpochBackup, batch: int = 0) -> None:
        """The stage's header, and where a resumed stage continues."""
        stage, config = self.stage, self.stage.config
        steps = f"{config.steps_per_epoch} batches" if config.steps_per_epoch else "one pass"
        title = f"Stage {self.number} " if self.number else "Stage "
        announce(f"{title}({stage.name}, {_DESCRIPTIONS.get(stage.name, 'training')}): "
                 f"{config.epochs} epochs of {steps}, learning rate {config.learning_rate:g}, "
                 f"in {stage.directory}", self.talks)
        if backup.restored_path is None:
            return
        if epoch >= config.epochs:
            where = "every epoch was done before the interruption: finishing the stage"
        else:
            where = f"continuing at epoch {epoch + 1} of {config.epochs}"
            if batch:
                where += f", batch {batch + 1}"
        used = epoch * (config.steps_per_epoch or 0) + batch
        replay = (f"; the data pipeline replays the {used} batches already used, so "
                  "that training continues on the same sequence"
                  if used and config.steps_per_epoch and epoch < config.epochs else "")
        announce(f"{stage.name}: resumed from {backup.restored_path} ({epoch} epochs done), "
                 f"{where}{replay}", self.talks)

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

    def fit(self, dataset, callbacks: list, initial_epoch: int = 0,
            epochs: int | None = None, steps: int | None = -1) -> None:
        run, stage = self.run, self.stage
        verbose = fit_verbosity(run.config.verbose)[0] if run.chief else 0
        kwargs = dict(
            epochs=stage.config.epochs if epochs is None else epochs,
            steps_per_epoch=stage.config.steps_per_epoch if steps == -1 else steps,
            validation_data=run.validation,
            validation_steps=stage.config.validation_steps if run.validation else None,
            callbacks=callbacks,
            verbose=verbose,
        )
        # Read by `fit` and `DistributedLoop.fit` alike; cleared afterwards.
        private_apis.set_initial_epoch(run.model, initial_epoch or None)
        try:
            if run.uses_loop:
                run.loop.fit(dataset, **kwargs)
            else:
                run.model.fit(dataset, shuffle=False, **kwargs)
        finally:
            private_apis.set_initial_epoch(run.model, None)

    def class_weights(self) -> list[float] | None:
        run, stage = self.run, self.stage
        return stage_class_weights(run.config, stage.make_dataset(),
                                   run.model.output_shape[-1], stage.directory,
                                   write=run.chief)

    def plateau(self) -> list:
        """`[ReduceLROnPlateau]` with `lr_schedule="plateau"`, else `[]`."""
        run, config = self.run, self.run.config
        if config.lr_schedule != "plateau":
            return []
        monitor = run.plateau_monitor
        return [keras.callbacks.ReduceLROnPlateau(
            monitor=monitor, factor=config.lr_decay_factor,
            patience=config.plateau_patience, min_lr=config.min_learning_rate,
            mode="max" if ("iou" in monitor or "acc" in monitor) else "min",
            verbose=1 if config.verbose and run.chief else 0,
        )]

    def progress(self) -> list:
        """Plain progress lines when standard output is not a terminal."""
        if not self.run.chief or not fit_verbosity(self.run.config.verbose)[1]:
            return []
        config = self.stage.config
        return [PlainProgress(self.stage.name, config.epochs, config.steps_per_epoch)]

    def callbacks(self) -> list:
        run, stage, config = self.run, self.stage, self.run.config
        callbacks = list(run.extra_callbacks) + [
            AtomicCheckpoint(stage.directory, monitor=run.checkpoint_monitor,
                             enabled=run.chief),
            keras.callbacks.TerminateOnNaN(),
        ]
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


class _MetricState(keras.callbacks.Callback):
    """Puts a mid-epoch backup's metric variables back, so that the resumed epoch's
    logs count every batch of it: when the epoch begins (after `fit` reset them)
    if the metrics are built, else added after its first batch (Keras builds them
    in the first training step; they are sums)."""

    def __init__(self, values):
        super().__init__()
        self.values = values

    def on_epoch_begin(self, epoch, logs=None):
        if self.values is not None and restore_metric_variables(self.model, self.values):
            self.values = None

    def on_train_batch_end(self, batch, logs=None):
        if self.values is not None and not restore_metric_variables(
            self.model, self.values, add=True
        ):
            warnings.warn("the backup's metric values do not fit the model: the resumed "
                          "epoch's logs count only its remaining batches", stacklevel=2)
        self.values = None


def _load_stage_weights(model, stage: Stage, which: str = "final") -> str:
    """Loads a completed stage's `final` (or `best`) weights, falling back to its
    last epoch's weights when the file is unreadable; returns the path loaded."""
    candidates = [os.path.join(stage.directory, f"{which}.weights.h5")]
    if which == "best":
        candidates.append(stage.final)
    candidates.append(os.path.join(stage.directory, "last.weights.h5"))
    existing = [p for p in candidates if os.path.exists(p)] or candidates[:1]
    return load_first_readable(model, existing, f"{stage.name}'s weights")


def _restore_completed(run: TrainingRun, stage: Stage) -> None:
    """The state a completed last stage left in memory: compiled as it was, its
    optimizer built, its final weights and optimizer variables loaded (so that the
    files written after it hold the whole optimizer state, as after a run that was
    never interrupted)."""
    _StageRunner(run, stage).compile()
    optimizer = run.model.optimizer
    if not optimizer.built:
        with run.strategy.scope():
            optimizer.build(run.model.trainable_variables)
    _load_stage_weights(run.model, stage, "final")


def _recompute_batchnorm(run: TrainingRun, stage: Stage) -> bool:
    """BN statistics after the last stage, resumable: returns True when applied.

    Kept inside that stage's directory, so that a later run which trains another
    stage after it (or retrains it) never picks up statistics of other weights.
    The batches come from a new dataset (`Stage.make_dataset`), the same in a
    resumed run as in one that was never interrupted.
    """
    config = run.config
    talks = run.chief and config.verbose != 0
    if not config.recompute_batchnorm or stage.dataset is None or not batchnorm_layers(
        run.model
    ):
        return False
    directory = os.path.join(stage.directory, "batchnorm")
    marker = os.path.join(directory, "COMPLETE.json")
    final = os.path.join(directory, "final.weights.h5")
    if os.path.exists(marker):
        announce(f"BatchNorm statistics: recomputed before the interruption, loading {final}",
                 talks)
        load_first_readable(run.model, [final], "recomputed BatchNorm weights")
        return True
    dataset = stage.make_dataset()
    if config.batchnorm_batch_size:
        dataset = dataset.unbatch().batch(config.batchnorm_batch_size)
    size = config.batchnorm_batch_size or "the training batch"
    announce(f"BatchNorm statistics: {config.batchnorm_batches} batches of {size} of "
             f"{stage.name}'s training data, the model in training mode "
             "(the authors' BN script)", talks)
    progress = BatchProgress("BatchNorm statistics", config.batchnorm_batches,
                             enabled=talks)
    used = recompute_batchnorm_statistics(
        run.model, dataset, num_batches=config.batchnorm_batches, method="caffe",
        unbiased=config.batchnorm_unbiased, progress=progress)
    progress(used, final=True)
    if run.chief:
        atomic_save_weights(run.model, final)
        atomic_io.write_json(marker, {"batches": used,
                                      "batch_size": config.batchnorm_batch_size,
                                      "unbiased": config.batchnorm_unbiased})
    return True


def run_stages(run: TrainingRun, stages: list[Stage]) -> dict:
    """Runs or skips each stage, then the BN recomputation and `final.weights.h5`.

    Args:
        run: the `TrainingRun`.
        stages: the stages, in order; those with `config.epochs == 0` are skipped.

    Returns:
        `{stage name: {log: [per-epoch values]}}`, every epoch of a completed or
        resumed stage included; empty for a skipped stage.

    Raises:
        RuntimeError: when a stage ends on a NaN loss.
        CheckpointError: when a checkpoint or marker cannot be read.

    Example:

    >>> model = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(3, 1)])
    >>> run = TrainingRun(model, TrainingConfig(), tf.distribute.get_strategy(), "run",
    ...                   chief=True, validation=None, extra_callbacks=[])
    >>> run_stages(run, [Stage("stage1", StageConfig(epochs=0), None, "run/stage1")])
    {'stage1': {}}
    """
    history = {}
    talks = run.chief and run.config.verbose != 0
    active = [stage for stage in stages if stage.config.epochs]
    pending = None  # (stage, which weights) to load before the next stage trains
    last_skipped = False
    for stage in stages:
        history[stage.name] = {}
        if not stage.config.epochs:
            continue
        number = f"{active.index(stage) + 1} of {len(active)}"
        init = "best" if run.config.stage2_init == "best" else "final"
        if os.path.exists(stage.marker):
            read_json_file(stage.marker, f"{stage.name} completion marker")
            announce(f"Stage {number} ({stage.name}): complete ({stage.marker}), skipped",
                     talks)
            if run.chief:  # a kill after the marker, before the backups went
                shutil.rmtree(stage.backup_dir, ignore_errors=True)
            pending, last_skipped = (stage, init), True
            history[stage.name] = read_history(os.path.join(stage.directory, "history.csv"))
            continue
        if pending is not None:
            path = _load_stage_weights(run.model, *pending)
            announce(f"{stage.name} starts from {path}", talks)
        history[stage.name] = _StageRunner(run, stage, number)()
        # The next stage starts from this one's best weights (stage2_init="best")
        # or from the weights in memory, which are its final ones.
        pending = (stage, "best") if init == "best" else None
        last_skipped = False
    if active:
        last = active[-1]
        if last_skipped:
            _restore_completed(run, last)
        _recompute_batchnorm(run, last)
        if run.chief:
            path = os.path.join(run.output_dir, "final.weights.h5")
            atomic_save_weights(run.model, path)
            announce(f"Final weights: {path}", talks)
    return history


def _last_loss_is_nan(model) -> bool:
    history = getattr(model, "history", None)
    losses = getattr(history, "history", {}).get("loss", []) if history else []
    return bool(losses) and math.isnan(float(losses[-1]))
