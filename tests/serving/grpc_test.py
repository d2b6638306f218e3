"""The local server's gRPC PredictionService/ModelService through `GrpcClient`."""

import numpy as np
import pytest
import tensorflow as tf

from keras_deconvnet.serving.errors import ServingError

pytest.importorskip("tensorflow_serving.apis.prediction_service_pb2_grpc")
pytest.importorskip("grpc")

from keras_deconvnet.serving.client import GrpcClient  # noqa: E402


@pytest.fixture
def grpc_client(server, util):
    if server.grpc_target is None:
        pytest.skip("the server runs without gRPC")
    with GrpcClient(server.grpc_target, util.MODEL, timeout=60) as client:
        yield client


def test_status_and_metadata(grpc_client):
    status = grpc_client.status()
    assert [s["version"] for s in status] == ["2", "1"]
    assert all(s["state"] == "AVAILABLE" for s in status)
    metadata = grpc_client.metadata()
    assert metadata["model_spec"]["version"] == "2"
    signatures = metadata["metadata"]["signature_def"]["signature_def"]
    assert signatures["serving_default"]["inputs"]["images"]["dtype"] == "DT_FLOAT"


def test_predict_matches_in_process_model(grpc_client, server, util, loaded):
    images = util.random_images(2, seed=11)
    expected = loaded[2].signatures["serving_default"](images=tf.constant(images))
    labels = grpc_client.predict_labels(images)
    np.testing.assert_array_equal(labels, expected["labels"].numpy())
    encoded = [util.png_bytes(util.random_images(1, seed=12, size=(33, 47))[0])]
    expected = loaded[1].signatures["predict_image_bytes"](image_bytes=tf.constant(encoded))
    with GrpcClient(server.grpc_target, util.MODEL, version=1) as v1:
        labels = v1.predict_images(encoded)
    assert labels[0].shape == (33, 47)
    np.testing.assert_array_equal(labels[0], expected["labels"].numpy()[0])


def test_errors_have_tf_serving_codes(grpc_client, server, util):
    with pytest.raises(ServingError) as info:
        grpc_client.predict({"images": np.zeros((1, 64, 64, 3), np.float64)})
    assert info.value.code == "INVALID_ARGUMENT" and "float32" in info.value.message
    with pytest.raises(ServingError) as info:
        grpc_client.predict({"image_bytes": np.array([b"not an image"], dtype=object)},
                            "predict_image_bytes")
    assert info.value.code == "INVALID_ARGUMENT"
    with GrpcClient(server.grpc_target, "nope") as unknown, pytest.raises(ServingError) as info:
        unknown.status()
    assert info.value.code == "NOT_FOUND"
    with GrpcClient(server.grpc_target, util.MODEL, version=9) as missing:
        with pytest.raises(ServingError, match=r"Specific\(deconvnet, 9\)"):
            missing.predict_labels(np.zeros((1, 64, 64, 3), np.float32))
    assert grpc_client.status()[0]["state"] == "AVAILABLE"
