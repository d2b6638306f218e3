"""The paper's two-stage training (Noh et al. 2015, section 4.2), as the authors ran it.

Stage 1 trains on object-centred crops (only the centred object labelled), stage 2
continues from stage 1's weights on proposal crops with every class labelled, then
BatchNorm statistics are recomputed over training batches. The defaults are the
authors' Caffe solver and scripts (HyeonwooNoh/DeconvNet, `training/`): batches of
8 accumulated 8 times (64 per update), SGD with momentum 0.9, learning rate 0.01
(biases x2, not decayed), weight decay 0.0005, the learning rate x0.1 every 9000
updates of 20000 (stage 1) and every 10000 of 40000 (stage 2), softmax
cross-entropy ignoring label 255, and BN statistics from 501 batches of 28 after
stage 2. Each is a `TrainingConfig` field (`keras_deconvnet.training.config`); the
stages themselves run in `keras_deconvnet.training.stages`.

`train_two_stage` is restartable: kill it at any point (inside a stage, between
stages, during the BN recomputation) and run it again with the same `output_dir`:
every stage still runs all its epochs, and when the datasets are given as functions
that build them (as `train_recipe` does) the resumed run ends with the same weights,
bit for bit, as one that was never interrupted (how: `keras_deconvnet.training.
stages`). A second run on the same directory stops at once with a one-line error
(an exclusive lock). Nothing is written to `output_dir` before the datasets and the
model have been built, so a run that fails to start leaves no trace there.
Temporary files that a kill left behind are removed when a run starts. Layout of
`output_dir`:

```
.lock                        held while a run is going (flock; released on exit)
config.json                  the TrainingConfig used
stage1/ stage2/
    backup/                  ckpt-NNNNNN.weights.h5 + .json: the two newest epoch
                             backups (weights, optimizer, schedule counters);
                             removed when done
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

import contextlib
import os
import re
import shutil
import warnings
from collections.abc import Callable, Sequence

import keras
import tensorflow as tf

from keras_deconvnet.training.checkpoints import CheckpointError
from keras_deconvnet.training.config import (
    TrainingConfig,
    as_training_config,
    resolve_monitor,
)
from keras_deconvnet.training.distributed import get_strategy, is_chief
from keras_deconvnet.training.output_lock import OutputDirLock
from keras_deconvnet.training.stages import Stage, TrainingRun, run_stages

__all__ = ["train_two_stage"]


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
            only if `config.stage1.epochs == 0`. Pass a function for an exact
            resume: it is called for every use (the stage's `fit`, the BN
            statistics), each time giving a new dataset with the same seeds, while
            a dataset object carries `tf.data` random state from one use (and one
            process) to the next.
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
    _check_build_model(build_model)
    config = as_training_config(config)
    if not output_dir:
        raise ValueError(f"`output_dir` must be a directory path. Received: {output_dir!r}")
    strategy = get_strategy(strategy)  # before any dataset is built
    output_dir = os.fspath(output_dir)
    stages = _stages(config, output_dir, stage1_train, stage2_train)
    validation = _check_dataset(validation, "validation", config.batch_size, False)
    resolve_monitor(config.plateau_monitor, validation is not None)
    resolve_monitor(config.checkpoint_monitor, validation is not None)
    _check_replicas(config, strategy)

    chief = is_chief(strategy)
    # Built before anything is written: a model that cannot be built (weights
    # offline, a bad preset) leaves `output_dir` untouched.
    model = _build_model(build_model, strategy)
    with OutputDirLock(output_dir) if chief else contextlib.nullcontext():
        if chief:
            remove_partial_files(output_dir)
            _save_config(config, output_dir, stages)
        run = TrainingRun(model, config, strategy, output_dir, chief, validation,
                          list(callbacks))
        history = run_stages(run, stages)
    return model, history


# What `atomic_io` writes before its final rename: `.NAME.tmp-XXXX.SUFFIX` files,
# `.NAME.partial-XXXX` and `.NAME.old-XXXX` directories.
_PARTIAL = re.compile(r"^\..+\.(tmp|partial|old)-[A-Za-z0-9_]+")


def remove_partial_files(output_dir: str) -> list[str]:
    """Removes the temporary files and directories a killed run left in `output_dir`.

    Only names of `atomic_io`'s temporary form are touched, and only while the
    caller holds the directory's lock (no other writer can be using them).

    Returns:
        The paths removed.

    Example:

    >>> import tempfile
    >>> remove_partial_files(tempfile.mkdtemp())
    []
    """
    removed = []
    for root, dirs, files in os.walk(output_dir):
        for name in [*files, *dirs]:
            if not _PARTIAL.match(name):
                continue
            path = os.path.join(root, name)
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path, ignore_errors=True)
            else:
                with contextlib.suppress(FileNotFoundError):
                    os.remove(path)
            removed.append(path)
        dirs[:] = [d for d in dirs if not _PARTIAL.match(d)]
    return sorted(removed)


def _check_build_model(build_model) -> None:
    if isinstance(build_model, keras.Model) or not callable(build_model):
        raise ValueError(
            "`build_model` must be a function returning a new Keras model (it is "
            "called inside the strategy's scope), not a model. "
            f"Received: {type(build_model).__name__}"
        )


def _build_model(build_model, strategy) -> keras.Model:
    with strategy.scope():
        model = build_model()
    if not isinstance(model, keras.Model):
        raise ValueError(
            f"`build_model()` must return a keras.Model. Received: {type(model).__name__}"
        )
    return model


def _stages(config: TrainingConfig, output_dir: str, stage1_train, stage2_train) -> list:
    """The two `Stage`s, their datasets checked (and batched if needed)."""
    stages = [
        Stage(name, getattr(config, name),
              _stage_data(data, f"{name}_train", config.batch_size),
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
    return stages


def _stage_data(data, name: str, batch_size: int):
    """A stage's dataset, checked; a function is checked now (called once) and
    kept as a function returning a new checked dataset at each call."""
    if data is None or isinstance(data, tf.data.Dataset) or not callable(data):
        return _check_dataset(data, name, batch_size, True)
    _check_dataset(data(), name, batch_size, True)

    def make():
        return _check_dataset(data(), name, batch_size, True)

    return make


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



def _check_replicas(config: TrainingConfig, strategy) -> None:
    replicas = strategy.num_replicas_in_sync
    if replicas > 1 and config.batch_size % replicas:
        raise ValueError(
            f"`batch_size` {config.batch_size} is the global batch, split across "
            f"{replicas} replicas: it must be a multiple of {replicas}."
        )


def _save_config(config: TrainingConfig, output_dir: str, stages=()) -> None:
    config_path = os.path.join(output_dir, "config.json")
    trained = any(os.path.exists(os.path.join(stage.directory, name)) for stage in stages
                  for name in ("COMPLETE.json", "backup", "history.csv"))
    if trained and os.path.exists(config_path):
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

