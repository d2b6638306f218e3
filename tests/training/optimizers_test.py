"""Tests of the paper's optimiser, the training config and gradient accumulation."""

import json

import keras
import numpy as np
import pytest

from keras_deconvnet.training import (
    CaffeSGD,
    StageConfig,
    TrainingConfig,
    build_optimizer,
    compile_for_training,
)


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
    decoupled = _two_updates(build_optimizer(lr, m, wd, weight_decay_mode="decoupled"))
    assert decoupled != pytest.approx(w, rel=1e-6)
    # No decay: plain momentum SGD.
    assert _two_updates(CaffeSGD(lr, m, weight_decay=0.0)) == pytest.approx(
        _two_updates(keras.optimizers.SGD(lr, momentum=m)), rel=1e-6
    )


def test_caffe_sgd_config_round_trip_and_errors():
    optimizer = CaffeSGD(learning_rate=0.02, weight_decay=1e-3, gradient_accumulation_steps=4)
    config = optimizer.get_config()
    assert config["weight_decay"] == 1e-3 and config["gradient_accumulation_steps"] == 4
    again = CaffeSGD.from_config(config)
    assert again.weight_decay_l2 == 1e-3 and again.momentum == 0.9
    restored = keras.optimizers.deserialize(keras.optimizers.serialize(optimizer))
    assert isinstance(restored, CaffeSGD)
    with pytest.raises(ValueError, match="weight_decay"):
        CaffeSGD(weight_decay=-1.0)
    with pytest.raises(ValueError, match="weight_decay_mode"):
        build_optimizer(weight_decay_mode="l2")
    with pytest.raises(ValueError, match="lr_step_size"):
        build_optimizer(lr_step_size=0)
    with pytest.raises(ValueError, match="gradient_accumulation_steps"):
        build_optimizer(gradient_accumulation_steps=0)


def test_step_schedule_lowers_lr_every_n_updates():
    optimizer = build_optimizer(0.01, lr_step_size=3)
    var = keras.Variable(np.ones(1, "float32"))
    rates = []
    for _ in range(7):
        rates.append(float(optimizer.learning_rate))
        optimizer.apply_gradients([(keras.ops.ones(1), var)])
    np.testing.assert_allclose(rates, [0.01] * 3 + [0.001] * 3 + [0.0001], rtol=1e-5)


def test_gradient_accumulation_updates_every_k_batches():
    inputs = keras.Input((4, 4, 3))
    model = keras.Model(inputs, keras.layers.Conv2D(3, 1)(inputs))
    config = TrainingConfig(gradient_accumulation_steps=2, verbose=0)
    compile_for_training(model, config, config.stage1)
    assert model.optimizer.gradient_accumulation_steps == 2
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
    with pytest.raises(ValueError, match="lr_step_size"):
        TrainingConfig(lr_schedule="step", stage1=StageConfig(epochs=1))
    with pytest.raises(ValueError, match="stage2_init"):
        TrainingConfig(stage2_init="first")
    with pytest.raises(ValueError, match="backup_save_freq"):
        TrainingConfig(backup_save_freq="batch")
