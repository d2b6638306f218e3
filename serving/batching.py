"""Server-side batching of concurrent requests, configured like TF Serving's.

TF Serving batches with `--enable_batching --batching_parameters_file=FILE`, a text
`BatchingParameters` proto (see `batching_parameters.txt` in this directory). The
local server reads the same file: concurrent requests of one signature are
concatenated along the batch axis (up to `max_batch_size` rows, waiting at most
`batch_timeout_micros` for more), run once, and the outputs split back (label maps
padded to the batch's largest image are cropped back to each request's own). A batch
that fails is re-run request by request, so one bad request never fails the others.

As in TF Serving, a request of more rows than `max_batch_size` is refused (it is never
run outside the queue), and requests of encoded images are only batched together while
the batch's padded pixels (largest height x largest width x frames) stay within the
same budget as one request's (`max_batch_pixels`).
"""

from __future__ import annotations

import collections
import dataclasses
import os
import re
import threading
import time
from collections.abc import Mapping

import numpy as np

from keras_deconvnet.serving.errors import ServingError
from keras_deconvnet.serving.limits import padded_extent


@dataclasses.dataclass(frozen=True)
class BatchingOptions:
    """Batching parameters (TF Serving's `BatchingParameters` fields).

    Args:
        max_batch_size: most rows run at once.
        batch_timeout_micros: how long a non-full batch waits for more requests.
        num_batch_threads: batches run in parallel.
        max_enqueued_batches: queued batches (of `max_batch_size` rows) before new
            requests are refused with `UNAVAILABLE`.
    """

    max_batch_size: int = 8
    batch_timeout_micros: int = 0
    num_batch_threads: int = 1
    max_enqueued_batches: int = 64

    def __post_init__(self):
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            minimum = 0 if field.name == "batch_timeout_micros" else 1
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise ValueError(
                    f"`{field.name}` must be an int >= {minimum}. Received: {value!r}"
                )


_FIELD = re.compile(r"\b(\w+)\s*\{\s*value\s*:\s*(-?\d+)\s*\}")


def parse_batching_parameters(text: str) -> BatchingOptions:
    """Reads TF Serving's batching parameters text format.

    Args:
        text: e.g. `"max_batch_size { value: 8 }\\nbatch_timeout_micros { value: 2000 }"`.
            Fields this server does not use (`allowed_batch_sizes`,
            `pad_variable_length_inputs`, ...) are ignored.

    Returns:
        The `BatchingOptions`.

    Example:

    >>> parse_batching_parameters("max_batch_size { value: 4 }").max_batch_size
    4
    """
    text = "\n".join(line.split("#", 1)[0] for line in text.splitlines())
    names = {f.name for f in dataclasses.fields(BatchingOptions)}
    values = {k: int(v) for k, v in _FIELD.findall(text) if k in names}
    return BatchingOptions(**values)


def read_batching_parameters(path: str | os.PathLike) -> BatchingOptions:
    """`parse_batching_parameters` of the file at `path`."""
    with open(path, encoding="utf-8") as f:
        return parse_batching_parameters(f.read())


class _Task:
    __slots__ = ("inputs", "rows", "extent", "done", "outputs", "error")

    def __init__(self, inputs, rows, extent=None):
        self.inputs = inputs
        self.rows = rows
        self.extent = extent
        self.done = threading.Event()
        self.outputs = None
        self.error = None


class Batcher:
    """Batches calls of one signature from many threads.

    Args:
        signature: a batchable `Signature` (see `Signature.batchable`).
        options: the `BatchingOptions`.
        max_batch_pixels: requests with an image extent (`submit(..., extent)`) join a
            batch only while `largest height x largest width x total frames` of the
            batch stays within this; `None`: no pixel budget.
    """

    def __init__(
        self, signature, options: BatchingOptions, max_batch_pixels: int | None = None
    ):
        self.signature = signature
        self.options = options
        self.max_batch_pixels = max_batch_pixels
        self._queue = collections.deque()
        self._queued_rows = 0
        self._cond = threading.Condition()
        self._closed = False
        self._threads = [
            threading.Thread(target=self._work, daemon=True, name=f"batcher-{i}")
            for i in range(options.num_batch_threads)
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, inputs: Mapping[str, np.ndarray], extent=None) -> dict[str, np.ndarray]:
        """Runs `inputs` (checked arrays with a batch axis) in a batch; blocks.

        Args:
            inputs: the request's inputs.
            extent: the request's padded image extent (`limits.ImageExtent`), if any.

        Raises:
            ServingError: `INVALID_ARGUMENT` for more rows than `max_batch_size` (as
                TF Serving), `UNAVAILABLE` when the queue is full or closed.
        """
        rows = next(iter(inputs.values())).shape[0] if inputs else 0
        if rows > self.options.max_batch_size:
            raise ServingError(
                f"Task size {rows} is larger than maximum input batch size "
                f"{self.options.max_batch_size} (max_batch_size of the batching parameters)"
            )
        if rows == 0:
            return self.signature(inputs)
        task = _Task(inputs, rows, extent)
        limit = self.options.max_enqueued_batches * self.options.max_batch_size
        with self._cond:
            if self._closed:
                raise ServingError("The server is shutting down", "UNAVAILABLE")
            if self._queued_rows + rows > limit:
                raise ServingError(
                    "The batch scheduling queue to which this task was submitted is full",
                    "UNAVAILABLE",
                )
            self._queue.append(task)
            self._queued_rows += rows
            self._cond.notify()
        task.done.wait()
        if task.error is not None:
            raise task.error
        return task.outputs

    def close(self) -> None:
        """Stops the threads once the queue is empty."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def _take(self) -> list[_Task]:
        options = self.options
        with self._cond:
            while not self._queue:
                if self._closed:
                    return []
                self._cond.wait()
            batch = [self._queue.popleft()]
            rows = batch[0].rows
            extent = batch[0].extent
            deadline = time.monotonic() + options.batch_timeout_micros / 1e6
            while rows < options.max_batch_size:
                if self._queue:
                    joined = self._join(extent, self._queue[0].extent)
                    if rows + self._queue[0].rows > options.max_batch_size or joined is False:
                        break
                    batch.append(self._queue.popleft())
                    rows += batch[-1].rows
                    extent = joined
                    continue
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._closed:
                    break
                self._cond.wait(remaining)
            self._queued_rows -= rows
            return batch

    def _join(self, extent, other):
        """The extent of a batch joined by a task of extent `other`; False if over budget."""
        if extent is None or other is None or self.max_batch_pixels is None:
            return extent or other
        joined = padded_extent([extent, other])
        return joined if joined.pixels <= self.max_batch_pixels else False

    def _work(self) -> None:
        while True:
            batch = self._take()
            if not batch:
                return
            try:
                self._run(batch)
            except BaseException as e:  # never leave a caller waiting
                for task in batch:
                    if not task.done.is_set():
                        task.error = ServingError(f"Internal error: {e}", "INTERNAL")
                        task.done.set()

    def _run(self, batch: list[_Task]) -> None:
        if len(batch) > 1:
            inputs = {
                k: np.concatenate([t.inputs[k] for t in batch]) for k in batch[0].inputs
            }
            try:
                outputs = self.signature(inputs)
            except ServingError:
                outputs = None  # find the culprit: run one by one below
            if outputs is not None:
                start = 0
                for task in batch:
                    task.outputs = self.signature.split(outputs, start, task.rows)
                    start += task.rows
                    task.done.set()
                return
        for task in batch:
            try:
                task.outputs = self.signature(task.inputs)
            except ServingError as e:
                task.error = e
            task.done.set()
