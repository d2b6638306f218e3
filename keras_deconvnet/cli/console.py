"""What the `deconvnet` command prints around its own output: plain progress in logs,
warnings as one line, native libraries' chatter held back.

`command_output(verbose)` wraps one command run:

- stdout that is not a terminal (a log file, a pipe, CI) goes through
  `PlainProgressStream`: progress bars lose their colour codes and backspaces, and a
  bar drawn again in place is written as a plain line at most every few seconds.
- Python warnings print as `deconvnet: warning: MESSAGE (Category)`, without the
  source line that raised them.
- File descriptor 2 is filtered while the command runs (Python's own `sys.stderr`
  keeps writing to the terminal directly): the TFLite converter's
  `fully_quantize: 0, inference_type: 6, ...`, `Created TensorFlow Lite XNNPACK
  delegate` and TensorFlow's INFO/WARNING lines are dropped, every other line
  passes as it comes, and the dropped ones are written after all if the command
  fails.

`--verbose` (or `TF_CPP_MIN_LOG_LEVEL=0`) turns all three off.
"""

from __future__ import annotations

import collections
import contextlib
import io
import os
import re
import sys
import threading
import time
import warnings

# Native lines hidden from the command line; every other line passes through.
NATIVE_NOISE = re.compile(
    r"^(fully_quantize: \d+, inference_type: \d+"
    r"|(INFO: )?Created TensorFlow Lite (XNNPACK )?delegate"
    r"|[IW]\d{4} [\d:.]+ +\d+ [\w.]+:\d+\] "
    r"|WARNING: All log messages before absl::InitializeLog\(\) is called)"
)
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
# Keras's bar: done in green, to do in white; without colours it says nothing.
_KERAS_BAR = re.compile(r" ?(\x1b\[3[27]m━*\x1b\[0m)+")
_CONTROL = re.compile(r"([\r\n\b])")


class PlainProgressStream(io.TextIOBase):
    """A text stream for logs: strips ANSI codes and turns redrawn lines into lines.

    Progress bars redraw one line with backspaces and `\\r`. Here a line that is
    redrawn is written out (as a plain line) only when `interval` seconds have passed
    since the last one, and the final state when the bar ends its line.

    Args:
        stream: the text stream to write to.
        interval: float, seconds between two states of the same redrawn line.
            Defaults to `10.0`.

    Example:

    >>> out = io.StringIO()
    >>> plain = PlainProgressStream(out, interval=3600)
    >>> _ = plain.write("\\r\\x1b[1m1/4\\x1b[0m\\b\\b\\b\\r\\x1b[1m4/4\\x1b[0m\\n")
    >>> out.getvalue()
    '1/4\\n4/4\\n'
    """

    def __init__(self, stream, interval: float = 10.0):
        super().__init__()
        self.stream = stream
        self.interval = interval
        self._line = ""
        self._last_redraw = None  # when a redrawn state was last written out

    @property
    def encoding(self):
        return getattr(self.stream, "encoding", "utf-8")

    def isatty(self) -> bool:
        return False

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        for piece in _CONTROL.split(_ANSI.sub("", _KERAS_BAR.sub("", text))):
            if piece == "\n":
                self.stream.write(self._line.rstrip() + "\n")
                self._line, self._last_redraw = "", None
            elif piece == "\r":
                self._redrawn()
            elif piece == "\b":
                pass  # a cursor move before the `\r` that redraws the line
            else:
                self._line += piece
        return len(text)

    def _redrawn(self) -> None:
        """The line is about to be drawn again: maybe keep its state as a line."""
        line, self._line = self._line.strip(), ""
        if not line:
            return
        now = time.monotonic()
        if self._last_redraw is None or now - self._last_redraw >= self.interval:
            self.stream.write(line + "\n")
            self._last_redraw = now

    def flush(self) -> None:
        self.stream.flush()

    def finish(self) -> None:
        """Writes a last unterminated line (a bar that never ended its line)."""
        if self._line.strip():
            self.stream.write(self._line.rstrip() + "\n")
        self._line = ""
        self.flush()


def format_warning(message, category, filename, lineno, line=None) -> str:
    """One line per warning, without the source line (`warnings.formatwarning`)."""
    kind = "" if category is UserWarning else f" ({category.__name__})"
    text = " ".join(str(message).split())
    return f"deconvnet: warning: {text}{kind}\n"


@contextlib.contextmanager
def plain_progress_when_not_a_terminal():
    """`sys.stdout` through `PlainProgressStream` unless it is a terminal."""
    stdout = sys.stdout
    if stdout is None or (hasattr(stdout, "isatty") and stdout.isatty()):
        yield
        return
    plain = PlainProgressStream(stdout)
    sys.stdout = plain
    try:
        yield
    finally:
        if sys.stdout is plain:
            sys.stdout = stdout
        plain.finish()


@contextlib.contextmanager
def one_line_warnings():
    """Python warnings as `deconvnet: warning: ...` lines while the block runs."""
    saved = warnings.formatwarning
    warnings.formatwarning = format_warning
    try:
        yield
    finally:
        warnings.formatwarning = saved


class _NativeLineFilter(threading.Thread):
    """Reads fd 2's pipe: writes every line that is not `noise` to `out_fd` at once,
    and keeps the last `keep` dropped lines for a failure report."""

    def __init__(self, read_fd: int, out_fd: int, noise: re.Pattern, keep: int = 200):
        super().__init__(name="deconvnet-native-stderr", daemon=True)
        self.read_fd, self.out_fd, self.noise = read_fd, out_fd, noise
        self.dropped = collections.deque(maxlen=keep)

    def run(self) -> None:
        with os.fdopen(self.read_fd, "rb", buffering=0) as pipe:
            pending = b""
            while chunk := pipe.read(65536):
                *lines, pending = (pending + chunk).split(b"\n")
                for line in lines:
                    self._line(line + b"\n")
            if pending:
                self._line(pending)

    def _line(self, line: bytes) -> None:
        if self.noise.match(line.decode("utf-8", "replace")):
            self.dropped.append(line)
        else:
            os.write(self.out_fd, line)


@contextlib.contextmanager
def native_output_filtered(noise: re.Pattern = NATIVE_NOISE):
    """Filters fd 2 during the block: lines matching `noise` are dropped, the others
    reach the original stderr as they come (a long `serve` or `train` shows native
    errors live). If the block raises, the dropped lines (the last 200) are written
    after all, so nothing that explains a failure is lost.

    Python's `sys.stderr`, when it writes to fd 2, is pointed at a copy of the
    original descriptor for the duration, so Python's messages stay in order.
    """
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):  # no real fd 2 (some services)
        yield
        return
    python_stderr = sys.stderr
    live = None
    try:
        uses_fd2 = python_stderr.fileno() == 2
    except (OSError, ValueError, AttributeError, io.UnsupportedOperation):
        uses_fd2 = False
    read_fd, write_fd = os.pipe()
    reader = _NativeLineFilter(read_fd, saved, noise)
    reader.start()
    os.dup2(write_fd, 2)
    os.close(write_fd)
    if uses_fd2:
        live = os.fdopen(os.dup(saved), "w", buffering=1,
                         encoding=python_stderr.encoding, errors="backslashreplace")
        sys.stderr = live
    failed = False
    try:
        yield
    except BaseException:
        failed = True
        raise
    finally:
        if live is not None:
            live.flush()
            if sys.stderr is live:
                sys.stderr = python_stderr
            live.close()
        os.dup2(saved, 2)  # closes this process's write end: the reader sees EOF
        reader.join(timeout=5)  # (a child process may still hold the pipe)
        if failed and reader.dropped:
            os.write(saved, b"".join(reader.dropped))
        os.close(saved)


@contextlib.contextmanager
def command_output(verbose: bool = False):
    """The three of the module docstring around a command run, unless `verbose`."""
    if verbose or os.environ.get("TF_CPP_MIN_LOG_LEVEL") == "0":
        yield
        return
    with plain_progress_when_not_a_terminal(), one_line_warnings(), \
            native_output_filtered():
        yield
