"""The original solver: SGD, momentum 0.9, learning rate 0.01, weight decay 0.0005.

What the authors' Caffe solver did, and how `CaffeSGD` reproduces it (files of
HyeonwooNoh/DeconvNet):

- `training/00{1,2}_stage_*/solver.prototxt`: `base_lr: 0.01`, `momentum: 0.9`,
  `weight_decay: 0.0005`, `iter_size: 8` (8 batches of 8 accumulated per update),
  `lr_policy: "step"`, `gamma: 0.1`, `stepsize: 9000` (stage 1) / `10000` (stage 2).
- `training/00{1,2}_stage_*/stage_*_train.prototxt`: every convolution and
  deconvolution has `blobs_lr: 1 blobs_lr: 2 weight_decay: 1 weight_decay: 0`: the
  bias learns at twice the rate and is not decayed. The `BN` layers set neither, so
  Caffe's defaults apply to their scale and shift: learning rate x1, decayed x1.

Weight decay in Caffe (and in PyTorch's `SGD(weight_decay=...)`) is an L2 term added
to the gradient *before* the momentum update: `v = m * v + lr * (g + wd * w)`,
`w -= v`. Keras 3's `weight_decay=` argument is *decoupled* instead (AdamW style:
`w -= lr * wd * w` outside the momentum), which with momentum 0.9 decays about 10x
less in the steady state, so the paper's 0.0005 would not mean the same thing.
`CaffeSGD` adds `wd * w` to the gradient in `update_step`, which Keras calls with
the gradient already summed over replicas, so it is applied once per update whatever
the distribution strategy.

How the fork combines `iter_size` batches (HyeonwooNoh/caffe, `src/caffe/solver.cpp`
and `src/caffe/layers/bn_layer.cpp`/`.cu`), which `accumulation_mode="caffe"` (the
default) reproduces:

- `Solver::Step` zeroes every parameter's gradient, then runs `iter_size`
  forward-backward passes; convolutions add their gradients, so the diff holds the
  *sum* of the batches' gradients;
- the BN layer writes its scale and shift gradients with `beta = 0` (overwriting):
  only the *last* batch of each group counts for them;
- `SGDSolver::ComputeUpdateValue` adds `weight_decay * decay_mult * w` to that diff
  and scales the result by `rate * blobs_lr / iter_size`. Relative to the mean
  gradient the decay is `weight_decay / iter_size` (6.25e-5 for 5e-4 and 8), and the
  BN parameters move by `lr / iter_size` times one batch's gradient.

`accumulation_mode="mean"` keeps the averaged form (the mean gradient of the group,
plus `weight_decay * w`, at the full rate for every variable), this package's
earlier behaviour.

Gradient accumulation (Caffe's `iter_size`) is done by `CaffeSGD` itself rather than
by Keras's `gradient_accumulation_steps`: Keras wraps the update in a `cond`, and a
`cond` around the cross-replica all-reduce fails under `MirroredStrategy` and
`MultiWorkerMirroredStrategy` ("merge_call called while defining a new graph").
`CaffeSGD` accumulates every batch and blends "update" and "keep" values with a 0/1
factor, with no control flow, so it runs under every strategy. Its `iterations` (and
the step schedule) count *updates*, as Caffe's iterations do.
"""

from __future__ import annotations

import re

import keras
from keras import ops

from keras_deconvnet.training.config import StageConfig, TrainingConfig

# A Conv2D / Conv2DTranspose / Dense bias ("deconv5_1/bias"); BatchNorm's shift is
# "..._bn/beta" and keeps the defaults, as in the original prototxts.
BIAS_PATTERN = r"(^|/)bias$"
# BatchNormalization's scale and shift ("conv1_1_bn/gamma", ".../beta"): the fork's BN
# layer overwrites their gradients, so only the last batch of a group counts.
BATCHNORM_PATTERN = r"(^|/)(gamma|beta)$"
WEIGHT_DECAY_MODES = ("coupled", "decoupled")
ACCUMULATION_MODES = ("caffe", "mean")


def _check_number(value, name: str, minimum: float = 0.0) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < minimum:
        raise ValueError(f"`{name}` must be a float >= {minimum}. Received: {name}={value!r}")
    return float(value)


@keras.saving.register_keras_serializable(package="keras_deconvnet")
class CaffeSGD(keras.optimizers.SGD):
    """SGD with momentum, Caffe's weight decay, `iter_size` and per-parameter multipliers.

    The update is the fork's: with `N = gradient_accumulation_steps` batches per
    update, learning-rate multiplier `a` and decay multiplier `d` (from
    `param_multipliers`, default `(1, 1)`), `accumulation_mode="caffe"` computes
    `v = momentum * v + (lr * a / N) * (G + d * weight_decay * w)`, `w = w - v`,
    where `G` is the *sum* of the `N` gradients, or only the last batch's gradient
    for variables matching `last_batch_pattern` (BatchNorm's scale and shift in the
    paper recipe). `accumulation_mode="mean"` uses the mean gradient at the full
    rate instead: `v = momentum * v + lr * a * (mean(g) + d * weight_decay * w)`.
    Both are the same for `N = 1`. `weight_decay_mode="decoupled"` replaces the
    decay term by `w = w - lr * a * d * weight_decay * w` before a plain momentum
    step (Keras's and AdamW's form). Variables excluded with
    `exclude_from_weight_decay()` are not decayed.

    Args:
        learning_rate: float or a `keras.optimizers.schedules.LearningRateSchedule`,
            which is evaluated at the number of *updates* made so far. Defaults to
            `0.01` (the original solver's `base_lr`).
        momentum: float in [0, 1]. Defaults to `0.9`.
        weight_decay: float >= 0. Defaults to `0.0005`.
        nesterov: bool. Defaults to `False`.
        gradient_accumulation_steps: `None` or an int >= 1: batches combined per
            update (Caffe's `iter_size`; the original: 8). Defaults to `None`.
        accumulation_mode: `"caffe"` (default: the fork's sum, decay and
            `lr / N` scaling) or `"mean"` (the mean gradient at the full rate).
        last_batch_pattern: `None` (default) or a regex matched (`re.search`)
            against variable paths: in `"caffe"` mode those variables take only
            the last batch's gradient of each group (the fork's BN layer); the
            original: `BATCHNORM_PATTERN`.
        param_multipliers: `None` or a dict `{regex: (lr_multiplier,
            decay_multiplier)}` matched (`re.search`) against each variable's
            `path` (e.g. `"deconv5_1/bias"`); the first match wins. The original:
            `{BIAS_PATTERN: (2.0, 0.0)}`. Defaults to `None` (all `(1, 1)`).
        weight_decay_mode: `"coupled"` (default, Caffe) or `"decoupled"`.
        lr_step_size: multiply the learning rate by `lr_decay_factor` every that
            many *updates* (Caffe's `lr_policy: "step"`); `None` (default): never.
            Kept in a variable that `reset` changes.
        lr_decay_factor: Caffe's `gamma`. Defaults to `0.1`.
        **kwargs: other `keras.optimizers.SGD` arguments (`clipnorm`, `name`, ...).

    Raises:
        ValueError: on a negative decay or multiplier, a bad mode or regex.

    Example:

    >>> optimizer = CaffeSGD(gradient_accumulation_steps=8,  # batch 8 x 8 = 64
    ...                      param_multipliers={BIAS_PATTERN: (2.0, 0.0)},
    ...                      last_batch_pattern=BATCHNORM_PATTERN)
    >>> optimizer.weight_decay_l2, optimizer.momentum, optimizer.accumulation_steps
    (0.0005, 0.9, 8)
    """

    def __init__(
        self,
        learning_rate=0.01,
        momentum: float = 0.9,
        weight_decay: float | None = 5e-4,
        nesterov: bool = False,
        gradient_accumulation_steps: int | None = None,
        param_multipliers: dict | None = None,
        weight_decay_mode: str = "coupled",
        lr_step_size: int | None = None,
        lr_decay_factor: float = 0.1,
        accumulation_mode: str = "caffe",
        last_batch_pattern: str | None = None,
        **kwargs,
    ):
        weight_decay = _check_number(0.0 if weight_decay is None else weight_decay,
                                     "weight_decay")
        if weight_decay_mode not in WEIGHT_DECAY_MODES:
            raise ValueError(
                f"`weight_decay_mode` must be one of {WEIGHT_DECAY_MODES}. "
                f"Received: weight_decay_mode={weight_decay_mode!r}"
            )
        if accumulation_mode not in ACCUMULATION_MODES:
            raise ValueError(
                f"`accumulation_mode` must be one of {ACCUMULATION_MODES}. "
                f"Received: accumulation_mode={accumulation_mode!r}"
            )
        if last_batch_pattern is not None:
            try:
                re.compile(last_batch_pattern)
            except (re.error, TypeError) as e:
                raise ValueError(
                    f"`last_batch_pattern` {last_batch_pattern!r} is not a regex: {e}"
                ) from None
        steps = gradient_accumulation_steps
        if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int)
                                  or steps < 1):
            raise ValueError(
                "`gradient_accumulation_steps` must be None or an int >= 1. "
                f"Received: gradient_accumulation_steps={steps!r}"
            )
        multipliers = _check_multipliers(param_multipliers)
        _check_step_size(lr_step_size)
        if not 0 < lr_decay_factor <= 1:
            raise ValueError(
                f"`lr_decay_factor` must be in (0, 1]. Received: {lr_decay_factor!r}")
        kwargs.setdefault("name", "caffe_sgd")
        super().__init__(
            learning_rate=learning_rate,
            momentum=float(momentum),
            nesterov=nesterov,
            weight_decay=None,  # Keras's decoupled decay stays off: done here.
            gradient_accumulation_steps=None,  # Keras's cond-based one: done here.
            **kwargs,
        )
        self.weight_decay_l2 = weight_decay
        self.weight_decay_mode = weight_decay_mode
        self.accumulation_steps = steps or 1
        self.param_multipliers = multipliers
        self.accumulation_mode = accumulation_mode
        self.last_batch_pattern = last_batch_pattern
        self._multipliers = {}
        self._last_batch_only = {}
        self.lr_decay_factor = float(lr_decay_factor)
        self._initial_lr_step_size = lr_step_size or 0
        self._lr_step_size = None  # a variable once built, so `reset` can change it

    @property
    def iterations(self):
        """Updates made so far (batches // `gradient_accumulation_steps`)."""
        if self.accumulation_steps > 1:
            return ops.floor_divide(self._iterations, self.accumulation_steps)
        return self._iterations

    @property
    def lr_step_size(self) -> int:
        """Updates between x`lr_decay_factor` steps (0: none)."""
        if self._lr_step_size is None:
            return self._initial_lr_step_size
        return int(keras.ops.convert_to_numpy(self._lr_step_size))

    def _get_current_learning_rate(self):
        # Keras evaluates schedules at the batch count; Caffe's "step" policy counts
        # updates (`iter_size` batches each).
        if isinstance(self._learning_rate, keras.optimizers.schedules.LearningRateSchedule):
            return self._learning_rate(self.iterations)
        base = super()._get_current_learning_rate()
        step = self._lr_step_size
        if step is None:
            if not self._initial_lr_step_size:
                return base
            step = self._initial_lr_step_size
        step = ops.cast(step, "float32")
        updates = ops.cast(self.iterations, "float32")
        # Caffe's "step": base_lr * gamma ^ floor(iter / stepsize); stepsize 0: none.
        exponent = ops.where(step > 0, ops.floor(updates / ops.maximum(step, 1.0)), 0.0)
        return ops.cast(base, "float32") * ops.power(self.lr_decay_factor, exponent)

    def build(self, variables):
        if self.built:
            return
        super().build(variables)
        self._lr_step_size = self.add_variable(
            (), initializer=keras.initializers.Constant(self._initial_lr_step_size),
            dtype="int64", name="lr_step_size")
        if self.accumulation_steps > 1:
            self.accumulators = self.add_optimizer_variables(variables, "accumulator")
        for variable in variables:
            path = getattr(variable, "path", None) or getattr(variable, "name", "")
            self._multipliers[self._var_key(variable)] = self.multipliers_for(path)
            self._last_batch_only[self._var_key(variable)] = bool(
                self.last_batch_pattern and re.search(self.last_batch_pattern, path))

    def reset(self, learning_rate: float | None = None, lr_step_size: int | None = None):
        """A fresh start (zero momentum, accumulators and update count) with a new
        learning rate and step, without rebuilding: the traced (or XLA-compiled)
        training step stays valid, so a second stage does not compile it again.

        Args:
            learning_rate: the new base learning rate, or None to keep it.
            lr_step_size: the new step size (0 or None: no step).

        Raises:
            ValueError: before the optimizer is built, or on a bad value.
        """
        if not self.built:
            raise ValueError("`reset` needs a built optimizer: build it or apply a step.")
        _check_step_size(lr_step_size)
        self._iterations.assign(0)
        for variable in list(self.momentums) + list(getattr(self, "accumulators", [])):
            variable.assign(ops.zeros(variable.shape, variable.dtype))
        if learning_rate is not None:
            self.learning_rate = float(learning_rate)
        self._lr_step_size.assign(lr_step_size or 0)

    def multipliers_for(self, path: str) -> tuple[float, float]:
        """`(lr_multiplier, decay_multiplier)` of the variable at `path`."""
        for pattern, multipliers in self.param_multipliers.items():
            if re.search(pattern, path):
                return multipliers
        return (1.0, 1.0)

    def update_step(self, gradient, variable, learning_rate):
        dtype = variable.dtype
        lr_mult, decay_mult = self._multipliers.get(self._var_key(variable), (1.0, 1.0))
        if not self._use_weight_decay(variable):
            decay_mult = 0.0
        index = self._get_variable_index(variable)
        gradient = ops.cast(gradient, dtype)
        lr = ops.cast(learning_rate, dtype) * lr_mult
        decoupled_lr = lr
        is_update = None
        if self.accumulation_steps > 1:
            # Accumulate, and on the last batch of the group update.
            steps = ops.cast(self.accumulation_steps, dtype)
            is_update = ops.cast(
                ops.equal((self._iterations + 1) % self.accumulation_steps, 0), dtype)
            if self.accumulation_mode == "caffe":
                # The fork: the diff holds the sum (the last batch's gradient for
                # BN's scale and shift, which its layer overwrites); the decay is
                # added to it and the whole is scaled by lr / iter_size.
                if not self._last_batch_only.get(self._var_key(variable), False):
                    accumulator = self.accumulators[index]
                    gradient = ops.add(accumulator, gradient)
                    self.assign(accumulator, gradient * (1.0 - is_update))
                lr = lr / steps
            else:
                accumulator = self.accumulators[index]
                total = ops.add(accumulator, gradient)
                self.assign(accumulator, total * (1.0 - is_update))
                gradient = ops.divide(total, steps)
        decay = ops.cast(self.weight_decay_l2 * decay_mult, dtype)
        delta = ops.zeros_like(gradient)
        if self.weight_decay_l2 and decay_mult:
            if self.weight_decay_mode == "coupled":
                gradient = gradient + decay * variable
            else:
                delta = -decoupled_lr * decay * variable
        if self.momentum:
            momentum = self.momentums[index]
            velocity = ops.cast(self.momentum, dtype) * momentum - lr * gradient
            if is_update is not None:
                # Exact for 0 and 1 (as a `where` would be, but `where` compiles
                # to twice the XLA program and runs slower on CPU).
                self.assign(momentum, momentum * (1.0 - is_update) + velocity * is_update)
            else:
                self.assign(momentum, velocity)
            if self.nesterov:
                delta = delta + ops.cast(self.momentum, dtype) * velocity - lr * gradient
            else:
                delta = delta + velocity
        else:
            delta = delta - lr * gradient
        if is_update is not None:
            delta = is_update * delta
        self.assign_add(variable, delta)

    def get_config(self):
        config = super().get_config()
        config.update({
            "weight_decay": self.weight_decay_l2,
            "gradient_accumulation_steps": (
                self.accumulation_steps if self.accumulation_steps > 1 else None
            ),
            "param_multipliers": {k: list(v) for k, v in self.param_multipliers.items()},
            "weight_decay_mode": self.weight_decay_mode,
            "lr_step_size": self.lr_step_size or None,
            "lr_decay_factor": self.lr_decay_factor,
            "accumulation_mode": self.accumulation_mode,
            "last_batch_pattern": self.last_batch_pattern,
        })
        return config


def _check_step_size(lr_step_size) -> None:
    if lr_step_size is not None and (
        isinstance(lr_step_size, bool) or not isinstance(lr_step_size, int) or lr_step_size < 0
    ):
        raise ValueError(
            f"`lr_step_size` must be None or an int >= 1. Received: lr_step_size={lr_step_size!r}"
        )


def _check_multipliers(param_multipliers) -> dict:
    if param_multipliers is None:
        return {}
    if not isinstance(param_multipliers, dict):
        raise ValueError(
            "`param_multipliers` must be None or a dict {regex: (lr_mult, decay_mult)}. "
            f"Received: {param_multipliers!r}"
        )
    checked = {}
    for pattern, value in param_multipliers.items():
        try:
            re.compile(pattern)
        except (re.error, TypeError) as e:
            raise ValueError(f"`param_multipliers` key {pattern!r} is not a regex: {e}") from None
        if not isinstance(value, (tuple, list)) or len(value) != 2:
            raise ValueError(
                f"`param_multipliers[{pattern!r}]` must be (lr_mult, decay_mult). "
                f"Received: {value!r}"
            )
        checked[pattern] = (_check_number(value[0], f"param_multipliers[{pattern!r}][0]"),
                            _check_number(value[1], f"param_multipliers[{pattern!r}][1]"))
    return checked


def build_optimizer(config: TrainingConfig, stage: StageConfig) -> CaffeSGD:
    """The original solver of one stage as a `CaffeSGD`.

    The stage's learning rate and, with `config.lr_schedule == "step"`, its step
    schedule (x`lr_decay_factor` every `stage.lr_step_size` *updates*, Caffe's
    `lr_policy: "step"`; otherwise constant, for `ReduceLROnPlateau` or none); the
    config's momentum, weight decay and its mode, gradient accumulation and its mode
    (`"caffe"`: BatchNorm's scale and shift from the last batch of each group), and
    the learning-rate and decay multipliers of convolution and dense biases.

    Args:
        config: the `TrainingConfig`.
        stage: the `StageConfig` of the stage.

    Returns:
        A `CaffeSGD`.

    Raises:
        ValueError: on a bad setting (`config.validate`, `stage.validate`).

    Example:

    >>> config = TrainingConfig()  # the authors' solver
    >>> optimizer = build_optimizer(config, config.stage1)
    >>> optimizer.lr_step_size, optimizer.accumulation_steps, optimizer.param_multipliers
    (9000, 8, {'(^|/)bias$': (2.0, 0.0)})
    """
    config.validate()
    stage.validate("stage")
    multipliers = None
    if (config.bias_lr_multiplier, config.bias_decay_multiplier) != (1.0, 1.0):
        multipliers = {BIAS_PATTERN: (config.bias_lr_multiplier,
                                      config.bias_decay_multiplier)}
    return CaffeSGD(
        learning_rate=float(stage.learning_rate),
        lr_step_size=stage.lr_step_size if config.lr_schedule == "step" else None,
        lr_decay_factor=config.lr_decay_factor,
        momentum=config.momentum,
        weight_decay=config.weight_decay,
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        param_multipliers=multipliers,
        weight_decay_mode=config.weight_decay_mode,
        accumulation_mode=config.accumulation_mode,
        last_batch_pattern=(BATCHNORM_PATTERN if config.accumulation_mode == "caffe"
                            else None),
    )
