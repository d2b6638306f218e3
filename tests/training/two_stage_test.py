"""Tests of `train_two_stage`: fitting, stage skipping, resume, outputs, errors."""

import importlib.util
import json
import os
import signal
import subprocess
import sys
import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf
from model_fixtures import tiny_deconvnet

from keras_deconvnet.training import StageConfig, TrainingConfig, train_two_stage

SIZE = 32
NUM_CLASSES = 3


def tiny_model():
    """A two-block DeconvNet: switches, fc6/fc7, deconv-fc6, unpooling; fast to trace."""
    return tiny_deconvnet(
        NUM_CLASSES, image_shape=(SIZE, SIZE, 3), block_filters=(8, 8),
        block_depths=(1, 1), fc_units=16, fc_kernel_size=2,
    )


def small_model():
    """A two-convolution segmenter with BatchNorm: same contract, traces in a blink."""
    inputs = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.Conv2D(4, 3, padding="same")(inputs)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.ReLU()(x)
    return keras.Model(inputs, keras.layers.Conv2D(NUM_CLASSES, 1)(x))


def learnable_data(n=8, batch=4, seed=0, batched=True):
    """Images whose mask is a function of the pixel: class = bin of channel 0."""
    rng = np.random.default_rng(seed)
    images = rng.normal(size=(n, SIZE, SIZE, 3)).astype("float32")
    masks = np.digitize(images[..., 0], [-0.5, 0.5]).astype("int32")
    masks[:, :2] = 255  # an ignored border
    dataset = tf.data.Dataset.from_tensor_slices((images, masks))
    return dataset.batch(batch) if batched else dataset


def quick_config(**kwargs):
    defaults = dict(
        stage1=StageConfig(epochs=1), stage2=StageConfig(epochs=1),
        tensorboard=False, verbose=0, plateau_patience=1, gradient_accumulation_steps=None,
    )
    defaults.update(kwargs)
    return TrainingConfig(**defaults)


class EpochRecorder(keras.callbacks.Callback):
    """Records each epoch begun, and the optimizer's update count at that point."""

    def __init__(self):
        super().__init__()
        self.epochs = []
        self.iterations = []

    def on_epoch_begin(self, epoch, logs=None):
        self.epochs.append(epoch)
        self.iterations.append(int(self.model.optimizer.iterations))


class KillAt(keras.callbacks.Callback):
    """Raises at the start of `epoch` of the `nth` fit it sees (simulates a kill)."""

    def __init__(self, epoch, nth_fit):
        super().__init__()
        self.epoch, self.nth_fit, self.fits = epoch, nth_fit, 0

    def on_train_begin(self, logs=None):
        self.fits += 1

    def on_epoch_begin(self, epoch, logs=None):
        if self.fits == self.nth_fit and epoch == self.epoch:
            raise KeyboardInterrupt("simulated kill")


def test_fit_decreases_loss_and_writes_outputs(tmp_path):
    data = learnable_data(n=8, batch=4)
    config = quick_config(
        stage1=StageConfig(epochs=3, learning_rate=0.05), stage2=StageConfig(epochs=1),
        tensorboard=True,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # no tensorboard package installed
        model, history = train_two_stage(tiny_model, data, data, data, tmp_path, config)
    losses = history["stage1"]["loss"]
    assert len(losses) == 3 and losses[-1] < losses[0]
    assert len(history["stage2"]["val_mean_iou"]) == 1
    assert all(np.isfinite(history["stage2"]["val_loss"]))
    for stage in ("stage1", "stage2"):
        files = set(os.listdir(tmp_path / stage))
        assert {"final.weights.h5", "best.weights.h5", "last.weights.h5", "best.json",
                "history.csv", "COMPLETE.json"} <= files
        assert "backup" not in files  # removed once the stage completed
        assert not [f for f in files if f.startswith(".tmp-")]
        best = json.loads((tmp_path / stage / "best.json").read_text())
        assert best["monitor"] == "val_mean_iou"
    if importlib.util.find_spec("tensorboard") is not None:
        assert os.listdir(tmp_path / "logs" / "stage1")
    assert (tmp_path / "final.weights.h5").exists()
    assert TrainingConfig.load(tmp_path / "config.json") == config
    # The returned model holds the final weights.
    fresh = tiny_model()
    fresh.load_weights(tmp_path / "final.weights.h5")
    x = next(iter(data))[0]
    np.testing.assert_allclose(fresh.predict(x, verbose=0), model.predict(x, verbose=0),
                               atol=1e-5)


def test_stage_skipping(tmp_path):
    data = learnable_data(n=4, batch=2, batched=False)  # batched with batch_size
    recorder = EpochRecorder()
    config = quick_config(stage1=StageConfig(epochs=0), stage2=StageConfig(epochs=2),
                          batch_size=2)
    _, history = train_two_stage(
        small_model, None, data, None, tmp_path, config, callbacks=[recorder]
    )
    assert history["stage1"] == {}
    assert len(history["stage2"]["loss"]) == 2
    assert "val_mean_iou" not in history["stage2"]
    assert recorder.epochs == [0, 1]
    assert not (tmp_path / "stage1").exists()
    # Both stages skipped: the built model comes back untrained.
    model, history = train_two_stage(
        small_model, None, None, None, tmp_path / "none",
        quick_config(stage1=StageConfig(epochs=0), stage2=StageConfig(epochs=0)),
    )
    assert history == {"stage1": {}, "stage2": {}} and getattr(model, "optimizer", None) is None


def test_resume_after_kill_in_stage2(tmp_path):
    data = learnable_data(n=4, batch=2)
    config = quick_config(stage1=StageConfig(epochs=2), stage2=StageConfig(epochs=4))
    recorder = EpochRecorder()
    with pytest.raises(KeyboardInterrupt):
        train_two_stage(small_model, data, data, data, tmp_path, config,
                        callbacks=[recorder, KillAt(epoch=2, nth_fit=2)])
    assert recorder.epochs == [0, 1, 0, 1, 2]  # stage 1 done, stage 2 killed at epoch 2
    assert (tmp_path / "stage1" / "COMPLETE.json").exists()
    assert not (tmp_path / "stage2" / "COMPLETE.json").exists()
    assert (tmp_path / "stage2" / "backup").exists()

    recorder = EpochRecorder()
    _, history = train_two_stage(small_model, data, data, data, tmp_path, config,
                                 callbacks=[recorder])
    # Stage 1 is skipped, stage 2 resumes at epoch 2 instead of restarting, with
    # the optimizer state of the backup (2 epochs x 2 batches = 4 updates).
    assert recorder.epochs == [2, 3]
    assert recorder.iterations == [4, 6]
    assert len(history["stage1"]["loss"]) == 2
    assert len(history["stage2"]["loss"]) == 4  # epochs before the kill included
    assert (tmp_path / "stage2" / "COMPLETE.json").exists()
    assert not (tmp_path / "stage2" / "backup").exists()


def test_resume_keeps_the_stage1_weights(tmp_path):
    data = learnable_data(n=4, batch=2)
    config = quick_config(stage1=StageConfig(epochs=1), stage2=StageConfig(epochs=1))
    with pytest.raises(KeyboardInterrupt):
        train_two_stage(small_model, data, data, None, tmp_path, config,
                        callbacks=[KillAt(epoch=0, nth_fit=2)])
    stage1 = small_model()
    stage1.load_weights(tmp_path / "stage1" / "final.weights.h5")
    # Rerun with stage 2 disabled: the result is stage 1's weights, not a fresh model.
    with pytest.warns(UserWarning, match="different TrainingConfig"):
        model, _ = train_two_stage(
            small_model, data, None, None, tmp_path,
            quick_config(stage1=StageConfig(epochs=1), stage2=StageConfig(epochs=0)),
        )
    for a, b in zip(stage1.trainable_weights, model.trainable_weights):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(a),
                                      keras.ops.convert_to_numpy(b))
    # ... with BN statistics recomputed after it, kept with stage 1.
    assert (tmp_path / "stage1" / "batchnorm" / "COMPLETE.json").exists()


def test_bad_arguments(tmp_path):
    data = learnable_data(n=2, batch=2)
    with pytest.raises(ValueError, match="build_model"):
        train_two_stage(tiny_model(), data, data, None, tmp_path, quick_config())
    with pytest.raises(ValueError, match="stage2_train"):
        train_two_stage(tiny_model, data, None, None, tmp_path, quick_config())
    with pytest.raises(ValueError, match=r"\(image, mask\)"):
        train_two_stage(tiny_model, data.map(lambda x, y: x), None, None, tmp_path,
                        quick_config(stage2=StageConfig(epochs=0)))
    with pytest.raises(ValueError, match="tf.data.Dataset"):
        train_two_stage(tiny_model, [1, 2], None, None, tmp_path,
                        quick_config(stage2=StageConfig(epochs=0)))
    with pytest.raises(ValueError, match="masks"):
        bad = tf.data.Dataset.from_tensor_slices((np.zeros((2, 4)), np.zeros((2, 4))))
        train_two_stage(tiny_model, bad, None, None, tmp_path,
                        quick_config(stage2=StageConfig(epochs=0)))
    with pytest.raises(ValueError, match="validation data"):
        train_two_stage(tiny_model, data, data, None, tmp_path,
                        quick_config(plateau_monitor="val_loss"))
    with pytest.raises(ValueError, match="strategy"):
        train_two_stage(tiny_model, data, data, None, tmp_path, quick_config(),
                        strategy="gpu")
    with pytest.raises(RuntimeError, match="no TPU available"):
        train_two_stage(tiny_model, data, data, None, tmp_path, quick_config(),
                        strategy="tpu")
    with pytest.raises(ValueError, match="keras.Model"):
        train_two_stage(lambda: 3, data, data, None, tmp_path, quick_config())
    with pytest.raises(ValueError, match="Unknown TrainingConfig keys"):
        train_two_stage(tiny_model, data, data, None, tmp_path, {"epochs": 3})


@pytest.mark.parametrize("schedule", ["plateau", "step"])
def test_stage2_starts_with_a_fresh_optimizer(tmp_path, schedule):
    data = learnable_data(n=4, batch=2)
    config = quick_config(
        stage1=StageConfig(epochs=1, learning_rate=0.02, lr_step_size=100),
        stage2=StageConfig(epochs=1, learning_rate=0.005, lr_step_size=1),
        lr_schedule=schedule,
    )
    seen = []

    class OptimizerState(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            optimizer = self.model.optimizer
            seen.append((int(optimizer.iterations), float(optimizer.learning_rate)))

    model, _ = train_two_stage(small_model, data, data, None, tmp_path, config,
                               callbacks=[OptimizerState()])
    assert seen[0] == (0, pytest.approx(0.02))
    assert seen[1] == (0, pytest.approx(0.005))  # not 2 steps and lr 0.02 of stage 1
    assert int(model.optimizer.iterations) == 2
    if schedule == "step":  # x0.1 after every update in stage 2
        assert float(model.optimizer.learning_rate) == pytest.approx(0.005 * 0.01)


KILL_SCRIPT = """
import os, signal, sys, warnings
warnings.simplefilter("ignore")
sys.path[:0] = [{test_dir!r}, os.path.dirname({test_dir!r})]
import keras
from two_stage_test import StageConfig, learnable_data, quick_config, small_model
from keras_deconvnet.training import train_two_stage

class Kill(keras.callbacks.Callback):
    fits = 0
    def on_train_begin(self, logs=None):
        Kill.fits += 1
    def on_epoch_begin(self, epoch, logs=None):
        print("EPOCH", Kill.fits, epoch, flush=True)
        if {kill} and Kill.fits == 2 and epoch == 2:
            os.kill(os.getpid(), signal.SIGKILL)

data = learnable_data(n=4, batch=2)
config = quick_config(stage1=StageConfig(epochs=2), stage2=StageConfig(epochs=4))
train_two_stage(small_model, data, data, data, {output_dir!r}, config, callbacks=[Kill()])
print("DONE", flush=True)
"""


def test_resume_after_sigkill(tmp_path):
    def run(kill):
        code = KILL_SCRIPT.format(test_dir=os.path.dirname(__file__), kill=kill,
                                  output_dir=str(tmp_path))
        result = subprocess.run([sys.executable, "-c", code], capture_output=True,
                                text=True, timeout=300,
                                env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
        epochs = [tuple(map(int, line.split()[1:])) for line in result.stdout.splitlines()
                  if line.startswith("EPOCH")]
        return result, epochs

    result, epochs = run(kill=True)
    assert result.returncode == -signal.SIGKILL, result.stderr[-2000:]
    assert epochs == [(1, 0), (1, 1), (2, 0), (2, 1), (2, 2)]
    result, epochs = run(kill=False)
    assert result.returncode == 0, result.stderr[-2000:]
    # Stage 1 is not rerun (fit 1 is stage 2) and stage 2 resumes at epoch 2.
    assert epochs == [(1, 2), (1, 3)]
    assert "DONE" in result.stdout
    assert (tmp_path / "stage2" / "COMPLETE.json").exists()


def test_a_model_that_fails_to_build_leaves_no_output_dir(tmp_path):
    def broken():
        raise OSError("the VGG16 weights cannot be downloaded")

    data = learnable_data(n=2, batch=2)
    with pytest.raises(OSError, match="VGG16"):
        train_two_stage(broken, data, data, None, tmp_path / "run", quick_config())
    assert not (tmp_path / "run").exists()


def test_leftover_temporary_files_are_removed_and_others_kept(tmp_path):
    from keras_deconvnet.training.two_stage import remove_partial_files

    stage = tmp_path / "stage1" / "backup"
    stage.mkdir(parents=True)
    leftovers = [tmp_path / "stage1" / ".last.tmp-k2j3h4.weights.h5",
                 stage / ".ckpt-000001.tmp-abc_9.json", tmp_path / ".preset.partial-x1y2"]
    kept = [tmp_path / "stage1" / "last.weights.h5", tmp_path / ".lock",
            tmp_path / "notes.tmp-1.txt"]
    leftovers[2].mkdir()
    (leftovers[2] / "model.weights.h5").write_bytes(b"x")
    for path in [*leftovers[:2], *kept]:
        path.write_bytes(b"x")
    assert remove_partial_files(str(tmp_path)) == sorted(str(p) for p in leftovers)
    assert not any(p.exists() for p in leftovers)
    assert all(p.exists() for p in kept)


def test_config_change_warns_only_when_something_was_trained(tmp_path):
    data = learnable_data(n=2, batch=2)
    # A config.json from a run that trained nothing (e.g. killed while building).
    quick_config(stage1=StageConfig(epochs=3)).save(str(tmp_path / "config.json"))
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        train_two_stage(small_model, data, data, None, tmp_path, quick_config())
    with pytest.warns(UserWarning, match="changed settings"):
        train_two_stage(small_model, data, data, None, tmp_path,
                        quick_config(stage2=StageConfig(epochs=1, learning_rate=0.5)))


def test_progress_is_plain_lines_off_a_terminal(tmp_path, capsys):
    data = learnable_data(n=4, batch=2)
    train_two_stage(small_model, data, data, None, tmp_path,
                    quick_config(verbose="auto", batchnorm_batches=2,
                                 batchnorm_batch_size=None))
    out = capsys.readouterr().out  # pytest's capture is not a terminal
    assert "\x1b[" not in out and "\r" not in out and "\b" not in out
    assert "Stage 1 of 2 (stage1" in out and "Stage 2 of 2 (stage2" in out
    assert "stage1 epoch 1/1 done" in out
    assert "BatchNorm statistics: 2/2 batches" in out
