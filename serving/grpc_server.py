"""TF Serving's gRPC API for the local server: `PredictionService` and `ModelService`.

Answers `PredictionService.Predict` (with `output_filter`), `GetModelMetadata` and
`ModelService.GetModelStatus` from the same `ModelRepository` as the REST server,
with TF Serving's status codes. `Classify`, `Regress` and `MultiInference` answer
`UNIMPLEMENTED` (the DeconvNet signatures are predict signatures).

Needs `grpcio` and `tensorflow-serving-api` (the protos). `tensorflow-serving-api`
declares a dependency on the full `tensorflow` package; with `tensorflow-cpu`
installed, install it with `pip install --no-deps tensorflow-serving-api==2.21.*`.
"""

from __future__ import annotations

import functools
from concurrent import futures
from typing import Any, NamedTuple

import numpy as np

from keras_deconvnet.serving.errors import ServingError

INSTALL_HINT = (
    "gRPC needs the optional packages grpcio and tensorflow-serving-api: "
    "`pip install grpcio` and `pip install --no-deps 'tensorflow-serving-api>=2.21,<2.22'` "
    "(--no-deps keeps tensorflow-cpu from being joined by a second, full tensorflow)"
)


class GrpcModules(NamedTuple):
    """The gRPC runtime and TF Serving's API modules (see `require_grpc`)."""

    grpc: Any
    predict_pb2: Any
    prediction_service_pb2_grpc: Any
    get_model_metadata_pb2: Any
    get_model_status_pb2: Any
    model_service_pb2_grpc: Any


def require_grpc() -> GrpcModules:
    """Imports the gRPC modules; raises `ImportError` with install instructions.

    Example:

    >>> modules = require_grpc()  # doctest: +SKIP
    >>> request = modules.predict_pb2.PredictRequest()  # doctest: +SKIP
    """
    try:
        import grpc
        from tensorflow_serving.apis import (
            get_model_metadata_pb2,
            get_model_status_pb2,
            model_service_pb2_grpc,
            predict_pb2,
            prediction_service_pb2_grpc,
        )
    except ImportError as e:
        raise ImportError(f"{INSTALL_HINT} ({e})") from None
    return GrpcModules(grpc, predict_pb2, prediction_service_pb2_grpc, get_model_metadata_pb2,
                       get_model_status_pb2, model_service_pb2_grpc)


def to_tensor_proto(array: np.ndarray):
    """A numpy array (object arrays of bytes for strings) as a `TensorProto`."""
    import tensorflow as tf

    return tf.make_tensor_proto(array)


# The TensorProto field holding the values of each dtype, and values per element.
_VALUE_FIELDS = {
    "DT_FLOAT": ("float_val", 1), "DT_DOUBLE": ("double_val", 1),
    "DT_INT32": ("int_val", 1), "DT_INT16": ("int_val", 1), "DT_INT8": ("int_val", 1),
    "DT_UINT8": ("int_val", 1), "DT_UINT16": ("int_val", 1),
    "DT_INT64": ("int64_val", 1), "DT_UINT32": ("uint32_val", 1),
    "DT_UINT64": ("uint64_val", 1), "DT_BOOL": ("bool_val", 1),
    "DT_STRING": ("string_val", 1), "DT_HALF": ("half_val", 1),
    "DT_BFLOAT16": ("half_val", 1), "DT_COMPLEX64": ("scomplex_val", 2),
    "DT_COMPLEX128": ("dcomplex_val", 2),
}


def check_tensor_proto(proto, name: str = "input") -> None:
    """Refuses a `TensorProto` whose declared shape does not match the values it carries.

    `tf.make_ndarray` zero-fills a tensor sent without values and repeats the last value
    of one sent with too few, so a 71-byte request could declare a 1500-image batch.
    Here every element must be sent: `tensor_content` of exactly `elements x itemsize`
    bytes, or exactly one value per element in the dtype's `*_val` field.

    Raises:
        ServingError: `INVALID_ARGUMENT` naming the declared shape and what was sent.
    """
    from tensorflow.core.framework import types_pb2

    if proto.tensor_shape.unknown_rank:
        raise ServingError(f"Input {name!r}: a TensorProto must have a known shape")
    dims = [d.size for d in proto.tensor_shape.dim]
    shape = "[" + ", ".join(str(d) for d in dims) + "]"
    if any(d < 0 for d in dims):
        raise ServingError(f"Input {name!r}: negative dimension in shape {shape}")
    elements = 1
    for d in dims:
        elements *= d
    dtype = types_pb2.DataType.Name(proto.dtype) if proto.dtype in types_pb2.DataType.values() \
        else str(proto.dtype)
    if dtype not in _VALUE_FIELDS:
        raise ServingError(f"Input {name!r}: unsupported dtype {dtype}")
    field, per_element = _VALUE_FIELDS[dtype]
    if proto.tensor_content:
        if dtype == "DT_STRING":
            raise ServingError(f"Input {name!r}: string tensors cannot use tensor_content")
        import tensorflow as tf

        itemsize = tf.as_dtype(proto.dtype).size
        sent, expected, unit = len(proto.tensor_content), elements * itemsize, "bytes"
    else:
        sent, expected, unit = len(getattr(proto, field)), elements * per_element, "values"
    if sent != expected:
        raise ServingError(
            f"Input {name!r} declares shape {shape} ({expected} {unit}) but carries "
            f"{sent} {unit}; send every value"
        )


def from_tensor_proto(proto, name: str = "input") -> np.ndarray:
    """A `TensorProto` as a numpy array (strings become object arrays of bytes).

    Raises:
        ServingError: `INVALID_ARGUMENT` for a malformed proto, or one whose declared
            shape does not match its values (see `check_tensor_proto`).
    """
    import tensorflow as tf

    check_tensor_proto(proto, name)
    try:
        return tf.make_ndarray(proto)
    except (TypeError, ValueError) as e:
        raise ServingError(f"Malformed TensorProto: {e}") from None


def _error_code_enum():
    from tensorflow_serving.apis import get_model_status_pb2

    status = get_model_status_pb2.ModelVersionStatus.DESCRIPTOR.fields_by_name["status"]
    return status.message_type.fields_by_name["error_code"].enum_type


def error_code_number(name: str) -> int:
    """The number of a canonical error code name in TF Serving's `StatusProto`."""
    value = _error_code_enum().values_by_name.get(name)
    return value.number if value is not None else 2  # UNKNOWN


def error_code_name(number: int) -> str:
    """The name of a `StatusProto.error_code` number (`"OK"`, `"DATA_LOSS"`, ...)."""
    value = _error_code_enum().values_by_number.get(number)
    return value.name if value is not None else str(number)


def _version(model_spec):
    if model_spec.HasField("version"):
        return int(model_spec.version.value)
    if model_spec.version_label:
        raise ServingError("Version labels are not supported by this server", "UNIMPLEMENTED")
    return None


def _guarded(method):
    """Answers a `ServingError` with its code, and any other error with `INTERNAL`."""

    @functools.wraps(method)
    def call(self, request, context):
        import grpc

        codes = grpc.StatusCode
        try:
            return method(self, request, context)
        except ServingError as e:
            context.abort(getattr(codes, e.code, codes.UNKNOWN), e.message)
        except Exception as e:  # never let a bug kill the worker
            context.abort(codes.INTERNAL, f"Internal error: {e}")

    return call


def _predict(repository, request, predict_pb2):
    """`PredictionService.Predict`: the outputs in `output_filter` (default: all)."""
    name = request.model_spec.name
    version = _version(request.model_spec)
    inputs = {k: from_tensor_proto(v, k) for k, v in request.inputs.items()}
    servable, signature, outputs = repository.predict(
        name, version, request.model_spec.signature_name, inputs, strict_dtype=True
    )
    wanted = list(request.output_filter) or sorted(outputs)
    unknown = [k for k in wanted if k not in outputs]
    if unknown:
        raise ServingError(f"output tensor alias not found in signature: {', '.join(unknown)}")
    response = predict_pb2.PredictResponse()
    response.model_spec.name = name
    response.model_spec.version.value = servable.version
    response.model_spec.signature_name = signature.name
    for key in wanted:
        response.outputs[key].CopyFrom(to_tensor_proto(outputs[key]))
    return response


def _model_metadata(repository, request, metadata_pb2):
    """`PredictionService.GetModelMetadata`: the version's signature defs."""
    if list(request.metadata_field) != ["signature_def"]:
        raise ServingError("Metadata field must be exactly ['signature_def']")
    servable = repository.get(request.model_spec.name, _version(request.model_spec))
    signature_map = metadata_pb2.SignatureDefMap()
    for key, value in servable.signature_defs.items():
        signature_map.signature_def[key].CopyFrom(value)
    response = metadata_pb2.GetModelMetadataResponse()
    response.model_spec.name = servable.name
    response.model_spec.version.value = servable.version
    response.metadata["signature_def"].Pack(signature_map)
    return response


def _model_status(repository, request, status_pb2):
    """`ModelService.GetModelStatus`: the REST status JSON as `ModelVersionStatus`es."""
    status = repository.status(request.model_spec.name, _version(request.model_spec))
    response = status_pb2.GetModelStatusResponse()
    states = status_pb2.ModelVersionStatus.State
    for entry in status["model_version_status"]:
        version_status = response.model_version_status.add()
        version_status.version = int(entry["version"])
        version_status.state = states.Value(entry["state"])
        version_status.status.error_code = error_code_number(entry["status"]["error_code"])
        version_status.status.error_message = entry["status"]["error_message"]
    return response


def _servicers(repository, modules: GrpcModules) -> tuple:
    """The `PredictionService` and `ModelService` servicers answering from `repository`."""

    class PredictionServicer(modules.prediction_service_pb2_grpc.PredictionServiceServicer):
        @_guarded
        def Predict(self, request, context):  # noqa: N802 (the service's names)
            return _predict(repository, request, modules.predict_pb2)

        @_guarded
        def GetModelMetadata(self, request, context):  # noqa: N802
            return _model_metadata(repository, request, modules.get_model_metadata_pb2)

        def _unimplemented(self, request, context):
            context.abort(modules.grpc.StatusCode.UNIMPLEMENTED, "Only Predict is served: "
                          "the DeconvNet signatures are predict signatures")

        Classify = Regress = MultiInference = _unimplemented

    class ModelServicer(modules.model_service_pb2_grpc.ModelServiceServicer):
        @_guarded
        def GetModelStatus(self, request, context):  # noqa: N802
            return _model_status(repository, request, modules.get_model_status_pb2)

    return PredictionServicer(), ModelServicer()


def start_grpc_server(
    repository,
    host: str = "127.0.0.1",
    port: int = 8500,
    max_workers: int = 16,
    max_message_bytes: int = 64 * 1024 * 1024,
):
    """Starts a gRPC server answering TF Serving's services from `repository`.

    Args:
        repository: the `ModelRepository`.
        host: the address to bind. Defaults to 127.0.0.1.
        port: the port; `0` picks a free one. Defaults to 8500, TF Serving's.
        max_workers: requests served at once.
        max_message_bytes: larger requests fail with `RESOURCE_EXHAUSTED`.

    Returns:
        `(server, port)`; stop it with `server.stop(grace=1)`.

    Example:

    >>> repository = ModelRepository.from_base_dir("exported")  # doctest: +SKIP
    >>> server, port = start_grpc_server(repository, port=0)  # doctest: +SKIP
    >>> server.stop(grace=1)  # doctest: +SKIP
    """
    modules = require_grpc()
    server = modules.grpc.server(
        futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="grpc"),
        options=[
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", -1),
        ],
    )
    prediction, model = _servicers(repository, modules)
    modules.prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
        prediction, server
    )
    modules.model_service_pb2_grpc.add_ModelServiceServicer_to_server(model, server)
    bound = server.add_insecure_port(f"{host}:{port}")
    if bound == 0:
        raise OSError(f"cannot bind gRPC to {host}:{port}")
    server.start()
    return server, bound
