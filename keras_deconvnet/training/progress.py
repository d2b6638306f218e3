"""What a training run prints: stage headers, resume lines, plain progress lines.

`train_two_stage` announces each phase (a stage, where a resumed stage continues,
the BatchNorm recomputation) with `announce`, and reports progress in plain lines
when standard output is not a terminal (`PlainProgress`, instead of Keras's
progress bar, whose ANSI codes and carriage returns fill a log file). On a
terminal Keras's bar is kept.
"""

from __future__ import annotations

import sys
import time

import keras


def is_terminal() -> bool:
    """Whether standard output is an interactive terminal."""
    stream = sys.stdout
    return bool(getattr(stream, "isatty", None) and stream.isatty())


def announce(message: str, enabled: bool = True) -> None:
    """Prints one line of a run's narration (flushed: logs show it at once)."""
    if enabled:
        print(message, flush=True)


def fit_verbosity(verbose) -> tuple[int | str, bool]:
    """`(verbose for model.fit, whether to add PlainProgress)` for a config's `verbose`.

    `"auto"` keeps Keras's bar on a terminal and uses plain lines otherwise; `1`
    (the bar) on a non-terminal is turned into plain lines too; `0` and `2` are
    kept.

    Example:

    >>> fit_verbosity(0)
    (0, False)
    """
    if verbose == 0 or verbose == 2:
        return verbose, False
    if is_terminal():
        return verbose, False
    return 0, True


def _format_logs(logs: dict) -> str:
    parts = []
    for key, value in (logs or {}).items():
        try:
            parts.append(f"{key} {float(value):.4g}")
        except (TypeError, ValueError):
            continue
    return ", ".join(parts)


class PlainProgress(keras.callbacks.Callback):
    """Progress in plain lines: every `interval` seconds inside an epoch, and one
    line with the logs at each epoch end. No ANSI codes, no carriage returns.

    Args:
        name: what is trained (e.g. `"stage1"`), at the start of each line.
        epochs: the number of epochs of the stage.
        steps: batches per epoch, or None when unknown.
        interval: least seconds between two lines inside an epoch. Defaults to `10`.

    Example:

    >>> progress = PlainProgress("stage1", epochs=5, steps=100)
    >>> progress.interval
    10.0
    """

    def __init__(self, name: str, epochs: int, steps: int | None, interval: float = 10.0):
        super().__init__()
        self.name = name
        self.epochs = epochs
        self.steps = steps
        self.interval = float(interval)
        self._epoch = 0
        self._start = 0.0
        self._last = 0.0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch
        self._start = self._last = time.monotonic()

    def on_train_batch_end(self, batch, logs=None):
        now = time.monotonic()
        if now - self._last < self.interval:
            return
        self._last = now
        of = f"/{self.steps}" if self.steps else ""
        loss = f", loss {float(logs['loss']):.4g}" if logs and "loss" in logs else ""
        announce(f"{self.name} epoch {self._epoch + 1}/{self.epochs}: batch {batch + 1}{of}"
                 f" ({now - self._start:.0f} s){loss}")

    def on_epoch_end(self, epoch, logs=None):
        seconds = time.monotonic() - self._start
        announce(f"{self.name} epoch {epoch + 1}/{self.epochs} done ({seconds:.0f} s): "
                 f"{_format_logs(logs)}")


class BatchProgress:
    """Plain progress lines for a loop over `total` batches (e.g. the BN statistics):
    one every `interval` seconds and one at the end.

    Example:

    >>> progress = BatchProgress("BatchNorm statistics", 10, enabled=False)
    >>> progress(3)
    """

    def __init__(self, what: str, total: int | None, interval: float = 10.0,
                 enabled: bool = True):
        self.what = what
        self.total = total
        self.interval = float(interval)
        self.enabled = enabled
        self._start = self._last = time.monotonic()

    def __call__(self, done: int, final: bool = False) -> None:
        now = time.monotonic()
        if not final and now - self._last < self.interval:
            return
        self._last = now
        of = f"/{self.total}" if self.total else ""
        announce(f"{self.what}: {done}{of} batches ({now - self._start:.0f} s)",
                 self.enabled)
