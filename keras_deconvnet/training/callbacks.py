"""Training callbacks: atomic best/last weight checkpoints that survive a restart."""

from __future__ import annotations

import json
import math
import os
import tempfile

import keras


def atomic_save_weights(model: keras.Model, filepath: str) -> None:
    """`model.save_weights(filepath)` through a temporary file and `os.replace`.

    A kill while writing leaves the previous file (or none), never a half-written
    one. `filepath` must end in `.weights.h5`.
    """
    filepath = os.fspath(filepath)
    if not filepath.endswith(".weights.h5"):
        raise ValueError(
            f"`filepath` must end in `.weights.h5`. Received: filepath={filepath!r}"
        )
    directory = os.path.dirname(os.path.abspath(filepath))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(
        dir=directory, prefix=".tmp-", suffix=".weights.h5"
    )
    os.close(fd)
    try:
        model.save_weights(tmp, overwrite=True)
        os.replace(tmp, filepath)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def atomic_write_json(data: dict, filepath: str) -> None:
    """Writes `data` as JSON through a temporary file and `os.replace`."""
    filepath = os.fspath(filepath)
    directory = os.path.dirname(os.path.abspath(filepath))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=".json")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=2, sort_keys=True)
            f.write("\n")
        os.replace(tmp, filepath)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


class AtomicCheckpoint(keras.callbacks.Callback):
    """Saves the last and the best weights at every epoch end, atomically.

    Unlike `keras.callbacks.ModelCheckpoint`, files are replaced atomically (a kill
    mid-write keeps the previous file) and the best value so far is kept in a JSON
    file next to the weights, so a run resumed with `BackupAndRestore` keeps
    comparing against the best of the epochs before the interruption.

    Args:
        directory: where to write `last.weights.h5`, `best.weights.h5` and
            `best.json` (`{"monitor", "value", "epoch"}`).
        monitor: the log to compare, e.g. `"val_mean_iou"` or `"val_loss"`.
        mode: `"max"`, `"min"` or `"auto"` (default: `"max"` for names with
            "iou" or "acc", else `"min"`).
        save_last: write `last.weights.h5` every epoch. Defaults to `True`.
        enabled: `False` writes nothing (non-chief workers). Defaults to `True`.

    Example:

    >>> checkpoint = AtomicCheckpoint("/tmp/run/stage1", monitor="val_mean_iou")
    >>> checkpoint.mode
    'max'
    """

    def __init__(
        self,
        directory: str,
        monitor: str = "val_loss",
        mode: str = "auto",
        save_last: bool = True,
        enabled: bool = True,
    ):
        super().__init__()
        if mode == "auto":
            mode = "max" if ("iou" in monitor or "acc" in monitor) else "min"
        if mode not in ("max", "min"):
            raise ValueError(f"`mode` must be 'max', 'min' or 'auto'. Received: mode={mode!r}")
        self.directory = os.fspath(directory)
        self.monitor = monitor
        self.mode = mode
        self.save_last = save_last
        self.enabled = enabled
        self.last_path = os.path.join(self.directory, "last.weights.h5")
        self.best_path = os.path.join(self.directory, "best.weights.h5")
        self.best_info_path = os.path.join(self.directory, "best.json")
        self.best = None
        if os.path.exists(self.best_info_path):
            with open(self.best_info_path) as f:
                info = json.load(f)
            if info.get("monitor") == monitor:
                self.best = info.get("value")

    def _improved(self, value) -> bool:
        if value is None or math.isnan(value):
            return False
        if self.best is None:
            return True
        return value > self.best if self.mode == "max" else value < self.best

    def on_epoch_end(self, epoch, logs=None):
        if not self.enabled:
            return
        logs = logs or {}
        if self.save_last:
            atomic_save_weights(self.model, self.last_path)
        value = logs.get(self.monitor)
        if value is None:
            return
        value = float(value)
        if self._improved(value):
            self.best = value
            atomic_save_weights(self.model, self.best_path)
            atomic_write_json(
                {"monitor": self.monitor, "value": value, "epoch": epoch + 1},
                self.best_info_path,
            )
