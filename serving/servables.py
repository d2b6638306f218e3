"""Loaded SavedModel versions ("servables") and how a version directory loads.

`Servable.load` loads one version directory with plain `tf.saved_model.load` (what TF
Serving calls a servable) and keeps its `SignatureDef`s for the metadata API.
`load_version` loads one in isolation: a version that fails to load (a truncated
`saved_model.pb`, truncated variables, ...) becomes a `VersionStatus` `END` with
TF Serving's error code and message, as its `model_version_status` reports it, and
never stops the other versions, and never takes longer than its `timeout` (the load
runs in a thread of its own; one that does not finish in time is `END` with
`DEADLINE_EXCEEDED` and left behind). A version directory holding anything but
regular files and directories (a FIFO named `saved_model.pb` would block the reader
forever, a device would stream without end) is refused before anything is read.
`version_dirs` (only names of ASCII digits, at most 18 of them, are versions, as in
TF Serving: `str.isdigit` would also take "²", which `int()` refuses) and
`directory_fingerprint` are what `ModelRepository.poll()` reads of the base
directory.

Example:

>>> status = load_version("missing/1", "deconvnet", 1)
>>> status.state, status.error_code
('END', 'NOT_FOUND')
"""

from __future__ import annotations

import dataclasses
import os
import re
import stat
import threading
import time
from pathlib import Path

from keras_deconvnet.serving.errors import ServingError
from keras_deconvnet.serving.signatures import DEFAULT_SIGNATURE, Signature

SERVE_TAG = "serve"
DEFAULT_LOAD_TIMEOUT = 120.0
_VERSION_NAME = re.compile(r"[0-9]{1,18}")  # as export.saved_model's _VERSION_PATTERN

# TF Serving's servable states (ModelVersionStatus.State) that this server reports.
LOADING, AVAILABLE, END = "LOADING", "AVAILABLE", "END"


class Servable:
    """One loaded version of a model.

    Args:
        name: the model name.
        version: the version number (its directory's name).
        path: the version directory.
        loaded: the object `tf.saved_model.load` returned.
        signature_defs: the `SignatureDef` protos of the `serve` meta graph, by name.
    """

    def __init__(self, name: str, version: int, path: Path, loaded, signature_defs):
        self.name = name
        self.version = version
        self.path = Path(path)
        self.loaded = loaded
        self.signature_defs = signature_defs
        self.signatures = {k: Signature(k, f) for k, f in loaded.signatures.items()}

    @classmethod
    def load(cls, path: str | os.PathLike, name: str, version: int) -> Servable:
        """Loads the SavedModel in `path` (a version directory)."""
        import tensorflow as tf
        from tensorflow.core.protobuf import saved_model_pb2

        path = Path(path)
        proto = saved_model_pb2.SavedModel()
        proto.ParseFromString((path / "saved_model.pb").read_bytes())
        graphs = [g for g in proto.meta_graphs if SERVE_TAG in g.meta_info_def.tags]
        if not graphs:
            raise ValueError(f"{path} has no meta graph tagged {SERVE_TAG!r}")
        loaded = tf.saved_model.load(str(path), tags=[SERVE_TAG])
        return cls(name, version, path, loaded, dict(graphs[0].signature_def))

    def signature(self, signature_name: str | None) -> Signature:
        """The signature named `signature_name` (`serving_default` when empty)."""
        key = signature_name or DEFAULT_SIGNATURE
        if key not in self.signatures:
            raise ServingError(
                f'Serving signature name: "{key}" not found in signature def. '
                f"Available: {', '.join(sorted(self.signatures))}"
            )
        return self.signatures[key]

    def metadata(self) -> dict:
        """TF Serving's metadata JSON for this version (`GET .../metadata`)."""
        from google.protobuf import json_format

        signature_defs = {
            k: json_format.MessageToDict(
                v, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
            )
            for k, v in sorted(self.signature_defs.items())
        }
        return {
            "model_spec": {"name": self.name, "signature_name": "", "version": str(self.version)},
            "metadata": {"signature_def": {"signature_def": signature_defs}},
        }


def is_version_name(name: str) -> bool:
    """Whether a directory name is a version: 1 to 18 ASCII digits.

    Example:

    >>> [is_version_name(n) for n in ("12", "\\u00b2", "1" * 5000, "12\\n", "tmp-1")]
    [True, False, False, False, False]
    """
    return _VERSION_NAME.fullmatch(name) is not None


def version_dirs(model_dir: str | os.PathLike) -> dict[int, Path]:
    """The version directories of `model_dir` (`is_version_name`; TF Serving ignores
    the rest)."""
    model_dir = Path(model_dir)
    try:
        if not model_dir.is_dir():
            return {}
        children = list(model_dir.iterdir())
    except OSError:
        return {}
    found = {}
    for child in children:
        try:
            if is_version_name(child.name) and child.is_dir():
                found[int(child.name)] = child
        except OSError:
            continue
    return found


def directory_fingerprint(path: str | os.PathLike) -> tuple:
    """`(relative path, size, mtime, kind)` of every entry under `path`: changes while a
    copy runs. Only `stat`s (never opens) files, so a FIFO or a device is safe here."""
    entries = []
    for root, _, files in os.walk(path):
        for file in files:
            full = os.path.join(root, file)
            try:
                info = os.stat(full)
            except OSError:
                continue
            entries.append((os.path.relpath(full, path), info.st_size, info.st_mtime_ns,
                            stat.S_IFMT(info.st_mode)))
    return tuple(sorted(entries))


def check_regular_files(path: str | os.PathLike) -> None:
    """Raises `ServingError` (`FAILED_PRECONDITION`) if anything under `path` (links
    followed) is not a regular file or a directory."""
    for root, _, files in os.walk(path):
        for file in files:
            full = os.path.join(root, file)
            try:
                mode = os.stat(full).st_mode
            except OSError:
                continue  # a dangling link: the load reports what it misses
            if not stat.S_ISREG(mode):
                kind = ("a FIFO" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode)
                        else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
                        else "not a regular file")
                raise ServingError(
                    f"{full} is {kind}: a version directory may hold only regular files "
                    "and directories", "FAILED_PRECONDITION",
                )


_DATA_LOSS_HINTS = ("parse", "read less", "truncat", "corrupt", "bad magic", "checksum")


def load_error_status(error: BaseException) -> tuple[str, str]:
    """`(error_code, error_message)` of a failed load, as TF Serving's status reports it."""
    from google.protobuf.message import DecodeError

    message = f"{type(error).__name__}: {str(error).strip()}"
    message = " ".join(message.split())[:1000]
    try:
        import tensorflow as tf

        if isinstance(error, tf.errors.OpError):
            name = type(error).__name__.removesuffix("Error")
            code = re.sub(r"(?<!^)(?=[A-Z])", "_", name).upper()
            return (code if code != "OP" else "UNKNOWN"), message
    except ImportError:  # pragma: no cover - TensorFlow is a dependency
        pass
    if isinstance(error, FileNotFoundError):
        return "NOT_FOUND", message
    lowered = str(error).lower()
    if isinstance(error, DecodeError | EOFError) or any(h in lowered for h in _DATA_LOSS_HINTS):
        return "DATA_LOSS", message
    return "UNKNOWN", message


@dataclasses.dataclass
class VersionStatus:
    """One version of a model, as `GET /v1/models/NAME` reports it.

    Attributes:
        version: the version number.
        state: `"LOADING"`, `"AVAILABLE"` or `"END"` (failed, or unloaded).
        error_code: `"OK"`, or the canonical code of the load failure.
        error_message: the load failure, empty when OK.
        servable: the loaded `Servable` while `AVAILABLE`.
        fingerprint: the directory's `directory_fingerprint` when it was loaded.
    """

    version: int
    state: str = LOADING
    error_code: str = "OK"
    error_message: str = ""
    servable: Servable | None = None
    fingerprint: tuple | None = None

    @property
    def failed(self) -> bool:
        return self.state == END and self.error_code != "OK"

    def to_json(self) -> dict:
        return {
            "version": str(self.version),
            "state": self.state,
            "status": {"error_code": self.error_code, "error_message": self.error_message},
        }


def load_version(
    path: str | os.PathLike,
    name: str,
    version: int,
    timeout: float | None = DEFAULT_LOAD_TIMEOUT,
    stop: threading.Event | None = None,
) -> VersionStatus:
    """Loads one version directory in isolation: `AVAILABLE`, or `END` with the error.

    Args:
        path: the version directory.
        name: the model name.
        version: the version number.
        timeout: seconds the load may take (`None`: no limit); past them the version
            is `END` with `DEADLINE_EXCEEDED` and the loading thread is left behind.
            Defaults to 120.
        stop: an event that abandons the wait early (the server is shutting down).
    """
    fingerprint = directory_fingerprint(path)
    result: list = []

    def load():
        try:
            check_regular_files(path)
            result.append(Servable.load(path, name, version))
        except BaseException as e:  # any failure of one version must not stop the others
            result.append(e)

    thread = threading.Thread(target=load, daemon=True, name=f"load-{name}-{version}")
    thread.start()
    deadline = None if timeout is None else time.monotonic() + timeout
    while thread.is_alive() and (stop is None or not stop.is_set()):
        remaining = 0.5 if deadline is None else min(0.5, deadline - time.monotonic())
        if remaining <= 0:
            break
        thread.join(remaining)
    if not result:
        reason = ("the server is shutting down" if stop is not None and stop.is_set()
                  else f"did not finish within {timeout:g} s (--load-timeout)")
        return VersionStatus(version, END, "DEADLINE_EXCEEDED",
                             f"Failed to load {path}: loading {reason}",
                             fingerprint=fingerprint)
    outcome = result[0]
    if isinstance(outcome, BaseException):
        if isinstance(outcome, ServingError):
            code, message = outcome.code, outcome.message
        else:
            code, message = load_error_status(outcome)
        if str(path) not in message:
            message = f"Failed to load {path}: {message}"
        return VersionStatus(version, END, code, message, fingerprint=fingerprint)
    return VersionStatus(version, AVAILABLE, servable=outcome, fingerprint=fingerprint)
