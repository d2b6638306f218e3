"""Client behaviour without the model server: retries, backoff, timeouts, encoding."""

import http.server
import io
import json
import socket
import sys
import threading

import numpy as np
import pytest
from PIL import Image

from keras_deconvnet.serving import client as client_module
from keras_deconvnet.serving.client import RestClient, RetryPolicy
from keras_deconvnet.serving.errors import (
    ServingConnectionError,
    ServingError,
    ServingTimeoutError,
)
from keras_deconvnet.serving.image_encoding import encode_image

STATUS = {"model_version_status": [
    {"version": "1", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}
]}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class _Scripted(http.server.BaseHTTPRequestHandler):
    """Answers the scripted (status, body) pairs in turn, then 200 STATUS."""

    script: list = []

    def do_GET(self):  # noqa: N802
        status, body = self.script.pop(0) if self.script else (200, STATUS)
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args):
        pass


def _serve(port, script):
    handler = type("Handler", (_Scripted,), {"script": list(script)})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def test_connection_errors_are_retried_with_exponential_backoff():
    waits = []
    retry = RetryPolicy(retries=3, backoff=0.1, max_backoff=0.3, sleep=waits.append)
    client = RestClient(f"http://127.0.0.1:{_free_port()}", retry=retry)
    with pytest.raises(ServingConnectionError, match="cannot reach"):
        client.status()
    assert waits == [0.1, 0.2, 0.3]


def test_retry_succeeds_once_the_server_is_up():
    port = _free_port()
    servers = []

    def sleep(seconds):  # the server comes up during the first backoff
        if not servers:
            servers.append(_serve(port, []))

    client = RestClient(f"http://127.0.0.1:{port}", retry=RetryPolicy(retries=2, sleep=sleep))
    try:
        assert client.status()[0]["state"] == "AVAILABLE"
    finally:
        servers[0].shutdown()
        servers[0].server_close()


def test_503_is_retried_but_400_is_not():
    port = _free_port()
    server = _serve(port, [(503, {"error": "busy"}), (400, {"error": "bad"})])
    waits = []
    try:
        retry = RetryPolicy(retries=3, sleep=waits.append)
        client = RestClient(f"http://127.0.0.1:{port}", retry=retry)
        with pytest.raises(ServingError) as info:
            client.status()
        assert info.value.http_status == 400 and info.value.message == "bad"
        assert info.value.code == "INVALID_ARGUMENT"
        assert len(waits) == 1  # one retry after the 503, none after the 400
    finally:
        server.shutdown()
        server.server_close()


def test_timeout_raises_without_retrying():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)  # accepts connections (backlog) but never answers
    waits = []
    try:
        client = RestClient(f"http://127.0.0.1:{listener.getsockname()[1]}", timeout=0.5,
                            retry=RetryPolicy(retries=3, sleep=waits.append))
        with pytest.raises(ServingTimeoutError, match="within 0.5 s"):
            client.status()
        assert waits == []
    finally:
        listener.close()


def test_encode_image_round_trips_arrays_and_reads_files(tmp_path):
    image = np.random.default_rng(0).integers(0, 256, (7, 9, 3)).astype(np.float32)
    decoded = np.asarray(Image.open(io.BytesIO(encode_image(image))))
    np.testing.assert_array_equal(decoded, image)
    path = tmp_path / "a.png"
    path.write_bytes(b"\x89PNG...")
    assert encode_image(path) == b"\x89PNG..." and encode_image(str(path)) == b"\x89PNG..."
    with pytest.raises(ValueError, match="must be"):
        encode_image(np.zeros((4, 4, 2)))
    with pytest.raises(TypeError):
        encode_image(3)


def test_bad_arguments_are_clear():
    with pytest.raises(ValueError, match="http://"):
        RestClient("localhost:8501")
    client = RestClient(f"http://127.0.0.1:{_free_port()}", retry=RetryPolicy(retries=0))
    with pytest.raises(ValueError, match=r"\(batch, height, width, 3\)"):
        client.predict_labels(np.zeros((2, 8, 8)))
    with pytest.raises(TypeError, match="sequence of images"):
        client.predict_images(b"abc")
    for bad in ({"retries": -1}, {"backoff": -0.5}, {"max_backoff": -1}):
        with pytest.raises(ValueError, match="must be >= 0"):
            RetryPolicy(**bad)


def test_grpc_client_without_tensorflow_serving_api_explains_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorflow_serving", None)
    monkeypatch.setitem(sys.modules, "tensorflow_serving.apis", None)
    with pytest.raises(ImportError, match="pip install --no-deps"):
        client_module.GrpcClient("127.0.0.1:1")
