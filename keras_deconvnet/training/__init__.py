"""Training: the original solver, two-stage schedule, resume, BN statistics, clusters."""

from keras_deconvnet.training.checkpoints import (
    AtomicCheckpoint,
    CheckpointError,
    EpochBackup,
    atomic_save_weights,
)
from keras_deconvnet.training.compile import compile_for_training
from keras_deconvnet.training.config import StageConfig, TrainingConfig
from keras_deconvnet.training.history import HistoryLogger, read_history
from keras_deconvnet.training.losses import ClassWeightedCrossentropy, median_frequency_weights
from keras_deconvnet.training.optimizers import CaffeSGD, build_optimizer
from keras_deconvnet.training.output_lock import OutputDirLock, OutputDirLockedError

# These use TensorFlow (tf.distribute, tf.data): imported on first use, and only under
# the TensorFlow backend (`keras_deconvnet.backends`); the rest runs on every backend.
_TENSORFLOW_ONLY = {
    "recompute_batchnorm_statistics": "keras_deconvnet.training.batchnorm",
    "DistributedLoop": "keras_deconvnet.training.distributed",
    "get_strategy": "keras_deconvnet.training.distributed",
    "is_chief": "keras_deconvnet.training.distributed",
    "train_two_stage": "keras_deconvnet.training.two_stage",
}


def __getattr__(name):
    if name not in _TENSORFLOW_ONLY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    from keras_deconvnet.backends import require_tensorflow

    require_tensorflow(f"keras_deconvnet.training.{name}")
    return getattr(importlib.import_module(_TENSORFLOW_ONLY[name]), name)


__all__ = [
    "AtomicCheckpoint",
    "CaffeSGD",
    "CheckpointError",
    "ClassWeightedCrossentropy",
    "DistributedLoop",
    "EpochBackup",
    "HistoryLogger",
    "OutputDirLock",
    "OutputDirLockedError",
    "StageConfig",
    "TrainingConfig",
    "atomic_save_weights",
    "build_optimizer",
    "compile_for_training",
    "get_strategy",
    "is_chief",
    "median_frequency_weights",
    "read_history",
    "recompute_batchnorm_statistics",
    "train_two_stage",
]
