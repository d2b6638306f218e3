"""Clients for TF Serving's REST and gRPC APIs (the real server or the local one).

Both clients have the same methods:

- `status()`, `metadata()`, `wait_until_available(timeout)`;
- `predict(inputs, signature_name)`: raw signature call, name -> numpy array;
- `predict_labels(images)`: a float batch `(batch, H, W, 3)`, RGB 0-255, at the
  exported size -> label maps `(batch, H, W)` int32 (signature `serving_default`);
- `predict_images(images)`: image files, encoded bytes or arrays of any size ->
  one label map per image at its own size (signature `predict_image_bytes`).

Connection errors are retried with exponential backoff (`retry`, a `RetryPolicy`);
every call has a `timeout`. Error answers raise `ServingError` with TF Serving's
message and code. The REST client uses only the standard library; the gRPC client
needs `grpcio` and `tensorflow-serving-api` (imported when first used).

Example:

>>> client = RestClient("http://127.0.0.1:8501", model_name="deconvnet")
>>> client.wait_until_available(timeout=60)  # doctest: +SKIP
>>> labels = client.predict_images(["cat.jpg"])[0]  # doctest: +SKIP
"""

from __future__ import annotations

import base64
import dataclasses
import http.client
import json
import os
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from keras_deconvnet.serving.errors import (
    ServingConnectionError,
    ServingError,
    ServingTimeoutError,
)
from keras_deconvnet.serving.image_encoding import ImageLike, encode_image

DEFAULT_SIGNATURE = "serving_default"
IMAGE_BYTES_SIGNATURE = "predict_image_bytes"


def _crop_labels(labels: np.ndarray, sizes: np.ndarray) -> list[np.ndarray]:
    return [labels[i, : int(h), : int(w)] for i, (h, w) in enumerate(sizes)]


def _check_batch(images) -> np.ndarray:
    images = np.asarray(images, dtype=np.float32)
    if images.ndim == 3:
        images = images[None]
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(
            "`images` must be RGB images (batch, height, width, 3) or one image "
            f"(height, width, 3). Received: shape={images.shape}"
        )
    return images


@dataclasses.dataclass(frozen=True)
class RetryPolicy:
    """How a client retries a call that could not connect: exponential backoff.

    A REST call is retried when it could not connect or got 502, 503 or 504; a gRPC
    call when it got `UNAVAILABLE`. Timeouts and other errors are never retried.

    Args:
        retries: how often to retry; `0` disables retries. Defaults to 3.
        backoff: seconds before the first retry, doubled on each next one, capped at
            `max_backoff`. Defaults to 0.25.
        max_backoff: the longest wait between retries. Defaults to 4.
        sleep: the function that waits (tests pass a fake). Defaults to `time.sleep`.

    Example:

    >>> RetryPolicy(retries=4, backoff=0.1, max_backoff=0.3).delays()
    [0.1, 0.2, 0.3, 0.3]
    >>> client = RestClient("http://127.0.0.1:8501", retry=RetryPolicy(retries=0))
    """

    retries: int = 3
    backoff: float = 0.25
    max_backoff: float = 4.0
    sleep: Callable[[float], None] = time.sleep

    def __post_init__(self):
        if self.retries < 0 or self.backoff < 0:
            raise ValueError(
                f"`retries` and `backoff` must be >= 0. Received: {self.retries}, "
                f"{self.backoff}"
            )
        if self.max_backoff < 0:
            raise ValueError(f"`max_backoff` must be >= 0. Received: {self.max_backoff}")

    def delays(self) -> list[float]:
        """The waits before each retry, in seconds."""
        return [min(self.max_backoff, self.backoff * 2**n) for n in range(self.retries)]

    def run(self, call: Callable[[], Any]) -> Any:
        """Returns `call()`, retried after each wait while it raises `_Retry`; raises the
        error the last `_Retry` carried."""
        for delay in [*self.delays(), None]:
            try:
                return call()
            except _Retry as e:
                if delay is None:
                    raise e.error from None
                self.sleep(delay)
        raise AssertionError("unreachable")


class _Retry(Exception):
    """A retryable failure; `error` is what the caller sees once the retries run out."""

    def __init__(self, error: ServingError):
        super().__init__(str(error))
        self.error = error


class _BaseClient:
    # Whether `wait_until_available` waits through "not found" (REST: 404 until the
    # model's first version is loaded) instead of raising it.
    _waits_through_not_found = False

    def predict(self, inputs, signature_name: str = DEFAULT_SIGNATURE):  # pragma: no cover
        raise NotImplementedError

    def status(self) -> list[dict]:  # pragma: no cover
        raise NotImplementedError

    @property
    def _endpoint(self) -> str:  # pragma: no cover
        raise NotImplementedError

    def wait_until_available(self, timeout: float = 60.0, interval: float = 0.2) -> list[dict]:
        """Polls the status until a version is `AVAILABLE`; returns the status.

        Raises:
            ServingTimeoutError: no version `AVAILABLE` within `timeout` seconds.
        """
        deadline = time.monotonic() + timeout
        while True:
            try:
                status = self.status()
                if any(s.get("state") == "AVAILABLE" for s in status):
                    return status
            except (ServingConnectionError, ServingTimeoutError):
                pass
            except ServingError as e:
                if not (self._waits_through_not_found and e.http_status == 404):
                    raise
            if time.monotonic() > deadline:
                raise ServingTimeoutError(f"{self._endpoint} not available after {timeout} s")
            time.sleep(interval)

    def predict_labels(
        self, images: np.ndarray, signature_name: str = DEFAULT_SIGNATURE
    ) -> np.ndarray:
        """Label maps of a float batch at the exported size.

        Args:
            images: `(batch, height, width, 3)` or `(height, width, 3)`, RGB 0-255.
            signature_name: the signature taking `images`.

        Returns:
            int32 labels `(batch, height, width)`.
        """
        outputs = self._predict_only(["labels"], {"images": _check_batch(images)},
                                     signature_name)
        return outputs["labels"].astype(np.int32)

    def _predict_only(self, names, inputs, signature_name):
        """`predict`, asking for only `names` where the protocol allows (gRPC)."""
        return self.predict(inputs, signature_name)

    def predict_images(
        self, images: Sequence[ImageLike], batch_size: int = 8, exif_transpose: bool = False
    ) -> list[np.ndarray]:
        """Label maps of images of any size, each at its own size.

        Args:
            images: file paths, encoded JPEG/PNG/BMP/GIF bytes, or arrays
                `(height, width, 3)` in 0-255.
            batch_size: images per request (at most the server's rows per request).
            exif_transpose: apply each file's EXIF orientation before sending (see
                `encode_image`); the maps then match the upright image.

        Returns:
            One int32 label map `(height, width)` per image.
        """
        if isinstance(images, str | os.PathLike | bytes | np.ndarray):
            raise TypeError("`images` must be a sequence of images (wrap one in a list)")
        if batch_size < 1:
            raise ValueError(f"`batch_size` must be >= 1. Received: {batch_size}")
        encoded = [encode_image(image, exif_transpose) for image in images]
        results = []
        for start in range(0, len(encoded), batch_size):
            chunk = np.array(encoded[start:start + batch_size], dtype=object)
            outputs = self.predict({"image_bytes": chunk}, IMAGE_BYTES_SIGNATURE)
            results.extend(_crop_labels(outputs["labels"], outputs["image_sizes"]))
        return results


def _to_json_value(array: np.ndarray):
    if array.dtype == np.dtype(object) or array.dtype.kind == "S":
        flat = [{"b64": base64.b64encode(bytes(x)).decode("ascii")} for x in array.ravel()]
        return np.array(flat, dtype=object).reshape(array.shape).tolist()
    return array.tolist()


_RETRYABLE_HTTP = (502, 503, 504)


class RestClient(_BaseClient):
    """A client of TF Serving's REST API (standard library only).

    Args:
        url: the server, e.g. `"http://127.0.0.1:8501"`.
        model_name: the model. Defaults to `"deconvnet"`.
        version: a version number; `None` (default) asks for the newest.
        timeout: seconds to wait for each answer.
        retry: how a request that could not connect (or got 502, 503 or 504) is
            retried; defaults to `RetryPolicy()` (3 retries from 0.25 s).

    Example:

    >>> client = RestClient("http://127.0.0.1:8501", "deconvnet", version=2)
    >>> client.predict_labels(np.zeros((1, 224, 224, 3), "float32")).shape  # doctest: +SKIP
    (1, 224, 224)
    """

    _waits_through_not_found = True

    def __init__(
        self,
        url: str = "http://127.0.0.1:8501",
        model_name: str = "deconvnet",
        version: int | None = None,
        timeout: float = 30.0,
        retry: RetryPolicy | None = None,
    ):
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"`url` must start with http:// or https://. Received: {url!r}")
        self.url = url.rstrip("/")
        self.model_name = model_name
        self.version = version
        self.timeout = timeout
        self.retry = retry or RetryPolicy()

    @property
    def _endpoint(self) -> str:
        return self.model_url

    @property
    def model_url(self) -> str:
        """`URL/v1/models/NAME[/versions/N]`."""
        url = f"{self.url}/v1/models/{self.model_name}"
        return url if self.version is None else f"{url}/versions/{self.version}"

    def request(self, method: str, url: str, body: Mapping | None = None) -> dict:
        """Sends one request (with retries); returns the decoded JSON answer.

        Raises:
            ServingError: the server's error answer.
            ServingConnectionError: no connection after every retry.
            ServingTimeoutError: no answer within `timeout`.
        """
        data = None if body is None else json.dumps(body).encode("utf-8")

        def call():
            request = urllib.request.Request(url, data=data, method=method)
            if data is not None:
                request.add_header("Content-Type", "application/json")
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    payload = response.read()
            except urllib.error.HTTPError as e:
                error = ServingError.from_http(e.code, _error_message(e))
                if e.code in _RETRYABLE_HTTP:
                    raise _Retry(error) from None
                raise error from None
            except TimeoutError as e:
                raise ServingTimeoutError(
                    f"no answer from {url} within {self.timeout} s"
                ) from e
            except urllib.error.URLError as e:
                if isinstance(e.reason, TimeoutError | socket.timeout):
                    raise ServingTimeoutError(
                        f"no answer from {url} within {self.timeout} s"
                    ) from e
                raise _Retry(ServingConnectionError(f"cannot reach {url}: {e.reason}")) from e
            except (ConnectionError, http.client.HTTPException) as e:
                raise _Retry(ServingConnectionError(f"connection to {url} failed: {e!r}")) from e
            try:
                return json.loads(payload)
            except json.JSONDecodeError as e:
                raise ServingError(f"the server answered invalid JSON: {e}", "INTERNAL") from None

        return self.retry.run(call)

    def status(self) -> list[dict]:
        """The `model_version_status` entries (one per version, or the requested one)."""
        return self.request("GET", self.model_url)["model_version_status"]

    def metadata(self) -> dict:
        """The model's metadata (`model_spec` and the signature defs)."""
        return self.request("GET", f"{self.model_url}/metadata")

    def predict(
        self,
        inputs: Mapping[str, np.ndarray],
        signature_name: str = DEFAULT_SIGNATURE,
        row_format: bool = False,
    ) -> dict[str, np.ndarray]:
        """Calls a signature.

        Args:
            inputs: input name -> array with a batch axis (object arrays of bytes for
                string inputs, sent as `{"b64": ...}`).
            signature_name: the signature.
            row_format: send `{"instances": ...}` instead of `{"inputs": ...}`.

        Returns:
            Output name -> numpy array.
        """
        inputs = {k: np.asarray(v) for k, v in inputs.items()}
        body: dict[str, Any] = {"signature_name": signature_name}
        if row_format:
            sizes = {len(v) for v in inputs.values()}
            if len(sizes) != 1:
                raise ValueError("row format needs inputs with one batch size")
            columns = {k: _to_json_value(v) for k, v in inputs.items()}
            body["instances"] = [
                {k: columns[k][i] for k in columns} for i in range(sizes.pop())
            ]
        else:
            body["inputs"] = {k: _to_json_value(v) for k, v in inputs.items()}
        answer = self.request("POST", f"{self.model_url}:predict", body)
        if row_format:
            rows = answer["predictions"]
            if rows and isinstance(rows[0], dict):
                return {k: np.asarray([row[k] for row in rows]) for k in rows[0]}
            return {"output": np.asarray(rows)}
        outputs = answer["outputs"]
        if not isinstance(outputs, dict):
            return {"output": np.asarray(outputs)}
        return {k: np.asarray(v) for k, v in outputs.items()}


def _error_message(error: urllib.error.HTTPError) -> str:
    try:
        body = error.read()
        return json.loads(body)["error"]
    except Exception:
        return f"HTTP {error.code} {error.reason}"


class GrpcClient(_BaseClient):
    """A client of TF Serving's gRPC `PredictionService` and `ModelService`.

    Needs `grpcio` and `tensorflow-serving-api` (imported here, with install
    instructions if absent).

    Args:
        target: `"host:port"`, e.g. `"127.0.0.1:8500"`.
        model_name: the model. Defaults to `"deconvnet"`.
        version: a version number; `None` (default) asks for the newest.
        timeout: seconds to wait for each answer.
        retry: how a call that got `UNAVAILABLE` is retried; defaults to
            `RetryPolicy()` (3 retries from 0.25 s).
        max_message_bytes: the largest answer accepted.

    Example:

    >>> client = GrpcClient("127.0.0.1:8500", "deconvnet")
    >>> client.predict_images(["cat.jpg"])[0].shape  # doctest: +SKIP
    (375, 500)
    """

    def __init__(
        self,
        target: str = "127.0.0.1:8500",
        model_name: str = "deconvnet",
        version: int | None = None,
        timeout: float = 30.0,
        retry: RetryPolicy | None = None,
        max_message_bytes: int = 256 * 1024 * 1024,
    ):
        from keras_deconvnet.serving.grpc_server import require_grpc

        (self._grpc, self._predict_pb2, prediction_grpc, self._metadata_pb2,
         self._status_pb2, model_grpc) = require_grpc()
        self.target = target
        self.model_name = model_name
        self.version = version
        self.timeout = timeout
        self.retry = retry or RetryPolicy()
        self._channel = self._grpc.insecure_channel(
            target, options=[("grpc.max_receive_message_length", max_message_bytes),
                             ("grpc.max_send_message_length", max_message_bytes)],
        )
        self._prediction = prediction_grpc.PredictionServiceStub(self._channel)
        self._models = model_grpc.ModelServiceStub(self._channel)

    @property
    def _endpoint(self) -> str:
        return self.target

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> GrpcClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _spec(self, spec, signature_name: str | None = None) -> None:
        spec.name = self.model_name
        if self.version is not None:
            spec.version.value = self.version
        if signature_name is not None:
            spec.signature_name = signature_name

    def _call(self, method, request):
        grpc = self._grpc

        def call():
            try:
                return method(request, timeout=self.timeout)
            except grpc.RpcError as e:
                code = e.code()
                if code == grpc.StatusCode.UNAVAILABLE:
                    raise _Retry(ServingConnectionError(
                        f"cannot reach {self.target}: {e.details()}"
                    )) from None
                if code == grpc.StatusCode.DEADLINE_EXCEEDED:
                    raise ServingTimeoutError(
                        f"no answer from {self.target} within {self.timeout} s"
                    ) from None
                raise ServingError(e.details() or str(code), code.name) from None

        return self.retry.run(call)

    def status(self) -> list[dict]:
        """The version statuses, as the REST API's `model_version_status` entries."""
        request = self._status_pb2.GetModelStatusRequest()
        self._spec(request.model_spec)
        from keras_deconvnet.serving.grpc_server import error_code_name

        response = self._call(self._models.GetModelStatus, request)
        states = self._status_pb2.ModelVersionStatus.State
        return [
            {"version": str(s.version), "state": states.Name(s.state),
             "status": {"error_code": error_code_name(s.status.error_code),
                        "error_message": s.status.error_message}}
            for s in response.model_version_status
        ]

    def metadata(self) -> dict:
        """The model spec and signature defs, as the REST API's metadata JSON."""
        from google.protobuf import json_format

        request = self._metadata_pb2.GetModelMetadataRequest()
        self._spec(request.model_spec)
        request.metadata_field.append("signature_def")
        response = self._call(self._prediction.GetModelMetadata, request)
        signature_map = self._metadata_pb2.SignatureDefMap()
        response.metadata["signature_def"].Unpack(signature_map)
        return {
            "model_spec": {"name": response.model_spec.name, "signature_name": "",
                           "version": str(response.model_spec.version.value)},
            "metadata": {"signature_def": json_format.MessageToDict(
                signature_map, preserving_proto_field_name=True)},
        }

    def predict(
        self,
        inputs: Mapping[str, np.ndarray],
        signature_name: str = DEFAULT_SIGNATURE,
        output_filter: Sequence[str] | None = None,
    ) -> dict[str, np.ndarray]:
        """Calls a signature with `PredictionService.Predict`.

        Args:
            inputs: input name -> array with a batch axis (object arrays of bytes for
                string inputs).
            signature_name: the signature.
            output_filter: only these outputs (default: all).

        Returns:
            Output name -> numpy array.
        """
        from keras_deconvnet.serving.grpc_server import from_tensor_proto, to_tensor_proto

        request = self._predict_pb2.PredictRequest()
        self._spec(request.model_spec, signature_name)
        for key, value in inputs.items():
            request.inputs[key].CopyFrom(to_tensor_proto(np.asarray(value)))
        request.output_filter.extend(output_filter or [])
        response = self._call(self._prediction.Predict, request)
        return {k: from_tensor_proto(v) for k, v in response.outputs.items()}

    def _predict_only(self, names, inputs, signature_name):
        return self.predict(inputs, signature_name, output_filter=names)
