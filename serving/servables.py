"""Loaded SavedModel versions ("servables") and the repository the local servers serve.

`ModelRepository.from_base_dir` loads every integer version directory under
`BASE/NAME/` with plain `tf.saved_model.load` (what TF Serving calls servables) and
answers the questions both the REST and the gRPC server ask: which versions exist
and their status, a version's metadata (its `SignatureDef`s), and predictions of a
signature on numpy inputs, checked against the signature first so a bad request
gets `INVALID_ARGUMENT` instead of reaching the graph.
"""

from __future__ import annotations

import dataclasses
import os
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np

from keras_deconvnet.serving.errors import ServingError, not_found

DEFAULT_SIGNATURE = "serving_default"
DEFAULT_MAX_IMAGE_PIXELS = 40_000_000
SERVE_TAG = "serve"


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
        array = array.astype(info.dtype, copy=False)
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


def check_image_sizes(encoded: np.ndarray, max_pixels: int, name: str = "image_bytes") -> None:
    """Refuses encoded images over `max_pixels` (read from their headers only).

    Bytes that Pillow cannot identify pass: the model's decoder answers for them.

    Raises:
        ServingError: `INVALID_ARGUMENT` naming the image's size and the limit.
    """
    import io

    from PIL import Image, UnidentifiedImageError

    for index, data in enumerate(np.asarray(encoded, dtype=object).reshape(-1)):
        try:
            with Image.open(io.BytesIO(data)) as image:
                width, height = image.size
        except Image.DecompressionBombError as e:
            raise ServingError(f"Input {name!r}[{index}]: {e}") from None
        except (UnidentifiedImageError, OSError, ValueError):
            continue
        if width * height > max_pixels:
            raise ServingError(
                f"Input {name!r}[{index}] is a {width}x{height} image, over the limit of "
                f"{max_pixels} pixels"
            )


def version_dirs(model_dir: str | os.PathLike) -> dict[int, Path]:
    """The integer version directories of `model_dir` (TF Serving ignores the rest)."""
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        return {}
    return {
        int(p.name): p for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit()
    }


class ModelRepository:
    """The models and versions a local server answers for.

    Args:
        models: model name -> {version -> `Servable`}.
        max_image_pixels: encoded images (string inputs whose name contains
            "image") larger than this are refused before decoding, so a small
            "decompression bomb" file cannot exhaust the memory. Defaults to 40 MP.

    Example:

    >>> repo = ModelRepository.from_base_dir("exported", names=["deconvnet"])
    >>> repo.get("deconvnet").version  # the newest
    2
    """

    def __init__(
        self,
        models: Mapping[str, Mapping[int, Servable]],
        max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
    ):
        self.models = {name: dict(versions) for name, versions in models.items()}
        self.max_image_pixels = max_image_pixels
        self._batchers = {}
        self._lock = threading.Lock()
        self.batching = None

    @classmethod
    def from_base_dir(
        cls,
        base_dir: str | os.PathLike,
        names: Iterable[str] | None = None,
        versions: str = "all",
        max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
    ) -> ModelRepository:
        """Loads models from TF Serving's layout `base_dir/NAME/VERSION/`.

        Args:
            base_dir: the base directory holding one directory per model.
            names: the models to load; defaults to every directory of `base_dir`
                with an integer version directory.
            versions: `"all"` loads every version, `"latest"` only the newest.
            max_image_pixels: see the class.

        Returns:
            The repository.
        """
        base_dir = Path(base_dir)
        if not base_dir.is_dir():
            raise FileNotFoundError(f"model base directory not found: {base_dir}")
        if versions not in ("all", "latest"):
            raise ValueError(f"`versions` must be 'all' or 'latest'. Received: {versions!r}")
        if names is None:
            names = sorted(
                p.name for p in base_dir.iterdir()
                if not p.name.startswith(".") and version_dirs(p)
            )
            if not names:
                raise ValueError(
                    f"{base_dir} holds no model (NAME/VERSION/ with an integer VERSION); "
                    "export one with keras_deconvnet.export.export_saved_model"
                )
        models = {}
        for name in names:
            found = version_dirs(base_dir / name)
            if not found:
                raise ValueError(
                    f"no version of model {name!r}: {base_dir / name} has no integer "
                    "version directory"
                )
            if versions == "latest":
                found = {max(found): found[max(found)]}
            models[name] = {v: Servable.load(p, name, v) for v, p in sorted(found.items())}
        return cls(models, max_image_pixels=max_image_pixels)

    def get(self, name: str, version: int | None = None) -> Servable:
        """The servable of `name` at `version` (the newest when `None`)."""
        versions = self.models.get(name)
        if not versions or (version is not None and version not in versions):
            raise not_found(name, version)
        return versions[max(versions) if version is None else version]

    def status(self, name: str, version: int | None = None) -> dict:
        """TF Serving's status JSON (`GET /v1/models/NAME[/versions/N]`)."""
        if version is not None:
            listed = [self.get(name, version).version]
        else:
            self.get(name)
            listed = sorted(self.models[name], reverse=True)
        return {
            "model_version_status": [
                {
                    "version": str(v),
                    "state": "AVAILABLE",
                    "status": {"error_code": "OK", "error_message": ""},
                }
                for v in listed
            ]
        }

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
        """Runs a signature: `(servable, signature, outputs)`; errors are `ServingError`s."""
        servable = self.get(name, version)
        signature = servable.signature(signature_name)
        checked = signature.check_inputs(inputs, strict_dtype=strict_dtype)
        for key, info in signature.inputs.items():
            if info.is_string and "image" in key:
                check_image_sizes(checked[key], self.max_image_pixels, key)
        if self.batching is not None and signature.batchable:
            outputs = self._batcher(servable, signature).submit(checked)
        else:
            outputs = signature(checked)
        return servable, signature, outputs

    def _batcher(self, servable: Servable, signature: Signature):
        from keras_deconvnet.serving.batching import Batcher

        key = (servable.name, servable.version, signature.name)
        with self._lock:
            if key not in self._batchers:
                self._batchers[key] = Batcher(signature, self.batching)
            return self._batchers[key]

    def close(self) -> None:
        """Stops the batching threads."""
        with self._lock:
            for batcher in self._batchers.values():
                batcher.close()
            self._batchers.clear()
