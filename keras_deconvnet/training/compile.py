"""`compile_for_training`: the original solver, loss and metric on a segmenter.

The loss is the prototxts' `SOFTMAX_LOSS` with `ignore_label: 255` (optionally
class-weighted, see `keras_deconvnet.training.losses`), the metric the mean IoU that
`train_two_stage` checkpoints on, the optimizer `build_optimizer`'s `CaffeSGD`.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras

from keras_deconvnet.labels import IGNORE_LABEL
from keras_deconvnet.metrics import MeanIoU
from keras_deconvnet.training.config import StageConfig, TrainingConfig
from keras_deconvnet.training.losses import ClassWeightedCrossentropy
from keras_deconvnet.training.optimizers import build_optimizer


def compile_for_training(
    model: keras.Model,
    config: TrainingConfig,
    stage: StageConfig,
    class_weights: Sequence[float] | None = None,
) -> keras.Model:
    """Compiles `model` with the original solver, loss and a `MeanIoU` metric.

    Call inside the strategy's scope. The optimizer is `build_optimizer(config,
    stage)`: the config's momentum, decay, accumulation, bias multipliers and (with
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
    optimizer = build_optimizer(config, stage)
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
