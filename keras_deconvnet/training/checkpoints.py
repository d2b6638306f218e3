"""Checkpoints that survive a kill: atomic weights, best/last checkpoints, epoch backups.

Everything here writes through a temporary file and `os.replace`, so a kill at any
instant leaves either the previous file or the new one, never half of one; readers
that still meet a damaged file (a disk filled up, a copy cut short) name it and fall
back to the last good one where there is one.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import warnings

import keras
import numpy as np

from keras_deconvnet import atomic_io, private_apis


class CheckpointError(RuntimeError):
    """A checkpoint or state file exists but cannot be read (the message names it)."""


def atomic_save_weights(model: keras.Model, filepath: str) -> None:
    """`model.save_weights(filepath)` through a temporary file (`atomic_io.replacing`).

    A kill while writing leaves the previous file (or none), never a half-written
    one.

    Args:
        model: the model to save (its optimizer's variables are included, as
            `save_weights` does).
        filepath: destination, ending in `.weights.h5`.

    Raises:
        ValueError: if `filepath` does not end in `.weights.h5`.

    Example:

    >>> import tempfile
    >>> inputs = keras.Input((2,))
    >>> model = keras.Model(inputs, keras.layers.Dense(1)(inputs))
    >>> atomic_save_weights(model, tempfile.mkdtemp() + "/a.weights.h5")
    """
    filepath = os.fspath(filepath)
    if not filepath.endswith(".weights.h5"):
        raise ValueError(
            f"`filepath` must end in `.weights.h5`. Received: filepath={filepath!r}"
        )
    with atomic_io.replacing(filepath) as tmp:
        model.save_weights(tmp, overwrite=True)


def read_json_file(path: str, what: str = "state file") -> dict:
    """A JSON object from `path`, or a one-line `CheckpointError` naming the file."""
    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"cannot read the {what} {path}: {e}") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"the {what} {path} does not hold a JSON object")
    return data


def load_weights_checked(model: keras.Model, path: str, what: str = "checkpoint") -> None:
    """`model.load_weights(path)`, with a one-line `CheckpointError` naming the file.

    Args:
        model: the model to load into.
        path: a `.weights.h5` file.
        what: what the file is, for the message (e.g. "stage 1's final weights").

    Raises:
        CheckpointError: if the file is missing, truncated or does not fit the model.
    """
    if not os.path.isfile(path):
        raise CheckpointError(f"{what} {path} does not exist")
    try:
        model.load_weights(path)
    except Exception as e:  # h5py raises OSError, KeyError or ValueError
        reason = " ".join(str(e).split())[:300]
        raise CheckpointError(
            f"cannot load {what} {path} ({type(e).__name__}: {reason})"
        ) from None


def load_first_readable(model: keras.Model, candidates, what: str) -> str:
    """Loads the first readable file of `candidates`, warning about each bad one.

    Args:
        model: the model to load into.
        candidates: paths, best first.
        what: what the files are, for the messages.

    Returns:
        The path that was loaded.

    Raises:
        CheckpointError: naming every candidate when none can be loaded.
    """
    errors = []
    candidates = list(candidates)
    for i, path in enumerate(candidates):
        try:
            load_weights_checked(model, path, what)
        except CheckpointError as e:
            errors.append(str(e))
            if i + 1 < len(candidates):
                warnings.warn(f"{e}; trying {candidates[i + 1]}", stacklevel=2)
            continue
        return path
    raise CheckpointError("; ".join(errors) or f"no {what} to load")


class AtomicCheckpoint(keras.callbacks.Callback):
    """Saves the last and the best weights at every epoch end, atomically.

    Unlike `keras.callbacks.ModelCheckpoint`, files are replaced atomically (a kill
    mid-write keeps the previous file) and the best value so far is kept in a JSON
    file next to the weights, so a resumed run keeps comparing against the best of
    the epochs before the interruption.

    Args:
        directory: where to write `last.weights.h5`, `best.weights.h5` and
            `best.json` (`{"monitor", "value", "epoch"}`).
        monitor: the log to compare, e.g. `"val_mean_iou"` or `"val_loss"`.
        mode: `"max"`, `"min"` or `"auto"` (default: `"max"` for names with
            "iou" or "acc", else `"min"`).
        save_last: write `last.weights.h5` every epoch. Defaults to `True`.
        enabled: `False` writes nothing (non-chief workers). Defaults to `True`.

    Raises:
        ValueError: on an unknown `mode`.

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
            try:
                info = read_json_file(self.best_info_path, "best-checkpoint record")
            except CheckpointError as e:  # Only the comparison baseline is lost.
                warnings.warn(f"{e}; comparing from scratch", stacklevel=2)
                info = {}
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
            atomic_io.write_json(self.best_info_path,
                                 {"monitor": self.monitor, "value": value, "epoch": epoch + 1})


_BACKUP_NAME = re.compile(r"^ckpt-(\d{6})\.json$")


class EpochBackup(keras.callbacks.Callback):
    """Backs up model and optimizer state so that an interrupted `fit` resumes.

    Replaces `keras.callbacks.BackupAndRestore`, which writes in place (a kill
    mid-write truncates its only `latest.weights.h5`), reports an unreadable file
    without naming it, and leaves `model._initial_epoch` set after `fit`, so the
    next `fit` of the same model (stage 2 after a resumed stage 1) silently starts
    at that epoch.

    Each backup is a pair `ckpt-NNNNNN.weights.h5` (weights and optimizer state,
    written atomically) and `ckpt-NNNNNN.json` (`{"epoch": epochs completed}`,
    written after it). The two newest pairs are kept. `on_train_begin` loads the
    newest pair that reads back, warning (with the file name) about any that does
    not, and sets the epoch `fit` starts at; `on_train_end` clears it again. A
    backup taken mid-epoch (`save_freq` an int) also records the batch and the
    model's metric variables (the epoch's running loss and confusion matrix), so
    that a caller that positions its data there (as `train_two_stage` does) can
    finish that epoch exactly; `fit` alone restarts that epoch from the saved
    weights, as Keras's callback does.

    Args:
        backup_dir: the directory of the backups.
        save_freq: `"epoch"` (default) or an int: back up every that many batches
            as well as at each epoch end.
        enabled: `False` restores but never writes (non-chief workers, which read
            the chief's backups). Defaults to `True`.
        keep: how many backups to keep. Defaults to `2`.
        restore_on_train_begin: restore the newest backup in `on_train_begin` and
            make `fit` start at its epoch. `False` when the caller restores first
            (`restore`) and passes `initial_epoch` itself, as `train_two_stage`
            does to position its data. Defaults to `True`.
        state_callbacks: callbacks whose counters (`wait`, `best`,
            `cooldown_counter`, e.g. `ReduceLROnPlateau`'s) are saved with each
            backup and restored in `on_train_begin`; place this callback after
            them, so that their own `on_train_begin` reset comes first.

    Raises:
        ValueError: on a bad `save_freq` or `keep`.

    Example:

    >>> backup = EpochBackup("/tmp/run/stage1/backup")
    >>> backup.latest() is None
    True
    """

    def __init__(self, backup_dir: str, save_freq="epoch", enabled: bool = True,
                 keep: int = 2, restore_on_train_begin: bool = True,
                 state_callbacks=()):
        super().__init__()
        if save_freq != "epoch" and (isinstance(save_freq, bool)
                                     or not isinstance(save_freq, int) or save_freq < 1):
            raise ValueError(
                f"`save_freq` must be 'epoch' or an int >= 1. Received: save_freq={save_freq!r}"
            )
        if not isinstance(keep, int) or keep < 1:
            raise ValueError(f"`keep` must be an int >= 1. Received: keep={keep!r}")
        self.backup_dir = os.fspath(backup_dir)
        self.save_freq = save_freq
        self.enabled = enabled
        self.keep = keep
        self._epoch = 0
        self._batches = 0
        self.restored_epoch = 0
        self.restore_on_train_begin = restore_on_train_begin
        self.state_callbacks = list(state_callbacks)
        self.batch_offset = 0  # batches of the epoch done before this `fit` began
        self.restored_record: dict | None = None  # the record `restore` loaded
        self.restored_path: str | None = None  # and its weights file

    # --- reading ---------------------------------------------------------------
    def backups(self) -> list[tuple[int, str, str]]:
        """`[(number, weights_path, json_path)]` of complete backups, newest first.

        A run started before this callback existed left Keras's BackupAndRestore
        files (`latest.weights.h5` + `training_metadata.json`, and `.bkp` copies):
        they count as the oldest backups, so such a run resumes too.
        """
        if not os.path.isdir(self.backup_dir):
            return []
        found = []
        for name in os.listdir(self.backup_dir):
            match = _BACKUP_NAME.match(name)
            if match:
                stem = os.path.join(self.backup_dir, name[: -len(".json")])
                found.append((int(match.group(1)), f"{stem}.weights.h5", f"{stem}.json"))
        for number, suffix in ((0, ""), (-1, ".bkp")):
            weights = os.path.join(self.backup_dir, f"latest.weights.h5{suffix}")
            record = os.path.join(self.backup_dir, f"training_metadata.json{suffix}")
            if os.path.exists(weights) and os.path.exists(record):
                found.append((number, weights, record))
        return sorted(found, reverse=True)

    def latest(self) -> dict | None:
        """The newest backup's record (`{"epoch", ...}`), or None without backups."""
        for _, _, json_path in self.backups():
            try:
                return read_json_file(json_path, "backup record")
            except CheckpointError:
                continue
        return None

    def restore(self, model: keras.Model) -> int:
        """Loads the newest readable backup into `model`; returns its epoch (0: none).

        Raises:
            CheckpointError: naming every backup when backups exist and none loads.
        """
        optimizer = getattr(model, "optimizer", None)
        candidates = self.backups()
        if candidates and optimizer is not None and not optimizer.built:
            optimizer.build(model.trainable_variables)
        errors = []
        for _, weights_path, json_path in candidates:
            try:
                record = read_json_file(json_path, "backup record")
                epoch = record.get("epoch")
                if not isinstance(epoch, int) or epoch < 0:
                    raise CheckpointError(f"the backup record {json_path} has no valid epoch")
                load_weights_checked(model, weights_path, "backup")
            except CheckpointError as e:
                errors.append(str(e))
                warnings.warn(f"{e}; falling back to the previous backup", stacklevel=2)
                continue
            self.restored_record, self.restored_path = record, weights_path
            self.restored_epoch = epoch
            return epoch
        self.restored_record = self.restored_path = None
        self.restored_epoch = 0
        if errors:
            raise CheckpointError(
                "no backup in " + self.backup_dir + " can be loaded (" + "; ".join(errors)
                + "). Delete that directory to restart the stage from its beginning."
            )
        return 0

    # --- writing ---------------------------------------------------------------
    def save(self, model: keras.Model, epoch: int, batch: int | None = None) -> None:
        """Writes backup number n+1 for `epoch` completed epochs; prunes old ones."""
        existing = self.backups()
        number = max(existing[0][0], 0) + 1 if existing else 1
        stem = os.path.join(self.backup_dir, f"ckpt-{number:06d}")
        atomic_save_weights(model, f"{stem}.weights.h5")
        record = {"epoch": int(epoch)}
        if batch is not None:
            record["batch"] = int(batch)
            record["metrics"] = [keras.ops.convert_to_numpy(v).tolist()
                                 for v in model.metrics_variables]
        if self.state_callbacks:
            record["callbacks"] = callback_states(self.state_callbacks)
        atomic_io.write_json(f"{stem}.json", record)  # After the weights: marks them whole.
        for _, weights_path, json_path in existing[self.keep - 1:]:
            for path in (json_path, weights_path):  # json first: never a lone record.
                with contextlib.suppress(FileNotFoundError):
                    os.remove(path)

    # --- callback --------------------------------------------------------------
    def on_train_begin(self, logs=None):
        self._batches = 0
        if self.restore_on_train_begin:
            self.restored_epoch = self.restore(self.model)
            # Read by `fit` right after `on_train_begin` (Keras's BackupAndRestore
            # does the same); cleared in `on_train_end`.
            private_apis.set_initial_epoch(self.model, self.restored_epoch or None)
        self._epoch = self.restored_epoch
        states = (self.restored_record or {}).get("callbacks")
        if isinstance(states, list) and len(states) == len(self.state_callbacks):
            for callback, state in zip(self.state_callbacks, states):
                _set_callback_state(callback, state)

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if self.save_freq == "epoch":
            return
        self._batches += 1
        last = batch + 1 == (self.params or {}).get("steps")  # its epoch backup follows
        if self._batches % self.save_freq == 0 and self.enabled and not last:
            self.save(self.model, self._epoch, self.batch_offset + batch + 1)

    def on_epoch_end(self, epoch, logs=None):
        self.batch_offset = 0
        if self.enabled:
            self.save(self.model, epoch + 1)

    def on_train_end(self, logs=None):
        if self.restore_on_train_begin:
            private_apis.set_initial_epoch(self.model, None)


# The counters of Keras's epoch-level callbacks (ReduceLROnPlateau, EarlyStopping).
_CALLBACK_COUNTERS = ("wait", "best", "cooldown_counter", "best_epoch")


def callback_states(callbacks) -> list[dict]:
    """The counters of each callback, as `EpochBackup` records them."""
    return [_callback_state(c) for c in callbacks]


def restore_metric_variables(model: keras.Model, values, add: bool = False) -> bool:
    """Assigns `values` (from a mid-epoch backup record) to `model.metrics_variables`,
    or adds them (`add`: for metrics that are sums, Keras's `Mean` and confusion
    matrices, after a first batch: floating-point addition is commutative, so the
    result is the same bits as uninterrupted accumulation); False, changing
    nothing, when they do not match in number or shape."""
    variables = list(model.metrics_variables)
    if not isinstance(values, list) or len(values) != len(variables):
        return False
    arrays = []
    for variable, value in zip(variables, values):
        try:
            array = np.asarray(value, dtype=variable.dtype)
        except (TypeError, ValueError):
            return False
        if tuple(array.shape) != tuple(variable.shape):
            return False
        arrays.append(array)
    for variable, array in zip(variables, arrays):
        variable.assign(variable + array if add else array)
    return True


def _callback_state(callback) -> dict:
    """A callback's counters, floats as exact strings (`repr`: inf and NaN too)."""
    state = {}
    for name in _CALLBACK_COUNTERS:
        value = getattr(callback, name, None)
        if isinstance(value, bool) or value is None:
            continue
        try:
            state[name] = repr(float(value))
        except (TypeError, ValueError):
            continue
    return state


def _set_callback_state(callback, state) -> None:
    if not isinstance(state, dict):
        return
    for name, text in state.items():
        if name not in _CALLBACK_COUNTERS or not hasattr(callback, name):
            continue
        try:
            value = float(text)
        except (TypeError, ValueError):
            continue
        if isinstance(getattr(callback, name), int) and value.is_integer():
            value = int(value)
        setattr(callback, name, value)
