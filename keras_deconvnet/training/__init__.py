"""Training: the paper's optimiser, two-stage `model.fit` schedule, resume, BN statistics."""

from keras_deconvnet.training.batchnorm import recompute_batchnorm_statistics
from keras_deconvnet.training.callbacks import (
    AtomicCheckpoint,
    atomic_save_weights,
    atomic_write_json,
)
from keras_deconvnet.training.optimizers import CaffeSGD, build_optimizer
from keras_deconvnet.training.two_stage import (
    StageConfig,
    TrainingConfig,
    compile_for_training,
    get_strategy,
    train_two_stage,
)

__all__ = [
    "AtomicCheckpoint",
    "CaffeSGD",
    "StageConfig",
    "TrainingConfig",
    "atomic_save_weights",
    "atomic_write_json",
    "build_optimizer",
    "compile_for_training",
    "get_strategy",
    "recompute_batchnorm_statistics",
    "train_two_stage",
]
