"""Files and directories that appear complete or not at all.

Everything the package writes (presets, exports, checkpoints, JSON reports) goes
through a temporary sibling and one `os.replace`, so a kill at any moment leaves the
previous version or the new one, never half of one.

Modes are those of a plain `open()` / `mkdir()`: `0o666` and `0o777` less the umask
(0644 files, 0755 directories with umask 0022). `tempfile.mkstemp` and `mkdtemp` create
0600 and 0700 on purpose; the temporary is set to the umask's mode before it is renamed
into place, so TF Serving running as another user, a shared model directory or a
Kubernetes volume can read what is published.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np


@contextlib.contextmanager
def replacing(path: str | os.PathLike) -> Iterator[Path]:
    """Yields a temporary path next to `path` (same suffixes) that replaces it on success.

    For writers that need a file name, e.g. `model.save_weights`: the temporary file
    keeps the final name's suffixes (`.weights.h5`), and is removed if the block
    raises.

    Example:

    >>> import tempfile
    >>> target = Path(tempfile.mkdtemp()) / "notes.txt"
    >>> with replacing(target) as tmp:
    ...     _ = tmp.write_text("done")
    >>> target.read_text()
    'done'
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffixes = "".join(path.suffixes)
    stem = path.name[: len(path.name) - len(suffixes)] if suffixes else path.name
    handle, name = tempfile.mkstemp(prefix=f".{stem}.tmp-", suffix=suffixes, dir=path.parent)
    os.close(handle)
    tmp = Path(name)
    try:
        yield tmp
        _fsync(tmp)
        if tmp.is_file():  # a writer may have replaced it by a directory
            os.chmod(tmp, file_mode())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def current_umask() -> int:
    """The process's umask, read without changing it where the system allows.

    Linux reports it in `/proc/self/status`; elsewhere it is set and restored at once
    (`os.umask` can only be read by setting it).

    Example:

    >>> 0 <= current_umask() <= 0o777
    True
    """
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def file_mode() -> int:
    """The mode `open()` gives a new file: `0o666` less the umask (0644 under 0022)."""
    return 0o666 & ~current_umask()


def directory_mode() -> int:
    """The mode `mkdir()` gives a new directory: `0o777` less the umask (0755 under 0022)."""
    return 0o777 & ~current_umask()


def _fsync(path: Path) -> None:
    try:
        with open(path, "rb+") as f:
            os.fsync(f.fileno())
    except OSError:  # some file systems refuse fsync; the rename is still atomic
        pass


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Writes `data` to `path` atomically; returns the path."""
    with replacing(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Writes `text` (UTF-8) to `path` atomically; returns the path."""
    return write_bytes(path, text.encode("utf-8"))


def jsonable(value):
    """`value` with tuples, NumPy values and paths made JSON-ready (NaN -> None).

    Example:

    >>> jsonable({"a": (1, np.float32(0.5)), "b": float("nan")})
    {'a': [1, 0.5], 'b': None}
    """
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return value


def write_json(path: str | os.PathLike, data, indent: int = 2) -> Path:
    """Writes `data` as indented JSON atomically (see `jsonable`); returns the path.

    Example:

    >>> import tempfile
    >>> path = write_json(Path(tempfile.mkdtemp()) / "r.json", {"iou": np.float32(0.5)})
    >>> path.read_text()
    '{\\n  "iou": 0.5\\n}\\n'
    """
    return write_text(path, json.dumps(jsonable(data), indent=indent) + "\n")


def check_new_directory(path: str | os.PathLike, what: str = "directory") -> Path:
    """Raises `FileExistsError` if `path` is a file or a non-empty directory."""
    path = Path(path)
    if path.is_file() or (path.is_dir() and any(path.iterdir())):
        raise FileExistsError(
            f"The {what} already exists and is not empty; choose another or remove it. "
            f"Received: {path}"
        )
    return path


@contextlib.contextmanager
def staged_directory(target: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Yields a temporary sibling directory that becomes `target` on success.

    The staging directory is on the same file system, so the final rename is atomic,
    and it is removed if the block raises. A non-empty `target` is refused unless
    `overwrite`, which replaces it only once the new one is complete (the old one is
    moved aside, then deleted).

    Example:

    >>> import tempfile
    >>> target = Path(tempfile.mkdtemp()) / "export"
    >>> with staged_directory(target) as staging:
    ...     _ = (staging / "model.txt").write_text("weights")
    >>> sorted(p.name for p in target.iterdir())
    ['model.txt']
    """
    target = Path(target).absolute()
    if target.exists() and not target.is_dir():
        raise FileExistsError(f"`{target}` exists and is not a directory.")
    if not overwrite:
        check_new_directory(target, "output directory")
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.partial-", dir=target.parent))
    try:
        os.chmod(staging, directory_mode())  # mkdtemp's 0700 would hide it from others
        yield staging
        _commit_directory(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _commit_directory(staging: Path, target: Path) -> None:
    if not target.exists():
        os.rename(staging, target)
        return
    if not any(target.iterdir()):
        os.replace(staging, target)  # rename(2) replaces an empty directory
        return
    old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
    os.rmdir(old)
    os.rename(target, old)
    try:
        os.rename(staging, target)
    except BaseException:
        os.rename(old, target)
        raise
    shutil.rmtree(old, ignore_errors=True)
