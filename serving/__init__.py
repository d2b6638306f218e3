"""Serving (installed as `keras_deconvnet.serving`): TF Serving deployment, client, local server.

- `layout.check_layout`: checks an export directory against what TF Serving expects
  (`deconvnet serve --check DIR`).
- `client.RestClient` / `client.GrpcClient`: predict over TF Serving's REST or gRPC
  API from image files, encoded bytes or arrays (`image_encoding.encode_image`);
  label maps come back as numpy; `client.RetryPolicy` says how calls are retried.
- `rest_server.RestServer` (+ `grpc_server.start_grpc_server`): a local server with
  TF Serving's REST (and gRPC) API, its connections bounded by
  `connections.ConnectionLimits`, over `repository.ModelRepository`, which loads each
  version in isolation (`servables`) and polls for new ones, checks requests against
  each `signatures.Signature` (`tensors`) and `limits.RequestLimits` on the work one
  request can cause (`deconvnet serve --model-base DIR`; options and start-up in
  `launcher`, which the command line imports).
- Deployment files for the real `tensorflow/serving`: `docker-run.sh`,
  `models.config`, `batching_parameters.txt` (in this directory).

Names are imported on first use, so the REST client does not load TensorFlow.

Example:

>>> from keras_deconvnet.serving import RestClient
>>> client = RestClient("http://127.0.0.1:8501", model_name="deconvnet")
>>> labels = client.predict_images(["cat.jpg"])[0]  # doctest: +SKIP
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "RestClient": "client",
    "GrpcClient": "client",
    "RetryPolicy": "client",
    "encode_image": "image_encoding",
    "ServingError": "errors",
    "ServingConnectionError": "errors",
    "ServingTimeoutError": "errors",
    "check_layout": "layout",
    "LayoutReport": "layout",
    "RestServer": "rest_server",
    "ConnectionLimits": "connections",
    "ModelRepository": "repository",
    "VersionStatus": "servables",
    "RequestLimits": "limits",
    "BatchingOptions": "batching",
    "parse_batching_parameters": "batching",
    "start_grpc_server": "grpc_server",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        module = importlib.import_module(f"keras_deconvnet.serving.{_EXPORTS[name]}")
        return getattr(module, name)
    raise AttributeError(f"module 'keras_deconvnet.serving' has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), *_EXPORTS])
