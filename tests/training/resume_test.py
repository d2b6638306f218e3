"""Resume exactly, whatever is killed or damaged: each case of issue 15, in-process."""

import json
import os
import warnings

import keras
import numpy as np
import pytest
from training.two_stage_test import (
    EpochRecorder,
    KillAt,
    StageConfig,
    learnable_data,
    quick_config,
    small_model,
)

from keras_deconvnet.training import (
    CheckpointError,
    HistoryLogger,
    OutputDirLock,
    OutputDirLockedError,
    read_history,
    train_two_stage,
)
from keras_deconvnet.training import stages as stages_module


def _config(stage1=2, stage2=4, **kwargs):
    return quick_config(stage1=StageConfig(epochs=stage1), stage2=StageConfig(epochs=stage2),
                        **kwargs)


def test_killed_in_stage1_then_stage2_runs_all_its_epochs(tmp_path):
    # Keras's BackupAndRestore left `model._initial_epoch` at stage 1's resumed
    # epoch, and stage 2's `fit` started there: epochs 1-3 of 4.
    data = learnable_data(n=4, batch=2)
    with pytest.raises(KeyboardInterrupt):
        train_two_stage(small_model, data, data, None, tmp_path, _config(),
                        callbacks=[KillAt(epoch=1, nth_fit=1)])
    recorder = EpochRecorder()
    _, history = train_two_stage(small_model, data, data, None, tmp_path, _config(),
                                 callbacks=[recorder])
    assert recorder.epochs == [1, 0, 1, 2, 3]  # stage 1 resumed at 1, stage 2 whole
    assert recorder.iterations[1] == 0  # stage 2: a fresh optimizer
    assert len(history["stage2"]["loss"]) == 4
    marker = json.loads((tmp_path / "stage2" / "COMPLETE.json").read_text())
    assert marker["epochs"] == 4


def test_killed_between_stages_and_during_batchnorm(tmp_path, monkeypatch):
    data = learnable_data(n=4, batch=2)
    # Killed as stage 2 starts: stage 1 is done, stage 2 then runs every epoch.
    with pytest.raises(KeyboardInterrupt):
        train_two_stage(small_model, data, data, None, tmp_path, _config(stage1=1, stage2=2),
                        callbacks=[KillAt(epoch=0, nth_fit=2)])

    # Killed while recomputing BN statistics after stage 2.
    def killed(*args, **kwargs):
        raise KeyboardInterrupt("simulated kill")

    monkeypatch.setattr(stages_module, "recompute_batchnorm_statistics", killed)
    recorder = EpochRecorder()
    with pytest.raises(KeyboardInterrupt):
        train_two_stage(small_model, data, data, None, tmp_path, _config(stage1=1, stage2=2),
                        callbacks=[recorder])
    assert recorder.epochs == [0, 1]  # stage 2 only, all of it
    assert (tmp_path / "stage2" / "COMPLETE.json").exists()
    assert not (tmp_path / "stage2" / "batchnorm").exists()
    monkeypatch.undo()

    recorder = EpochRecorder()
    model, _ = train_two_stage(small_model, data, data, None, tmp_path,
                               _config(stage1=1, stage2=2), callbacks=[recorder])
    assert recorder.epochs == []  # nothing retrained, only the statistics
    assert (tmp_path / "stage2" / "batchnorm" / "COMPLETE.json").exists()
    final = small_model()
    final.load_weights(tmp_path / "final.weights.h5")
    bn = model.layers[2]
    assert isinstance(bn, keras.layers.BatchNormalization)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(final.layers[2].moving_variance),
                               keras.ops.convert_to_numpy(bn.moving_variance))
    assert not np.allclose(keras.ops.convert_to_numpy(bn.moving_variance), 1.0)


def test_second_run_on_the_same_directory_is_refused(tmp_path):
    data = learnable_data(n=2, batch=2)
    with OutputDirLock(tmp_path):
        with pytest.raises(OutputDirLockedError) as error:
            train_two_stage(small_model, data, data, None, tmp_path, _config(1, 1))
    message = str(error.value)
    assert str(tmp_path) in message and f"pid {os.getpid()}" in message
    assert "\n" not in message
    assert not (tmp_path / "stage1").exists()  # refused before touching anything
    # Released: the next run goes ahead.
    train_two_stage(small_model, data, data, None, tmp_path, _config(1, 1))
    assert (tmp_path / "stage2" / "COMPLETE.json").exists()


def test_history_survives_a_double_header_and_a_torn_line(tmp_path):
    # What two concurrent CSVLogger runs and a kill mid-line left behind; every
    # later run failed reading it ("invalid literal for int(): 'epoch'").
    data = learnable_data(n=4, batch=2)
    with pytest.raises(KeyboardInterrupt):
        train_two_stage(small_model, data, data, None, tmp_path, _config(3, 1),
                        callbacks=[KillAt(epoch=2, nth_fit=1)])
    path = tmp_path / "stage1" / "history.csv"
    lines = path.read_text().splitlines()
    assert lines[0].startswith("epoch,")
    path.write_text("\n".join([lines[0], lines[0], *lines[1:], "2,0.5\x00\x00"]) + "\n")
    assert len(read_history(str(path))["loss"]) == 2
    _, history = train_two_stage(small_model, data, data, None, tmp_path, _config(3, 1))
    assert len(history["stage1"]["loss"]) == 3
    text = path.read_text()
    assert text.count("epoch,") == 1 and "\x00" not in text  # rewritten whole


def test_history_logger_writes_atomically(tmp_path, monkeypatch):
    logger = HistoryLogger(str(tmp_path / "history.csv"))
    logger.on_train_begin()
    logger.on_epoch_end(0, {"loss": 1.0})
    before = (tmp_path / "history.csv").read_text()

    def crash(*args):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError):
        logger.on_epoch_end(1, {"loss": 0.5})
    monkeypatch.undo()
    assert (tmp_path / "history.csv").read_text() == before  # the old file, whole
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".tmp-")]


def test_unreadable_latest_backup_falls_back_to_the_previous(tmp_path):
    data = learnable_data(n=4, batch=2)
    with pytest.raises(KeyboardInterrupt):
        train_two_stage(small_model, data, data, None, tmp_path, _config(4, 1),
                        callbacks=[KillAt(epoch=3, nth_fit=1)])
    backups = sorted((tmp_path / "stage1" / "backup").glob("ckpt-*.weights.h5"))
    assert [p.name for p in backups] == ["ckpt-000002.weights.h5", "ckpt-000003.weights.h5"]
    newest = backups[-1]
    newest.write_bytes(newest.read_bytes()[:200])  # truncated
    recorder = EpochRecorder()
    with pytest.warns(UserWarning, match=f"cannot load backup {newest}"):
        train_two_stage(small_model, data, data, None, tmp_path, _config(4, 1),
                        callbacks=[recorder])
    assert recorder.epochs == [2, 3, 0]  # from the previous backup (2 epochs done)

    # Every backup unreadable: one line naming each file.
    with pytest.raises(KeyboardInterrupt):
        train_two_stage(small_model, data, data, None, tmp_path / "b", _config(4, 1),
                        callbacks=[KillAt(epoch=3, nth_fit=1)])
    for path in (tmp_path / "b" / "stage1" / "backup").glob("*.weights.h5"):
        path.write_bytes(b"not hdf5")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(CheckpointError) as error:
            train_two_stage(small_model, data, data, None, tmp_path / "b", _config(4, 1))
    message = str(error.value)
    assert "ckpt-000002.weights.h5" in message and "ckpt-000003.weights.h5" in message
    assert "Delete that directory" in message and "\n" not in message


def test_unreadable_stage_weights_fall_back_or_name_the_file(tmp_path):
    data = learnable_data(n=4, batch=2)
    with pytest.raises(KeyboardInterrupt):
        train_two_stage(small_model, data, data, None, tmp_path, _config(1, 1),
                        callbacks=[KillAt(epoch=0, nth_fit=2)])
    final = tmp_path / "stage1" / "final.weights.h5"
    last = tmp_path / "stage1" / "last.weights.h5"
    final.write_bytes(b"")  # e.g. a full disk
    with pytest.warns(UserWarning, match=f"cannot load stage1's weights {final}"):
        train_two_stage(small_model, data, data, None, tmp_path, _config(1, 1))
    # Without a fallback the error names the file.
    (tmp_path / "stage2" / "COMPLETE.json").unlink()
    last.unlink()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(CheckpointError, match=f"{final}"):
            train_two_stage(small_model, data, data, None, tmp_path, _config(1, 1))


def test_a_run_started_with_keras_backup_and_restore_resumes(tmp_path):
    # Runs begun before EpochBackup left Keras's `latest.weights.h5` and
    # `training_metadata.json`: they are read as the oldest backup.
    data = learnable_data(n=4, batch=2)
    with pytest.raises(KeyboardInterrupt):
        train_two_stage(small_model, data, data, None, tmp_path, _config(4, 1),
                        callbacks=[KillAt(epoch=2, nth_fit=1)])
    backup = tmp_path / "stage1" / "backup"
    (backup / "ckpt-000002.weights.h5").rename(backup / "latest.weights.h5")
    (backup / "training_metadata.json").write_text('{"epoch": 2, "batch": 0}')
    for path in backup.glob("ckpt-*"):
        path.unlink()
    recorder = EpochRecorder()
    train_two_stage(small_model, data, data, None, tmp_path, _config(4, 1),
                    callbacks=[recorder])
    assert recorder.epochs == [2, 3, 0]
