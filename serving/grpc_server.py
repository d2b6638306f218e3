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

from concurrent import futures

import numpy as np

from keras_deconvnet.serving.errors import ServingError

INSTALL_HINT = (
    "gRPC needs the optional packages grpcio and tensorflow-serving-api: "
    "`pip install grpcio` and `pip install --no-deps 'tensorflow-serving-api>=2.21,<2.22'` "
    "(--no-deps keeps tensorflow-cpu from being joined by a second, full tensorflow)"
)


def require_grpc():
    """Imports the gRPC modules; raises `ImportError` with install instructions."""
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
    return (grpc, predict_pb2, prediction_service_pb2_grpc, get_model_metadata_pb2,
            get_model_status_pb2, model_service_pb2_grpc)


def to_tensor_proto(array: np.ndarray):
    """A numpy array (object arrays of bytes for strings) as a `TensorProto`."""
    import tensorflow as tf

    return tf.make_tensor_proto(array)


def from_tensor_proto(proto) -> np.ndarray:
    """A `TensorProto` as a numpy array (strings become object arrays of bytes)."""
    import tensorflow as tf

    try:
        return tf.make_ndarray(proto)
    except (TypeError, ValueError) as e:
        raise ServingError(f"Malformed TensorProto: {e}") from None


def _version(model_spec):
    if model_spec.HasField("version"):
        return int(model_spec.version.value)
    if model_spec.version_label:
        raise ServingError("Version labels are not supported by this server", "UNIMPLEMENTED")
    return None


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
    """
    (grpc, predict_pb2, prediction_service_pb2_grpc, get_model_metadata_pb2,
     get_model_status_pb2, model_service_pb2_grpc) = require_grpc()

    codes = grpc.StatusCode

    def guarded(method):
        def call(self, request, context):
            try:
                return method(self, request, context)
            except ServingError as e:
                context.abort(getattr(codes, e.code, codes.UNKNOWN), e.message)
            except Exception as e:  # never let a bug kill the worker
                context.abort(codes.INTERNAL, f"Internal error: {e}")
        return call

    class PredictionServicer(prediction_service_pb2_grpc.PredictionServiceServicer):
        @guarded
        def Predict(self, request, context):  # noqa: N802 (the service's names)
            name = request.model_spec.name
            version = _version(request.model_spec)
            inputs = {k: from_tensor_proto(v) for k, v in request.inputs.items()}
            servable, signature, outputs = repository.predict(
                name, version, request.model_spec.signature_name, inputs, strict_dtype=True
            )
            wanted = list(request.output_filter) or sorted(outputs)
            unknown = [k for k in wanted if k not in outputs]
            if unknown:
                raise ServingError(
                    f"output tensor alias not found in signature: {', '.join(unknown)}"
                )
            response = predict_pb2.PredictResponse()
            response.model_spec.name = name
            response.model_spec.version.value = servable.version
            response.model_spec.signature_name = signature.name
            for key in wanted:
                response.outputs[key].CopyFrom(to_tensor_proto(outputs[key]))
            return response

        @guarded
        def GetModelMetadata(self, request, context):  # noqa: N802
            if list(request.metadata_field) != ["signature_def"]:
                raise ServingError("Metadata field must be exactly ['signature_def']")
            servable = repository.get(request.model_spec.name, _version(request.model_spec))
            signature_map = get_model_metadata_pb2.SignatureDefMap()
            for key, value in servable.signature_defs.items():
                signature_map.signature_def[key].CopyFrom(value)
            response = get_model_metadata_pb2.GetModelMetadataResponse()
            response.model_spec.name = servable.name
            response.model_spec.version.value = servable.version
            response.metadata["signature_def"].Pack(signature_map)
            return response

        def _unimplemented(self, request, context):
            context.abort(codes.UNIMPLEMENTED, "Only Predict is served: the DeconvNet "
                          "signatures are predict signatures")

        Classify = Regress = MultiInference = _unimplemented

    class ModelServicer(model_service_pb2_grpc.ModelServiceServicer):
        @guarded
        def GetModelStatus(self, request, context):  # noqa: N802
            status = repository.status(request.model_spec.name, _version(request.model_spec))
            response = get_model_status_pb2.GetModelStatusResponse()
            for entry in status["model_version_status"]:
                version_status = response.model_version_status.add()
                version_status.version = int(entry["version"])
                version_status.state = get_model_status_pb2.ModelVersionStatus.AVAILABLE
                version_status.status.error_code = 0  # OK
            return response

    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="grpc"),
        options=[
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", -1),
        ],
    )
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
        PredictionServicer(), server
    )
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelServicer(), server)
    bound = server.add_insecure_port(f"{host}:{port}")
    if bound == 0:
        raise OSError(f"cannot bind gRPC to {host}:{port}")
    server.start()
    return server, bound
