"""Training: the original solver, two-stage schedule, resume, BN statistics, clusters."""

from keras_deconvnet.training.batchnorm import recompute_batchnorm_statistics
from keras_deconvnet.training.checkpoints import (
    AtomicCheckpoint,
    CheckpointError,
    EpochBackup,
    atomic_save_weights,
)
from keras_deconvnet.training.compile import compile_for_training
from keras_deconvnet.training.config import StageConfig, TrainingConfig
from keras_deconvnet.training.distributed import DistributedLoop, get_strategy, is_chief
from keras_deconvnet.training.history import HistoryLogger, read_history
from keras_deconvnet.training.losses import ClassWeightedCrossentropy, median_frequency_weights
from keras_deconvnet.training.optimizers import CaffeSGD, build_optimizer
from keras_deconvnet.training.output_lock import OutputDirLock, OutputDirLockedError
from keras_deconvnet.training.two_stage import train_two_stage

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
