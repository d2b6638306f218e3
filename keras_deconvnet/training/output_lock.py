"""`OutputDirLock`: one training run at a time per output directory."""

from __future__ import annotations

import contextlib
import os
import warnings

try:  # POSIX; elsewhere the lock is skipped with a warning.
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None


class OutputDirLockedError(RuntimeError):
    """Another training run holds the output directory's lock."""


class OutputDirLock:
    """An exclusive, non-blocking lock on a directory for the life of a run.

    `flock` on `DIRECTORY/.lock`: released by the kernel when the process exits,
    however it exits, so a killed run never leaves a stale lock. The file records
    the holder's pid and host for the error message. POSIX only (elsewhere a
    warning and no lock); on network filesystems `flock` may not reach other
    machines.

    Args:
        directory: the directory to lock (created if needed).

    Raises:
        OutputDirLockedError: from `acquire` (or `with`) when another process,
            or another lock object of this one, holds it.

    Example:

    >>> import tempfile
    >>> with OutputDirLock(tempfile.mkdtemp()) as lock:
    ...     lock.held
    True
    """

    def __init__(self, directory: str):
        self.directory = os.fspath(directory)
        self.path = os.path.join(self.directory, ".lock")
        self._file = None

    @property
    def held(self) -> bool:
        return self._file is not None

    def acquire(self) -> OutputDirLock:
        if fcntl is None:  # pragma: no cover
            warnings.warn("no fcntl on this platform: the output directory is not locked",
                          stacklevel=2)
            return self
        os.makedirs(self.directory, exist_ok=True)
        handle = open(self.path, "a+")
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown process"
            handle.close()
            raise OutputDirLockedError(
                f"another training run ({holder}) is using {self.directory} (lock "
                f"{self.path}); wait for it to finish or choose another output directory"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} on {os.uname().nodename}\n")
        handle.flush()
        self._file = handle
        return self

    def release(self) -> None:
        if self._file is not None:
            handle, self._file = self._file, None
            with contextlib.suppress(OSError):
                handle.seek(0)
                handle.truncate()
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
            handle.close()

    def __enter__(self) -> OutputDirLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
