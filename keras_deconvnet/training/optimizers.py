"""The paper's optimiser: SGD, momentum 0.9, learning rate 0.01, weight decay 0.0005.

Weight decay in Caffe (and in PyTorch's `SGD(weight_decay=...)`) is an L2 term added
to the gradient *before* the momentum update: `v = m * v + lr * (g + wd * w)`,
`w -= v`. Keras 3's `weight_decay=` argument is *decoupled* instead (AdamW style:
`w -= lr * wd * w` outside the momentum), which with momentum 0.9 decays about 10x
less in the steady state, so the paper's 0.0005 would not mean the same thing.
`CaffeSGD` reproduces the coupled form: it adds `wd * w` to the gradient in
`update_step`, which Keras calls with the gradient already averaged over
accumulation steps and summed over replicas, so it is applied once per update
whatever the distribution strategy or accumulation. An L2 `kernel_regularizer`
would give the same update but has to be set on every layer when the model is
built (and is added to the loss, which then no longer reads as cross-entropy).
"""

from __future__ import annotations

import keras


@keras.saving.register_keras_serializable(package="keras_deconvnet")
class CaffeSGD(keras.optimizers.SGD):
    """SGD with momentum and coupled (L2, Caffe-style) weight decay.

    The update is Caffe's: `v = momentum * v + lr * (g + weight_decay * w)`,
    `w = w - v`. Exclude variables (e.g. biases or BatchNorm parameters) with
    `exclude_from_weight_decay(var_names=[...])` before the optimizer is built.

    Args:
        learning_rate: float or a `keras.optimizers.schedules.LearningRateSchedule`.
            Defaults to `0.01` (the paper).
        momentum: float in [0, 1]. Defaults to `0.9`.
        weight_decay: float >= 0, the L2 coefficient added to the gradients.
            Defaults to `0.0005`.
        nesterov: bool. Defaults to `False`.
        **kwargs: other `keras.optimizers.SGD` arguments, such as
            `gradient_accumulation_steps` (Caffe's `iter_size`), `clipnorm`, `name`.

    Example:

    >>> optimizer = CaffeSGD(gradient_accumulation_steps=8)  # batch 8 x 8 = 64
    >>> optimizer.weight_decay_l2, optimizer.momentum
    (0.0005, 0.9)
    """

    def __init__(
        self,
        learning_rate=0.01,
        momentum: float = 0.9,
        weight_decay: float = 5e-4,
        nesterov: bool = False,
        **kwargs,
    ):
        if weight_decay is None:
            weight_decay = 0.0
        if isinstance(weight_decay, bool) or not isinstance(weight_decay, (int, float)) or (
            weight_decay < 0
        ):
            raise ValueError(
                "`weight_decay` must be a float >= 0. "
                f"Received: weight_decay={weight_decay!r}"
            )
        kwargs.setdefault("name", "caffe_sgd")
        super().__init__(
            learning_rate=learning_rate,
            momentum=float(momentum),
            nesterov=nesterov,
            weight_decay=None,  # Keras's decoupled decay stays off.
            **kwargs,
        )
        self.weight_decay_l2 = float(weight_decay)

    def update_step(self, gradient, variable, learning_rate):
        if self.weight_decay_l2 and self._use_weight_decay(variable):
            gradient = gradient + keras.ops.cast(
                self.weight_decay_l2, gradient.dtype
            ) * keras.ops.cast(variable, gradient.dtype)
        super().update_step(gradient, variable, learning_rate)

    def get_config(self):
        config = super().get_config()
        config["weight_decay"] = self.weight_decay_l2
        return config


def build_optimizer(
    learning_rate: float = 0.01,
    momentum: float = 0.9,
    weight_decay: float = 5e-4,
    weight_decay_mode: str = "coupled",
    lr_step_size: int | None = None,
    lr_decay_factor: float = 0.1,
    gradient_accumulation_steps: int | None = None,
) -> keras.optimizers.Optimizer:
    """The paper's SGD, with an optional step schedule like the original solver.

    Args:
        learning_rate: initial learning rate. Defaults to `0.01`.
        momentum: SGD momentum. Defaults to `0.9`.
        weight_decay: decay coefficient. Defaults to `0.0005`.
        weight_decay_mode: `"coupled"` (default: L2 added to the gradient, as Caffe;
            a `CaffeSGD`) or `"decoupled"` (Keras's `SGD(weight_decay=...)`).
        lr_step_size: if set, multiply the learning rate by `lr_decay_factor` every
            `lr_step_size` optimizer updates (Caffe's `lr_policy: "step"`; with
            gradient accumulation an update is one accumulated step, as Caffe's
            iterations). `None` (default) keeps it constant, for `ReduceLROnPlateau`.
        lr_decay_factor: the step factor. Defaults to `0.1`.
        gradient_accumulation_steps: `None` or an int >= 2: average the gradients
            of that many batches per update (the original: batch 8 x 8).

    Returns:
        A `keras.optimizers.Optimizer`.

    Example:

    >>> optimizer = build_optimizer(lr_step_size=9000)  # the original stage 1
    >>> round(float(optimizer.learning_rate), 6)
    0.01
    """
    if weight_decay_mode not in ("coupled", "decoupled"):
        raise ValueError(
            "`weight_decay_mode` must be 'coupled' or 'decoupled'. "
            f"Received: weight_decay_mode={weight_decay_mode!r}"
        )
    if not isinstance(learning_rate, (int, float)) or learning_rate <= 0:
        raise ValueError(
            f"`learning_rate` must be a float > 0. Received: learning_rate={learning_rate!r}"
        )
    if gradient_accumulation_steps is not None and (
        not isinstance(gradient_accumulation_steps, int) or gradient_accumulation_steps < 1
    ):
        raise ValueError(
            "`gradient_accumulation_steps` must be None or an int >= 1. "
            f"Received: gradient_accumulation_steps={gradient_accumulation_steps!r}"
        )
    if gradient_accumulation_steps == 1:
        gradient_accumulation_steps = None
    schedule = float(learning_rate)
    if lr_step_size is not None:
        if not isinstance(lr_step_size, int) or lr_step_size < 1:
            raise ValueError(
                f"`lr_step_size` must be None or an int >= 1. Received: lr_step_size="
                f"{lr_step_size!r}"
            )
        schedule = keras.optimizers.schedules.ExponentialDecay(
            float(learning_rate), lr_step_size, float(lr_decay_factor), staircase=True
        )
    if weight_decay_mode == "coupled":
        return CaffeSGD(
            learning_rate=schedule,
            momentum=momentum,
            weight_decay=weight_decay,
            gradient_accumulation_steps=gradient_accumulation_steps,
        )
    return keras.optimizers.SGD(
        learning_rate=schedule,
        momentum=float(momentum),
        weight_decay=weight_decay or None,
        gradient_accumulation_steps=gradient_accumulation_steps,
    )
