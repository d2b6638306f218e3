"""Tests of the paper's optimiser, the training config and gradient accumulation."""

import json

import keras
import numpy as np
import pytest
from training.fork_solver_reference import fork_solve

from keras_deconvnet.training import (
    CaffeSGD,
    StageConfig,
    TrainingConfig,
    build_optimizer,
    compile_for_training,
)
from keras_deconvnet.training.optimizers import BATCHNORM_PATTERN, BIAS_PATTERN


def _two_updates(optimizer, w0=2.0, grads=(0.5, -0.25)):
    var = keras.Variable(np.array([w0], "float32"))
    for g in grads:
        optimizer.apply_gradients([(keras.ops.convert_to_tensor([g]), var)])
    return float(keras.ops.convert_to_numpy(var)[0])


def test_caffe_sgd_is_coupled_l2_through_momentum():
    lr, m, wd = 0.1, 0.9, 0.01
    got = _two_updates(CaffeSGD(learning_rate=lr, momentum=m, weight_decay=wd))
    # Caffe: v = m v + lr (g + wd w); w -= v.
    w, v = 2.0, 0.0
    for g in (0.5, -0.25):
        v = m * v + lr * (g + wd * w)
        w -= v
    assert got == pytest.approx(w, rel=1e-6)
    # Keras's decoupled decay is a different update.
    decoupled = _two_updates(CaffeSGD(lr, m, weight_decay=wd, weight_decay_mode="decoupled"))
    assert decoupled != pytest.approx(w, rel=1e-6)
    # No decay: plain momentum SGD.
    assert _two_updates(CaffeSGD(lr, m, weight_decay=0.0)) == pytest.approx(
        _two_updates(keras.optimizers.SGD(lr, momentum=m)), rel=1e-6
    )


def test_caffe_sgd_config_round_trip_and_errors():
    optimizer = CaffeSGD(learning_rate=0.02, weight_decay=1e-3, gradient_accumulation_steps=4,
                         param_multipliers={BIAS_PATTERN: (2.0, 0.0)})
    config = optimizer.get_config()
    assert config["weight_decay"] == 1e-3 and config["gradient_accumulation_steps"] == 4
    again = CaffeSGD.from_config(config)
    assert again.weight_decay_l2 == 1e-3 and again.momentum == 0.9
    assert again.accumulation_steps == 4 and again.param_multipliers == {BIAS_PATTERN: (2, 0)}
    restored = keras.optimizers.deserialize(keras.optimizers.serialize(optimizer))
    assert isinstance(restored, CaffeSGD) and restored.accumulation_steps == 4
    optimizer = CaffeSGD(accumulation_mode="mean", last_batch_pattern=BATCHNORM_PATTERN)
    again = CaffeSGD.from_config(optimizer.get_config())
    assert (again.accumulation_mode, again.last_batch_pattern) == ("mean", BATCHNORM_PATTERN)
    with pytest.raises(ValueError, match="weight_decay"):
        CaffeSGD(weight_decay=-1.0)
    with pytest.raises(ValueError, match="param_multipliers"):
        CaffeSGD(param_multipliers={"bias": (2.0,)})
    with pytest.raises(ValueError, match="not a regex"):
        CaffeSGD(param_multipliers={"(": (2.0, 0.0)})
    with pytest.raises(ValueError, match="weight_decay_mode"):
        CaffeSGD(weight_decay_mode="l2")
    with pytest.raises(ValueError, match="gradient_accumulation_steps"):
        CaffeSGD(gradient_accumulation_steps=0)
    with pytest.raises(ValueError, match="accumulation_mode"):
        CaffeSGD(accumulation_mode="sum")
    with pytest.raises(ValueError, match="last_batch_pattern"):
        CaffeSGD(last_batch_pattern="(")
    with pytest.raises(ValueError, match="accumulation_mode"):
        TrainingConfig(accumulation_mode="sum")
    with pytest.raises(ValueError, match="lr_step_size"):
        build_optimizer(TrainingConfig(), StageConfig(lr_step_size=0))
    with pytest.raises(ValueError, match="learning_rate"):
        build_optimizer(TrainingConfig(), StageConfig(learning_rate=0.0))
    config = TrainingConfig()
    config.weight_decay_mode = "l2"  # changed after validation: checked again
    with pytest.raises(ValueError, match="weight_decay_mode"):
        build_optimizer(config, config.stage1)


def test_step_schedule_lowers_lr_every_n_updates():
    optimizer = CaffeSGD(0.01, lr_step_size=3)
    var = keras.Variable(np.ones(1, "float32"))
    rates = []
    for _ in range(7):
        rates.append(float(optimizer.learning_rate))
        optimizer.apply_gradients([(keras.ops.ones(1), var)])
    np.testing.assert_allclose(rates, [0.01] * 3 + [0.001] * 3 + [0.0001], rtol=1e-5)


def test_step_schedule_counts_updates_not_batches():
    # Caffe's `stepsize` counts iterations of `iter_size` batches: with 3 batches per
    # update and a step every 2 updates, the rate drops after 6 batches, not 2.
    optimizer = build_optimizer(TrainingConfig(gradient_accumulation_steps=3),
                                StageConfig(learning_rate=0.01, lr_step_size=2))
    var = keras.Variable(np.ones(1, "float32"))
    rates, updates = [], []
    for _ in range(13):
        rates.append(float(optimizer.learning_rate))
        updates.append(int(optimizer.iterations))
        optimizer.apply_gradients([(keras.ops.ones(1), var)])
    assert updates == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3, 4]
    np.testing.assert_allclose(rates, [0.01] * 6 + [0.001] * 6 + [0.0001], rtol=1e-5)


def test_accumulation_is_caffe_iter_size():
    # iter_size 2, the fork's solver.cpp: the diff is the sum of the 2 gradients,
    # plus wd * w, all scaled by lr / 2.
    lr, m, wd = 0.1, 0.9, 0.01
    grads = (0.5, -0.25, 1.0, 0.75)
    got = _two_updates(CaffeSGD(lr, m, weight_decay=wd, gradient_accumulation_steps=2),
                       grads=grads)
    w, v = 2.0, 0.0
    for g in (grads[0] + grads[1], grads[2] + grads[3]):
        v = m * v + lr / 2 * (g + wd * w)
        w -= v
    assert got == pytest.approx(w, rel=1e-6)
    # "mean": this package's earlier form, the mean gradient plus wd * w at lr.
    got = _two_updates(CaffeSGD(lr, m, weight_decay=wd, gradient_accumulation_steps=2,
                                accumulation_mode="mean"), grads=grads)
    w, v = 2.0, 0.0
    for g in ((grads[0] + grads[1]) / 2, (grads[2] + grads[3]) / 2):
        v = m * v + lr * (g + wd * w)
        w -= v
    assert got == pytest.approx(w, rel=1e-6)
    # Nothing moves between updates.
    optimizer = CaffeSGD(lr, m, weight_decay=wd, gradient_accumulation_steps=3)
    assert _two_updates(optimizer, grads=(1.0, 2.0)) == 2.0
    assert int(optimizer.iterations) == 0


def test_bias_lr_x2_without_decay_and_batchnorm_as_caffe_defaults():
    # The prototxts: convolutions `blobs_lr: 1 blobs_lr: 2 weight_decay: 1
    # weight_decay: 0`; BN layers set nothing, so Caffe's 1 and 1.
    lr, wd, g, w0 = 0.1, 0.01, 0.5, 2.0
    inputs = keras.Input((2, 2, 1))
    x = keras.layers.Conv2D(1, 1, name="conv")(inputs)
    model = keras.Model(inputs, keras.layers.BatchNormalization(name="conv_bn")(x))
    variables = {v.path: v for v in model.trainable_variables}
    assert sorted(variables) == ["conv/bias", "conv/kernel", "conv_bn/beta", "conv_bn/gamma"]
    for variable in variables.values():
        variable.assign(np.full(variable.shape, w0, "float32"))
    # TrainingConfig's defaults: biases x2, not decayed.
    config = TrainingConfig(momentum=0.0, weight_decay=wd, gradient_accumulation_steps=None)
    optimizer = build_optimizer(config, StageConfig(learning_rate=lr))
    optimizer.apply_gradients([(keras.ops.full(v.shape, g), v) for v in variables.values()])
    got = {path: float(keras.ops.convert_to_numpy(v).ravel()[0])
           for path, v in variables.items()}
    decayed = w0 - lr * (g + wd * w0)
    assert got["conv/kernel"] == pytest.approx(decayed, rel=1e-6)
    assert got["conv/bias"] == pytest.approx(w0 - 2 * lr * g, rel=1e-6)
    assert got["conv_bn/gamma"] == pytest.approx(decayed, rel=1e-6)
    assert got["conv_bn/beta"] == pytest.approx(decayed, rel=1e-6)


def test_decoupled_mode_is_keras_sgd_weight_decay():
    lr, m, wd = 0.1, 0.9, 0.01
    config = TrainingConfig(momentum=m, weight_decay=wd, weight_decay_mode="decoupled",
                            gradient_accumulation_steps=None, lr_schedule="constant")
    ours = _two_updates(build_optimizer(config, StageConfig(learning_rate=lr)))
    keras_sgd = _two_updates(keras.optimizers.SGD(lr, momentum=m, weight_decay=wd))
    assert ours == pytest.approx(keras_sgd, rel=1e-6)


def test_gradient_accumulation_updates_every_k_batches():
    inputs = keras.Input((4, 4, 3))
    model = keras.Model(inputs, keras.layers.Conv2D(3, 1)(inputs))
    config = TrainingConfig(gradient_accumulation_steps=2, verbose=0)
    compile_for_training(model, config, config.stage1)
    assert model.optimizer.accumulation_steps == 2
    x = np.random.default_rng(0).normal(size=(8, 4, 4, 3)).astype("float32")
    y = np.ones((8, 4, 4), "int32")
    kernel = model.layers[-1].kernel
    before = keras.ops.convert_to_numpy(kernel).copy()
    model.fit(x[:2], y[:2], batch_size=2, verbose=0)  # 1 batch: accumulated only
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(kernel), before)
    model.fit(x[2:4], y[2:4], batch_size=2, verbose=0)  # 2nd batch: one update
    assert not np.allclose(keras.ops.convert_to_numpy(kernel), before)
    model.fit(x[4:], y[4:], batch_size=2, verbose=0)
    assert int(model.optimizer.iterations) == 2  # 4 batches, 2 updates


def test_defaults_are_the_original_solver():
    config = TrainingConfig()
    # solver.prototxt: base_lr 0.01, momentum 0.9, weight_decay 0.0005, iter_size 8
    # (batch_size 8 in the data layer), lr_policy step, gamma 0.1.
    assert (config.stage1.learning_rate, config.stage2.learning_rate) == (0.01, 0.01)
    assert (config.momentum, config.weight_decay, config.weight_decay_mode) == (
        0.9, 5e-4, "coupled")
    assert (config.batch_size, config.gradient_accumulation_steps) == (8, 8)
    # solver.cpp / bn_layer.cu: summed gradients, decay, lr / iter_size; BN's last batch.
    assert config.accumulation_mode == "caffe"
    assert (config.lr_schedule, config.lr_decay_factor) == ("step", 0.1)
    # max_iter 20000 / stepsize 9000 (stage 1), 40000 / 10000 (stage 2), in updates.
    for stage, updates, step in ((config.stage1, 20000, 9000), (config.stage2, 40000, 10000)):
        assert stage.epochs * stage.steps_per_epoch * config.updates_per_batch == updates
        assert stage.lr_step_size == step
    # blobs_lr 1 2, weight_decay 1 0 on every convolution.
    assert (config.bias_lr_multiplier, config.bias_decay_multiplier) == (2.0, 0.0)
    # BN_make_INFERENCE_script.py: 1 + 500 forwards of batch 28, after stage 2; its
    # `m / (m - 1)` is Python 2 integer division (1): no Bessel correction.
    assert (config.recompute_batchnorm, config.batchnorm_batches,
            config.batchnorm_batch_size, config.batchnorm_unbiased) == (True, 501, 28, False)
    assert config.class_balancing is None and config.class_weights is None
    assert config.stage2_init == "last"


def test_training_config_json_round_trip_and_errors():
    config = TrainingConfig(
        stage1=StageConfig(epochs=3, steps_per_epoch=10, lr_step_size=100), stage2={"epochs": 0},
        gradient_accumulation_steps=8, lr_schedule="step",
    )
    assert isinstance(config.stage2, StageConfig)
    assert TrainingConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    defaults = TrainingConfig()
    assert (defaults.momentum, defaults.weight_decay, defaults.stage1.learning_rate) == (
        0.9, 5e-4, 0.01
    )
    assert (defaults.stage1.lr_step_size, defaults.stage2.lr_step_size) == (9000, 10000)
    with pytest.raises(ValueError, match="Unknown TrainingConfig keys"):
        TrainingConfig.from_dict({"learning_rate": 0.1})
    with pytest.raises(ValueError, match="Unknown `stage1` keys"):
        TrainingConfig(stage1={"epoch": 3})
    with pytest.raises(ValueError, match="stage1.epochs"):
        TrainingConfig(stage1=StageConfig(epochs=-1))
    with pytest.raises(ValueError, match="lr_schedule"):
        TrainingConfig(lr_schedule="cosine")
    # Partial stage dicts keep the other original values.
    partial = TrainingConfig.from_dict({"stage1": {"epochs": 2}})
    assert (partial.stage1.epochs, partial.stage1.lr_step_size) == (2, 9000)
    with pytest.raises(ValueError, match="class_balancing"):
        TrainingConfig(class_balancing="inverse")
    with pytest.raises(ValueError, match="engine"):
        TrainingConfig(engine="custom")
    with pytest.raises(ValueError, match="bias_lr_multiplier"):
        TrainingConfig(bias_lr_multiplier=-1)
    with pytest.raises(ValueError, match="gradient_accumulation_steps"):
        TrainingConfig(gradient_accumulation_steps=0)
    with pytest.raises(ValueError, match="stage2_init"):
        TrainingConfig(stage2_init="first")
    with pytest.raises(ValueError, match="backup_save_freq"):
        TrainingConfig(backup_save_freq="batch")


def _tiny_net(params):
    inputs = keras.Input((2, 2, 3))
    x = keras.layers.Conv2D(2, 1, name="conv1")(inputs)
    x = keras.layers.BatchNormalization(name="conv1_bn", epsilon=1e-3)(x)
    model = keras.Model(inputs, keras.layers.Conv2D(2, 1, name="conv2")(x))
    layers = {layer.name: layer for layer in model.layers}
    layers["conv1"].set_weights([params["w1"][None, None], params["b1"]])
    bn = layers["conv1_bn"]
    bn.set_weights([params["scale"], params["shift"], *bn.get_weights()[2:]])
    layers["conv2"].set_weights([params["w2"][None, None], params["b2"]])
    return model


def _weights_of(model):
    layers = {layer.name: layer for layer in model.layers}
    w1, b1 = layers["conv1"].get_weights()
    scale, shift = layers["conv1_bn"].get_weights()[:2]
    w2, b2 = layers["conv2"].get_weights()
    return {"w1": w1[0, 0], "b1": b1, "scale": scale, "shift": shift,
            "w2": w2[0, 0], "b2": b2}


@pytest.mark.parametrize("mode", ["caffe", "mean"])
def test_default_recipe_matches_the_fork_solver_in_numpy(mode):
    # tests/training/fork_solver_reference.py re-implements the fork's Solver::Step,
    # SGDSolver::ComputeUpdateValue and BN backward in NumPy. The paper recipe's
    # optimizer (build_optimizer of the default TrainingConfig) must give the same
    # weights after every update, over 4 updates of iter_size 3 with a step in the
    # rate; "mean" (the earlier behaviour) must not.
    rng = np.random.default_rng(0)
    params = {"w1": rng.normal(size=(3, 2)), "b1": rng.normal(size=2) * 0.1,
              "scale": 1 + rng.normal(size=2) * 0.2, "shift": rng.normal(size=2) * 0.1,
              "w2": rng.normal(size=(2, 2)), "b2": rng.normal(size=2) * 0.1}
    params = {k: v.astype("float32") for k, v in params.items()}
    batch, iter_size, updates = 4, 3, 4
    x = rng.normal(size=(batch * iter_size * updates, 2, 2, 3)).astype("float32")
    x[: batch * iter_size] *= 3.0  # batches that differ, so the last one is not the mean
    target = rng.normal(size=(len(x), 2, 2, 2)).astype("float32")
    lr, momentum, wd, stepsize = 0.1, 0.9, 0.05, 2
    config = TrainingConfig(momentum=momentum, weight_decay=wd,
                            gradient_accumulation_steps=iter_size, accumulation_mode=mode)
    model = _tiny_net(params)
    model.compile(optimizer=build_optimizer(
        config, StageConfig(learning_rate=lr, lr_step_size=stepsize)), loss="mse")
    seen = []

    class Record(keras.callbacks.Callback):
        def on_train_batch_end(self, index, logs=None):
            if (index + 1) % iter_size == 0:
                seen.append(_weights_of(model))

    model.fit(x, target, batch_size=batch, shuffle=False, verbose=0, callbacks=[Record()])
    batches = [(x[i : i + batch].astype("float64"), target[i : i + batch].astype("float64"))
               for i in range(0, len(x), batch)]
    expected = fork_solve(params, batches, iter_size, lr, momentum, wd, stepsize)
    assert len(seen) == len(expected) == updates
    worst = max(float(np.max(np.abs(got[k] - want[k])) / (np.max(np.abs(want[k])) + 1e-12))
                for got, want in zip(seen, expected) for k in want)
    if mode == "caffe":
        assert worst < 1e-4
    else:
        assert worst > 1e-2
