"""The per-epoch history CSV of a training stage, kept whole across kills and reruns.

`HistoryLogger` rewrites the file atomically at each epoch end; `read_history`
reads what any writer (or a crash) left, skipping damaged lines.
"""

from __future__ import annotations

import csv
import io
import math
import os
import warnings

import keras

from keras_deconvnet import atomic_io


def read_history(path: str) -> dict:
    """Reads a history CSV into `{key: [values]}`, one entry per epoch (last wins).

    Tolerates what a crash or a concurrent writer leaves behind: repeated header
    lines, a truncated last line, rows with missing fields are skipped.

    Args:
        path: the CSV file (`epoch` column first); a missing file reads as `{}`.

    Returns:
        `{log name: [per-epoch float values]}` in epoch order (NaN where absent).

    Example:

    >>> read_history("/nonexistent/history.csv")
    {}
    """
    return _rows_to_history(_read_rows(path))


def _read_rows(path: str) -> dict[int, dict]:
    """`{epoch: {log: value}}` from a history CSV, skipping damaged lines."""
    if not os.path.exists(path):
        return {}
    try:
        with open(path, newline="", errors="replace") as f:
            # A crash can leave NUL bytes (zero-filled blocks), which csv rejects.
            lines = f.read().replace("\x00", "").splitlines()
    except OSError as e:
        warnings.warn(f"cannot read the history file {path}: {e}", stacklevel=3)
        return {}
    rows = {}
    header = None
    for line in lines:
        try:
            fields = next(csv.reader([line]), [])
        except csv.Error:
            continue
        if not fields:
            continue
        if fields[0] == "epoch":  # the header, or a repeated one
            header = fields
            continue
        if header is None or len(fields) != len(header):
            continue  # truncated or foreign row
        try:
            epoch = int(fields[0])
        except ValueError:
            continue
        rows[epoch] = {key: _float(value) for key, value in zip(header, fields)
                       if key != "epoch"}
    return rows


def _float(value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _rows_to_history(rows: dict[int, dict]) -> dict:
    """`{epoch: {key: value}}` to `{key: [values in epoch order]}`; all-NaN keys
    (CSVLogger's "NA" `val_*` columns without validation) are dropped."""
    keys = []
    for epoch in sorted(rows):
        keys.extend(key for key in rows[epoch] if key not in keys)
    history = {}
    for key in keys:
        values = [rows[epoch].get(key, math.nan) for epoch in sorted(rows)]
        if not all(math.isnan(v) for v in values):
            history[key] = values
    return history


class HistoryLogger(keras.callbacks.Callback):
    """Per-epoch logs in a CSV file that a crash or a rerun cannot damage.

    Replaces `keras.callbacks.CSVLogger(append=True)`, which appends in place: two
    runs starting together each write a header, and a kill mid-line leaves a
    partial row, after which every rerun that reads the file fails. Here the whole
    file is rewritten atomically at each epoch end from the rows read at the start
    (`read_history`'s tolerant reader) plus the new ones; an epoch run again after
    a restart replaces its old row.

    Args:
        path: the CSV file.
        enabled: `False` writes nothing (non-chief workers). Defaults to `True`.

    Example:

    >>> logger = HistoryLogger("/tmp/run/stage1/history.csv")
    >>> logger.path
    '/tmp/run/stage1/history.csv'
    """

    def __init__(self, path: str, enabled: bool = True):
        super().__init__()
        self.path = os.fspath(path)
        self.enabled = enabled
        self.rows: dict[int, dict] = {}

    def on_train_begin(self, logs=None):
        self.rows = _read_rows(self.path)

    def history(self) -> dict:
        """`{log: [per-epoch values]}` of every epoch logged, before restarts too."""
        return _rows_to_history(self.rows)

    def on_epoch_end(self, epoch, logs=None):
        row = {}
        for key, value in (logs or {}).items():
            try:
                row[key] = float(value)
            except (TypeError, ValueError):
                continue
        self.rows[epoch] = row
        if not self.enabled:
            return
        keys = sorted({key for row in self.rows.values() for key in row})
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["epoch", *keys])
        for number in sorted(self.rows):
            values = self.rows[number]
            writer.writerow([number, *(repr(values[k]) if k in values else "nan"
                                       for k in keys)])
        atomic_io.write_text(self.path, out.getvalue())
