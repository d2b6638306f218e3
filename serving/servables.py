"""Loaded SavedModel versions ("servables") and the repository the local servers serve.

`ModelRepository.from_base_dir` loads every integer version directory under
`BASE/NAME/` with plain `tf.saved_model.load` (what TF Serving calls servables), each
in isolation: a version that fails to load (a truncated `saved_model.pb`, truncated
variables, ...) is reported in the status as `END` with its error, as TF Serving's
`model_version_status` does, and the other versions serve. `poll()` (run every
`--file-system-poll-wait-seconds` by `start_polling`) rescans the base directory as
TF Serving does: new version directories are loaded once their content stops
changing between two polls, removed ones are unloaded.

The repository answers the questions both the REST and the gRPC server ask: which
versions exist and their status, a version's metadata (its `SignatureDef`s), and
predictions of a signature on numpy inputs, checked against the signature and the
`RequestLimits` first so a bad or too costly request gets `INVALID_ARGUMENT` instead
of reaching the graph.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np

from keras_deconvnet.serving import limits as limits_module
from keras_deconvnet.serving.errors import ServingError, not_found
from keras_deconvnet.serving.limits import RequestLimits

logger = logging.getLogger("keras_deconvnet.serving")

DEFAULT_SIGNATURE = "serving_default"
DEFAULT_MAX_IMAGE_PIXELS = limits_module.DEFAULT_MAX_IMAGE_PIXELS
SERVE_TAG = "serve"

# TF Serving's servable states (ModelVersionStatus.State) that this server reports.
LOADING, AVAILABLE, END = "LOADING", "AVAILABLE", "END"


@dataclasses.dataclass(frozen=True)
class TensorInfo:
    """A signature input or output: its name, numpy dtype and static shape.

    `shape` has `None` for unknown dimensions (the batch dimension comes first);
    `dtype` is `np.dtype(object)` for strings (bytes).
    """

    name: str
    dtype: np.dtype
    shape: tuple[int | None, ...]

    @property
    def is_string(self) -> bool:
        return self.dtype == np.dtype(object)

    @property
    def dtype_name(self) -> str:
        return "string" if self.is_string else self.dtype.name

    def describe(self) -> str:
        dims = ", ".join("-1" if d is None else str(d) for d in self.shape)
        return f"{self.dtype_name} ({dims})"


def _tensor_info(name: str, spec) -> TensorInfo:
    dtype = np.dtype(object) if spec.dtype.name == "string" else np.dtype(
        spec.dtype.as_numpy_dtype
    )
    return TensorInfo(name, dtype, tuple(spec.shape.as_list()))


class Signature:
    """One signature of a loaded SavedModel: checks inputs, runs, returns numpy.

    Args:
        name: the signature's name, e.g. `"serving_default"`.
        function: the loaded concrete function (`loaded.signatures[name]`).
    """

    def __init__(self, name: str, function):
        self.name = name
        self.function = function
        _, kwargs = function.structured_input_signature
        self.inputs = {k: _tensor_info(k, s) for k, s in sorted(kwargs.items())}
        self.outputs = {
            k: _tensor_info(k, s) for k, s in sorted(function.structured_outputs.items())
        }

    @property
    def padded_by_image_sizes(self) -> bool:
        """Whether the outputs are image maps padded to the batch's largest image.

        True for signatures like `predict_image_bytes`: an int `image_sizes` output
        `(batch, 2)` gives each image's `(height, width)`, and every other output
        with unknown dimensions has them exactly at axes 1 and 2.
        """
        sizes = self.outputs.get("image_sizes")
        if sizes is None or sizes.shape != (None, 2) or sizes.dtype.kind not in "iu":
            return False
        return all(
            None not in t.shape[3:] and t.shape[1:3] == (None, None)
            for k, t in self.outputs.items()
            if k != "image_sizes" and None in t.shape[1:]
        )

    @property
    def batchable(self) -> bool:
        """Whether requests can be concatenated along axis 0 and the outputs split.

        True when every input and output has a leading batch dimension and every
        output's other dimensions are static, or are image maps padded to the
        largest image (`padded_by_image_sizes`: each request's slice is cropped back
        to its own largest image, so batching never changes an answer's shape).
        """
        tensors = [*self.inputs.values(), *self.outputs.values()]
        if not all(len(t.shape) >= 1 and t.shape[0] is None for t in tensors):
            return False
        if any(None in t.shape[1:] for t in self.inputs.values()):
            return False
        return self.padded_by_image_sizes or all(
            None not in t.shape[1:] for t in self.outputs.values()
        )

    def split(self, outputs: Mapping[str, np.ndarray], start: int, rows: int) -> dict:
        """The rows `start:start + rows` of batched `outputs`, as one request's answer."""
        sliced = {k: v[start:start + rows] for k, v in outputs.items()}
        if self.padded_by_image_sizes and rows:
            height, width = sliced["image_sizes"].max(axis=0)
            for key, info in self.outputs.items():
                if key != "image_sizes" and None in info.shape[1:]:
                    sliced[key] = sliced[key][:, :height, :width]
        return sliced

    def output_values(self, rows: int, padded=None) -> int | None:
        """How many values the answer to `rows` rows holds, or None if not known.

        Args:
            rows: the request's batch size.
            padded: for `padded_by_image_sizes` signatures, the `ImageExtent` the
                image maps are padded to (largest height and width).
        """
        total = 0
        for key, info in self.outputs.items():
            dims = list(info.shape[1:])
            if (self.padded_by_image_sizes and padded is not None and key != "image_sizes"
                    and dims[:2] == [None, None]):
                dims[0], dims[1] = padded.height, padded.width
            if None in dims:
                return None
            total += rows * limits_module.count_values(dims)
        return total

    def check_inputs(
        self, inputs: Mapping[str, np.ndarray], strict_dtype: bool = False
    ) -> dict[str, np.ndarray]:
        """Checks and converts `inputs` (name -> array) for this signature.

        Args:
            inputs: one array per input of the signature.
            strict_dtype: require the exact dtype (gRPC's tensors carry one); else
                numbers convert to the input's dtype when that loses nothing (JSON).

        Returns:
            The inputs as arrays of the signature's dtypes.

        Raises:
            ServingError: `INVALID_ARGUMENT` for a missing or unknown input, a wrong
                dtype or shape, or inputs whose batch sizes differ.
        """
        expected = sorted(self.inputs)
        unknown = sorted(set(inputs) - set(self.inputs))
        if unknown:
            raise ServingError(
                f"input tensor alias not found in signature: {', '.join(unknown)}. "
                f"Inputs expected to be in the set {{{', '.join(expected)}}}."
            )
        missing = [k for k in expected if k not in inputs]
        if missing:
            raise ServingError(
                f"Missing input tensor(s) {', '.join(missing)} of signature "
                f"{self.name!r}; expected inputs {{{', '.join(expected)}}}."
            )
        converted = {}
        for key, info in self.inputs.items():
            converted[key] = _convert(inputs[key], info, strict_dtype)
        batch_sizes = {v.shape[0] for v in converted.values() if v.ndim}
        if len(batch_sizes) > 1:
            raise ServingError(
                f"The inputs of signature {self.name!r} have different batch sizes: "
                + ", ".join(f"{k}: {v.shape[0]}" for k, v in converted.items())
            )
        return converted

    def __call__(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Runs the signature on checked inputs; TF errors become `ServingError`s."""
        import tensorflow as tf

        tensors = {
            k: tf.constant(v, dtype=tf.string if self.inputs[k].is_string else None)
            for k, v in inputs.items()
        }
        try:
            outputs = self.function(**tensors)
        except tf.errors.InvalidArgumentError as e:
            raise ServingError(_tf_message(e), "INVALID_ARGUMENT") from None
        except tf.errors.ResourceExhaustedError as e:
            raise ServingError(_tf_message(e), "RESOURCE_EXHAUSTED") from None
        except tf.errors.OpError as e:
            raise ServingError(_tf_message(e), "INTERNAL") from None
        return {k: v.numpy() for k, v in outputs.items()}


def _tf_message(error) -> str:
    # Keep the op's message; drop TF's "Graph execution error", node and stack lines.
    lines = []
    for line in (error.message or str(error)).splitlines():
        if not line.strip() or line[:1].isspace() or line.startswith(
            ("Graph execution error", "Detected at node", "<stack traces")
        ):
            continue
        lines.append(line.split(" [[")[0].strip())
    return " ".join(lines) or str(error).strip()


_KIND_OK = {"f": "fiu", "i": "iu", "u": "iu", "b": "b"}


def _convert(value, info: TensorInfo, strict_dtype: bool) -> np.ndarray:
    if info.is_string:
        array = np.asarray(value, dtype=object) if not isinstance(value, np.ndarray) else value
        if array.dtype.kind in "SU":
            array = array.astype(object)
        if array.dtype != np.dtype(object) or not all(
            isinstance(x, bytes) for x in array.reshape(-1)
        ):
            raise ServingError(
                f"Expects arg {info.name!r} to be string (bytes) but received "
                f"{array.dtype.name} values."
            )
    else:
        try:
            array = np.asarray(value)
        except (ValueError, TypeError) as e:
            raise ServingError(
                f"Input {info.name!r} is not a rectangular array of numbers: {e}"
            ) from None
        kind = array.dtype.kind
        if strict_dtype and array.dtype != info.dtype:
            raise ServingError(
                f"Expects arg {info.name!r} to be {info.dtype.name} but "
                f"{array.dtype.name} is provided"
            )
        if kind not in _KIND_OK.get(info.dtype.kind, info.dtype.kind):
            got = "strings" if kind in "SUO" else array.dtype.name
            raise ServingError(
                f"Expects arg {info.name!r} to be {info.dtype.name} but {got} "
                "is provided (or the nested lists are not rectangular)"
            )
        if info.dtype.kind in "iu" and kind in "iu":
            limits = np.iinfo(info.dtype)
            if array.size and (array.min() < limits.min or array.max() > limits.max):
                raise ServingError(
                    f"Input {info.name!r} has values outside the range of {info.dtype.name}"
                )
        with np.errstate(over="ignore", invalid="ignore"):
            array = array.astype(info.dtype, copy=False)
        if array.dtype.kind in "fc":
            finite = np.isfinite(array)
            if not finite.all():
                bad = int(array.size - np.count_nonzero(finite))
                raise ServingError(
                    f"Input {info.name!r} has {bad} non-finite value(s) (NaN, Infinity or "
                    f"out of the range of {info.dtype.name}); every value must be finite"
                )
    expected = info.shape
    if len(array.shape) != len(expected) or any(
        e is not None and e != a for e, a in zip(expected, array.shape)
    ):
        got = ", ".join(str(d) for d in array.shape)
        raise ServingError(
            f"Input {info.name!r} must have shape {info.describe()}; received "
            f"shape ({got})"
        )
    return array


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


def _event(events: list[str], level: int, message: str) -> None:
    logger.log(level, "%s", message)
    events.append(message)


class ModelRepository:
    """The models and versions a local server answers for.

    Args:
        models: model name -> {version -> `Servable`} (all `AVAILABLE`); use
            `from_base_dir` to load a TF Serving base directory.
        limits: the `RequestLimits` of every predict request.
        max_image_pixels: shorthand for `limits.max_image_pixels` (kept for
            compatibility).

    Example:

    >>> repo = ModelRepository.from_base_dir("exported", names=["deconvnet"])  # doctest: +SKIP
    >>> repo.get("deconvnet").version  # doctest: +SKIP
    2
    >>> repo.start_polling(1.0)  # doctest: +SKIP
    """

    def __init__(
        self,
        models: Mapping[str, Mapping[int, Servable]] | None = None,
        max_image_pixels: int | None = None,
        limits: RequestLimits | None = None,
    ):
        limits = limits or RequestLimits()
        if max_image_pixels is not None:
            limits = dataclasses.replace(limits, max_image_pixels=max_image_pixels)
        self.limits = limits
        self._status: dict[str, dict[int, VersionStatus]] = {
            name: {v: VersionStatus(v, AVAILABLE, servable=s) for v, s in versions.items()}
            for name, versions in (models or {}).items()
        }
        self._lock = threading.RLock()
        self._poll_lock = threading.Lock()
        self._batchers = {}
        self.batching = None
        self.base_dir: Path | None = None
        self.names: tuple[str, ...] | None = None
        self.version_policy = "all"
        self._pending: dict[tuple[str, int], tuple] = {}
        self._stop = threading.Event()
        self._poller: threading.Thread | None = None

    @property
    def max_image_pixels(self) -> int:
        return self.limits.max_image_pixels

    @classmethod
    def from_base_dir(
        cls,
        base_dir: str | os.PathLike,
        names: Iterable[str] | None = None,
        versions: str = "all",
        max_image_pixels: int | None = None,
        limits: RequestLimits | None = None,
    ) -> ModelRepository:
        """Loads models from TF Serving's layout `base_dir/NAME/VERSION/`.

        Each version loads in isolation: one that fails is reported by `status()` as
        `END` with its error, and the others serve. A version directory is only read
        by `poll()` later on (see `start_polling`).

        Args:
            base_dir: the base directory holding one directory per model.
            names: the models to load; defaults to every directory of `base_dir`
                with an integer version directory (re-scanned by `poll()`).
            versions: `"all"` serves every version; `"latest"` only the newest one that
                loads (a newer version that fails leaves the older one serving).
            max_image_pixels: see the class.
            limits: see the class.

        Returns:
            The repository.

        Raises:
            FileNotFoundError: `base_dir` does not exist.
            ValueError: no model, or a named model without any version directory.
        """
        base_dir = Path(base_dir)
        if not base_dir.is_dir():
            raise FileNotFoundError(f"model base directory not found: {base_dir}")
        if versions not in ("all", "latest"):
            raise ValueError(f"`versions` must be 'all' or 'latest'. Received: {versions!r}")
        repository = cls(max_image_pixels=max_image_pixels, limits=limits)
        repository.base_dir = base_dir
        repository.version_policy = versions
        if names is not None:
            repository.names = tuple(names)
            for name in repository.names:
                if not version_dirs(base_dir / name):
                    raise ValueError(
                        f"no version of model {name!r}: {base_dir / name} has no integer "
                        "version directory"
                    )
        elif not repository._discover():
            raise ValueError(
                f"{base_dir} holds no model (NAME/VERSION/ with an integer VERSION); "
                "export one with keras_deconvnet.export.export_saved_model"
            )
        with repository._poll_lock:
            repository._poll(initial=True)
        return repository

    # -- versions -----------------------------------------------------------------
    def _discover(self) -> list[str]:
        try:
            children = sorted(self.base_dir.iterdir())
        except OSError:
            return []
        return [p.name for p in children if not p.name.startswith(".") and version_dirs(p)]

    @property
    def models(self) -> dict[str, dict[int, Servable]]:
        """Model name -> {version -> `Servable`} of the `AVAILABLE` versions (a copy)."""
        with self._lock:
            models = {
                name: {v: e.servable for v, e in table.items() if e.state == AVAILABLE}
                for name, table in self._status.items()
            }
        return {name: versions for name, versions in models.items() if versions}

    def version_status(self, name: str) -> list[VersionStatus]:
        """Every known version of `name`, newest first (copies)."""
        with self._lock:
            table = self._status.get(name, {})
            return [dataclasses.replace(table[v]) for v in sorted(table, reverse=True)]

    def failures(self) -> list[tuple[str, VersionStatus]]:
        """`(model name, status)` of every version that failed to load."""
        with self._lock:
            return [
                (name, dataclasses.replace(entry))
                for name, table in sorted(self._status.items())
                for _, entry in sorted(table.items()) if entry.failed
            ]

    def poll(self) -> list[str]:
        """Rescans the base directory once: loads new versions, unloads removed ones.

        A new version directory is loaded once its content (file names, sizes, times)
        is the same at two consecutive polls, so a version being copied in is not read
        half-written; a failed version is retried when its content changes.

        Returns:
            One line per change (also logged).
        """
        if self.base_dir is None:
            return []
        with self._poll_lock:
            return self._poll(initial=False)

    def _poll(self, initial: bool) -> list[str]:
        names = self.names if self.names is not None else self._discover()
        with self._lock:
            known = list(self._status)
        events = []
        for name in sorted(set(names) | set(known)):
            events.extend(self._poll_model(name, version_dirs(self.base_dir / name), initial))
        return events

    def _poll_model(self, name: str, found: dict[int, Path], initial: bool) -> list[str]:
        events = []
        with self._lock:
            table = self._status.setdefault(name, {})
            for version in sorted(set(table) - set(found)):
                entry = table[version]
                if entry.state == AVAILABLE:
                    self._unload(name, entry)
                    _event(events, logging.INFO, f"unloaded model {name!r} version {version} "
                           "(its directory was removed)")
                elif entry.failed:
                    del table[version]
            for key in [k for k in self._pending if k[0] == name and k[1] not in found]:
                del self._pending[key]
            current = {v: dataclasses.replace(e) for v, e in table.items()}
        serving_newer = False
        for version in sorted(found, reverse=True):
            entry = current.get(version)
            if entry is not None and entry.state == AVAILABLE:
                if self.version_policy == "latest" and serving_newer:
                    with self._lock:
                        self._unload(name, table[version])
                    _event(events, logging.INFO, f"unloaded model {name!r} version "
                           f"{version} (a newer version serves)")
                serving_newer = True
                continue
            if self.version_policy == "latest" and serving_newer:
                continue
            fingerprint = directory_fingerprint(found[version])
            if entry is not None and entry.failed and entry.fingerprint == fingerprint:
                continue  # failed before, unchanged since
            key = (name, version)
            if not initial and self._pending.get(key) != fingerprint:
                self._pending[key] = fingerprint  # wait until a poll sees the same content
                continue
            self._pending.pop(key, None)
            with self._lock:
                table[version] = VersionStatus(version, LOADING, fingerprint=fingerprint)
            loaded = load_version(found[version], name, version)
            with self._lock:
                table[version] = loaded
            if loaded.state == AVAILABLE:
                serving_newer = True
                _event(events, logging.INFO, f"loaded model {name!r} version {version}")
            else:
                _event(events, logging.WARNING, f"model {name!r} version {version} failed "
                       f"to load: {loaded.error_code}: {loaded.error_message}")
        with self._lock:
            if not self._status.get(name):
                self._status.pop(name, None)
        return events

    def _unload(self, name: str, entry: VersionStatus) -> None:
        # Called with the lock held. In-flight requests keep their reference.
        entry.state, entry.servable = END, None
        entry.error_code, entry.error_message = "OK", ""
        for key in [k for k in self._batchers if k[:2] == (name, entry.version)]:
            self._batchers.pop(key).close()

    def start_polling(self, interval: float) -> None:
        """Calls `poll()` every `interval` seconds in a daemon thread until `close()`."""
        if interval <= 0:
            raise ValueError(f"`interval` must be positive. Received: {interval}")
        if self._poller is not None or self.base_dir is None:
            return

        def loop():
            while not self._stop.wait(interval):
                try:
                    self.poll()
                except Exception:  # keep polling whatever one scan met
                    logger.exception("polling %s failed", self.base_dir)

        self._poller = threading.Thread(target=loop, daemon=True, name="version-poller")
        self._poller.start()

    # -- requests -----------------------------------------------------------------
    def get(self, name: str, version: int | None = None) -> Servable:
        """The `AVAILABLE` servable of `name` at `version` (the newest when `None`)."""
        with self._lock:
            table = self._status.get(name, {})
            available = [v for v, e in table.items() if e.state == AVAILABLE]
            if not available or (version is not None and version not in available):
                raise not_found(name, version)
            return table[max(available) if version is None else version].servable

    def status(self, name: str, version: int | None = None) -> dict:
        """TF Serving's status JSON (`GET /v1/models/NAME[/versions/N]`): every known
        version, newest first, with its state and load error."""
        with self._lock:
            table = self._status.get(name)
            if not table or (version is not None and version not in table):
                raise not_found(name, version)
            listed = [version] if version is not None else sorted(table, reverse=True)
            return {"model_version_status": [table[v].to_json() for v in listed]}

    def enable_batching(self, options) -> None:
        """Batches concurrent requests of batchable signatures (`BatchingOptions`)."""
        self.batching = options

    def predict(
        self,
        name: str,
        version: int | None,
        signature_name: str | None,
        inputs: Mapping[str, np.ndarray],
        strict_dtype: bool = False,
    ) -> tuple[Servable, Signature, dict[str, np.ndarray]]:
        """Runs a signature: `(servable, signature, outputs)`; errors are `ServingError`s.

        The request is checked against the signature and `limits` (rows, decoded
        pixels, finite values, answer size) before anything runs.
        """
        servable = self.get(name, version)
        signature = servable.signature(signature_name)
        checked = signature.check_inputs(inputs, strict_dtype=strict_dtype)
        rows = next((v.shape[0] for v in checked.values() if v.ndim), 0)
        self.limits.check_rows(rows)
        extents = []
        for key, info in signature.inputs.items():
            if info.is_string and "image" in key:
                extents.extend(limits_module.check_images(checked[key], self.limits, key))
        padded = limits_module.padded_extent(extents)
        expected_values = signature.output_values(rows, padded)
        limits_module.check_response_values(expected_values, self.limits)
        if self.batching is not None and signature.batchable and rows:
            extent = padded if signature.padded_by_image_sizes else None
            outputs = self._batcher(servable, signature).submit(checked, extent)
        else:
            outputs = signature(checked)
        if expected_values is None:
            limits_module.check_response_values(
                sum(int(np.size(v)) for v in outputs.values()), self.limits
            )
        return servable, signature, outputs

    def _batcher(self, servable: Servable, signature: Signature):
        from keras_deconvnet.serving.batching import Batcher

        key = (servable.name, servable.version, signature.name)
        with self._lock:
            if key not in self._batchers:
                self._batchers[key] = Batcher(
                    signature, self.batching, max_batch_pixels=self.limits.max_request_pixels
                )
            return self._batchers[key]

    def close(self) -> None:
        """Stops polling and the batching threads."""
        self._stop.set()
        if self._poller is not None:
            self._poller.join(timeout=30)
            self._poller = None
        with self._lock:
            for batcher in self._batchers.values():
                batcher.close()
            self._batchers.clear()
