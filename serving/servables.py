"""Loaded SavedModel versions ("servables") and how a version directory loads.

`Servable.load` loads one version directory with plain `tf.saved_model.load` (what TF
Serving calls a servable) and keeps its `SignatureDef`s for the metadata API.
`load_version` loads one in isolation: a version that fails to load (a truncated
`saved_model.pb`, truncated variables, ...) becomes a `VersionStatus` `END` with
TF Serving's error code and message, as its `model_version_status` reports it, and
never stops the other versions. `version_dirs` and `directory_fingerprint` are what
`ModelRepository.poll()` reads of the base directory.

Example:

>>> status = load_version("missing/1", "deconvnet", 1)
>>> status.state, status.error_code
('END', 'NOT_FOUND')
"""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path

from keras_deconvnet.serving.errors import ServingError
from keras_deconvnet.serving.signatures import DEFAULT_SIGNATURE, Signature

SERVE_TAG = "serve"

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


def version_dirs(model_dir: str | os.PathLike) -> dict[int, Path]:
    """The integer version directories of `model_dir` (TF Serving ignores the rest)."""
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        return {}
    try:
        children = list(model_dir.iterdir())
    except OSError:
        return {}
    return {int(p.name): p for p in children if p.name.isdigit() and p.is_dir()}


def directory_fingerprint(path: str | os.PathLike) -> tuple:
    """`(relative path, size, mtime)` of every file under `path`: changes while a copy runs."""
    entries = []
    for root, _, files in os.walk(path):
        for file in files:
            full = os.path.join(root, file)
            try:
                stat = os.stat(full)
            except OSError:
                continue
            entries.append((os.path.relpath(full, path), stat.st_size, stat.st_mtime_ns))
    return tuple(sorted(entries))


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


def load_version(path: str | os.PathLike, name: str, version: int) -> VersionStatus:
    """Loads one version directory in isolation: `AVAILABLE`, or `END` with the error."""
    fingerprint = directory_fingerprint(path)
    try:
        servable = Servable.load(path, name, version)
    except Exception as e:  # any failure of one version must not stop the others
        code, message = load_error_status(e)
        if str(path) not in message:
            message = f"Failed to load {path}: {message}"
        return VersionStatus(version, END, code, message, fingerprint=fingerprint)
    return VersionStatus(version, AVAILABLE, servable=servable, fingerprint=fingerprint)
