"""End-to-end tests of the local TF Serving-compatible REST server (a subprocess)."""

import concurrent.futures
import json
import socket

import numpy as np
import pytest
import tensorflow as tf

from keras_deconvnet.serving.client import RestClient
from keras_deconvnet.serving.errors import ServingError


def _reference(loaded, version, images):
    outputs = loaded[version].signatures["serving_default"](images=tf.constant(images))
    return {k: v.numpy() for k, v in outputs.items()}


def _reference_bytes(loaded, version, encoded):
    outputs = loaded[version].signatures["predict_image_bytes"](
        image_bytes=tf.constant(encoded, dtype=tf.string)
    )
    return {k: v.numpy() for k, v in outputs.items()}


def _alive(server, util):
    assert server.process.poll() is None, server.stderr.read_text()[-2000:]
    status, body = util.http("GET", f"{server.url}/v1/models/{util.MODEL}")
    assert status == 200 and body["model_version_status"][0]["state"] == "AVAILABLE"


def test_status_lists_every_version_newest_first(server, util):
    status, body = util.http("GET", f"{server.url}/v1/models/{util.MODEL}")
    assert status == 200
    assert body == {"model_version_status": [
        {"version": v, "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}
        for v in ("2", "1")
    ]}
    status, body = util.http("GET", f"{server.url}/v1/models/{util.MODEL}/versions/1")
    assert status == 200
    assert [s["version"] for s in body["model_version_status"]] == ["1"]


def test_metadata_has_signature_defs(server, util):
    status, body = util.http("GET", f"{server.url}/v1/models/{util.MODEL}/metadata")
    assert status == 200
    assert body["model_spec"] == {"name": util.MODEL, "signature_name": "", "version": "2"}
    signatures = body["metadata"]["signature_def"]["signature_def"]
    images = signatures["serving_default"]["inputs"]["images"]
    assert images["dtype"] == "DT_FLOAT"
    assert [d["size"] for d in images["tensor_shape"]["dim"]] == ["-1", "64", "64", "3"]
    assert signatures["serving_default"]["method_name"] == "tensorflow/serving/predict"
    assert set(signatures["predict_image_bytes"]["outputs"]) == {"labels", "image_sizes"}
    client = RestClient(server.url, util.MODEL, version=1)
    assert client.metadata()["model_spec"]["version"] == "1"


def test_predict_float_batch_matches_in_process_model(server, util, loaded):
    images = util.random_images(3, seed=1)
    client = RestClient(server.url, util.MODEL)
    labels = client.predict_labels(images)
    expected = _reference(loaded, 2, images)
    assert labels.dtype == np.int32 and labels.shape == (3, 64, 64)
    np.testing.assert_array_equal(labels, expected["labels"])
    assert len(np.unique(labels)) > 1  # a meaningful comparison
    # Columnar over plain HTTP: {"inputs": ...} -> {"outputs": {...}}.
    status, body = util.http(
        "POST", f"{server.url}/v1/models/{util.MODEL}:predict", {"inputs": images.tolist()}
    )
    assert status == 200
    np.testing.assert_array_equal(body["outputs"]["labels"], expected["labels"])
    np.testing.assert_allclose(body["outputs"]["probabilities"], expected["probabilities"],
                               atol=1e-6)


def test_predict_row_format_over_plain_http(server, util, loaded):
    images = util.random_images(2, seed=2)
    status, body = util.http(
        "POST", f"{server.url}/v1/models/{util.MODEL}/versions/1:predict",
        {"signature_name": "serving_default", "instances": images.tolist()},
    )
    assert status == 200
    expected = _reference(loaded, 1, images)
    assert len(body["predictions"]) == 2
    assert set(body["predictions"][0]) == {"labels", "probabilities"}
    np.testing.assert_array_equal(
        [row["labels"] for row in body["predictions"]], expected["labels"]
    )
    # Named-input rows work too.
    status, named = util.http(
        "POST", f"{server.url}/v1/models/{util.MODEL}/versions/1:predict",
        {"instances": [{"images": image} for image in images.tolist()]},
    )
    assert status == 200 and named == body


def test_predict_base64_png_matches_in_process_model(server, util, loaded):
    images = [util.random_images(1, seed=3, size=(40, 70))[0],
              util.random_images(1, seed=4, size=(90, 30))[0]]
    encoded = [util.png_bytes(image) for image in images]
    expected = _reference_bytes(loaded, 2, encoded)
    client = RestClient(server.url, util.MODEL)
    labels = client.predict_images(encoded)
    assert [la.shape for la in labels] == [(40, 70), (90, 30)]
    np.testing.assert_array_equal(labels[0], expected["labels"][0, :40, :70])
    np.testing.assert_array_equal(labels[1], expected["labels"][1, :90, :30])
    # Arrays are PNG-encoded by the client: the same answer.
    from_arrays = client.predict_images(images)
    for a, b in zip(from_arrays, labels):
        np.testing.assert_array_equal(a, b)
    # Plain HTTP, row format with {"b64": ...}.
    status, body = util.http(
        "POST", f"{server.url}/v1/models/{util.MODEL}:predict",
        {"signature_name": "predict_image_bytes",
         "instances": [{"b64": util.b64(e)} for e in encoded]},
    )
    assert status == 200
    rows = body["predictions"]
    assert rows[0]["image_sizes"] == [40, 70] and rows[1]["image_sizes"] == [90, 30]
    np.testing.assert_array_equal([r["labels"] for r in rows], expected["labels"])


def test_versions_differ_and_default_is_newest(server, util, loaded):
    images = util.random_images(2, seed=5)
    answers = {
        version: RestClient(server.url, util.MODEL, version=version).predict({"images": images})
        for version in (None, 1, 2)
    }
    np.testing.assert_array_equal(answers[None]["labels"], answers[2]["labels"])
    assert not np.allclose(answers[1]["probabilities"], answers[2]["probabilities"])
    for version in (1, 2):
        np.testing.assert_array_equal(
            answers[version]["labels"], _reference(loaded, version, images)["labels"]
        )


def test_200_concurrent_requests_from_16_threads(server, util, loaded):
    images = util.random_images(4, seed=6)
    expected = {v: _reference(loaded, v, images)["labels"] for v in (1, 2)}
    # Encoded images of several sizes: batched together, each answer keeps its size.
    sizes = [(40, 70), (64, 64), (90, 30), (50, 50)]
    encoded = [util.png_bytes(util.random_images(1, seed=7 + k, size=size)[0])
               for k, size in enumerate(sizes)]
    expected_bytes = [_reference_bytes(loaded, 2, [e])["labels"][0] for e in encoded]
    clients = {v: RestClient(server.url, util.MODEL, version=v, timeout=60) for v in (1, 2)}

    def one(i):
        version, k = 1 + i % 2, i % 4
        if i % 3 == 2:
            label = clients[2].predict_images([encoded[k]])[0]
            return np.array_equal(label, expected_bytes[k])
        label = clients[version].predict_labels(images[k:k + 1])[0]
        return np.array_equal(label, expected[version][k])

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        results = list(pool.map(one, range(200)))
    assert all(results), f"{results.count(False)} wrong answers"
    _alive(server, util)


@pytest.mark.parametrize(
    "path, body, status, message",
    [
        (":predict", b"{not json", 400, "JSON Parse error"),
        (":predict", b"[1, 2]", 400, "must be a JSON object"),
        (":predict", b"[" * 100_000 + b"]" * 100_000, 400, "nested too deeply"),
        (":predict", {"instance": []}, 400, "Missing 'inputs' or 'instances' key"),
        (":predict", {"instances": [], "inputs": []}, 400, "exactly one"),
        (":predict", {"inputs": np.zeros((1, 32, 32, 3)).tolist()}, 400, "must have shape"),
        (":predict", {"inputs": np.zeros((64, 64, 3)).tolist()}, 400, "must have shape"),
        (":predict", {"instances": [[["a"] * 3] * 64] * 64}, 400, "to be float32"),
        (":predict", {"instances": [[[1, 2]]]}, 400, "must have shape"),
        (":predict", {"inputs": [[1, 2], [3]]}, 400, "rectangular"),
        (":predict", {"inputs": {"pixels": [1.0]}}, 400, "alias not found"),
        (":predict", {"signature_name": "nope", "inputs": [1]}, 400, "nope"),
        (":predict", {"signature_name": "predict_image_bytes",
                      "instances": [{"b64": "***not base64***"}]}, 400, "base64"),
        (":predict", {"signature_name": "predict_image_bytes",
                      "instances": [{"b64": "aGVsbG8gd29ybGQ="}]}, 400, "image"),
        (":predict", {"signature_name": "predict_image_bytes", "instances": [3.5]},
         400, "string"),
        (":classify", {"instances": [1]}, 501, "not supported"),
    ],
)
def test_bad_requests_get_tf_serving_errors(server, util, path, body, status, message):
    got, answer = util.http("POST", f"{server.url}/v1/models/{util.MODEL}{path}", body)
    assert got == status, answer
    assert set(answer) == {"error"} and message in answer["error"], answer
    _alive(server, util)


@pytest.mark.parametrize(
    "method, path, status, message",
    [
        ("GET", "/v1/models/nope", 404, "Servable not found for request: Latest(nope)"),
        ("GET", "/v1/models/deconvnet/versions/7", 404, "Specific(deconvnet, 7)"),
        ("GET", "/v1/models/deconvnet/versions/x", 404, "Malformed request"),
        ("GET", "/v1/models/deconvnet/versions/9/metadata", 404, "Specific(deconvnet, 9)"),
        ("POST", "/v1/models/nope:predict", 404, "Latest(nope)"),
        ("POST", "/v1/models/deconvnet/versions/3:predict", 404, "Specific(deconvnet, 3)"),
        ("GET", "/v2/whatever", 404, "Malformed request"),
        ("GET", "/v1/models/deconvnet:predict", 404, "use POST"),
        ("PUT", "/v1/models/deconvnet", 501, "Unsupported method"),
    ],
)
def test_unknown_models_versions_and_paths(server, util, method, path, status, message):
    body = {"inputs": [1.0]} if method != "GET" else None
    got, answer = util.http(method, server.url + path, body)
    assert got == status and message in answer["error"], answer
    _alive(server, util)


def test_client_raises_serving_error(server, util):
    with pytest.raises(ServingError) as info:
        RestClient(server.url, "nope").status()
    assert info.value.http_status == 404 and info.value.code == "NOT_FOUND"
    with pytest.raises(ServingError, match="must have shape"):
        RestClient(server.url, util.MODEL).predict_labels(np.zeros((1, 8, 8, 3)))


def test_oversized_body_is_413_and_server_keeps_serving(server, util):
    body = b'{"inputs": [' + b"0.0," * (util.MAX_REQUEST_BYTES // 4) + b"0.0]}"
    status, answer = util.http("POST", f"{server.url}/v1/models/{util.MODEL}:predict", body)
    assert status == 413 and "exceeds the limit" in answer["error"]
    _alive(server, util)


def test_garbage_and_truncated_connections_do_not_hurt(server, util):
    host, port = server.url.removeprefix("http://").split(":")
    for payload in (
        b"\x00\x01garbage\r\n\r\n",
        b"POST /v1/models/deconvnet:predict HTTP/1.1\r\nContent-Length: 1000\r\n\r\n{",
        b"POST /v1/models/deconvnet:predict HTTP/1.1\r\nContent-Length: -5\r\n\r\n",
        b"POST /v1/models/deconvnet:predict HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
    ):
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            sock.sendall(payload)
            sock.shutdown(socket.SHUT_WR)
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk
        if answer.startswith(b"HTTP/"):
            status = int(answer.split(b" ", 2)[1])
            assert 400 <= status < 500, answer
        if answer:  # a garbage request line gets an HTTP/0.9 answer: the body only
            assert json.loads(answer.split(b"\r\n\r\n")[-1])["error"]
    _alive(server, util)


@pytest.mark.parametrize("leaf", ['"abc"', '{"b64": "AAAA"}', "1"])
def test_deeply_nested_json_is_refused_not_500(server, util, leaf):
    # Was: 900-deep nesting around a predict_image_bytes string answered 500
    # (RecursionError).
    signature = "predict_image_bytes" if leaf != "1" else "serving_default"
    body = (f'{{"signature_name": "{signature}", "instances": '
            + "[" * 900 + leaf + "]" * 900 + "}").encode()
    status, answer = util.http("POST", f"{server.url}/v1/models/{util.MODEL}:predict", body)
    assert status == 400, answer
    assert "nested" in answer["error"] or "dimension" in answer["error"], answer
    assert len(answer["error"]) < 400
    _alive(server, util)
