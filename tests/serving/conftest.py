"""Fixtures of the serving tests: two exported versions and a server subprocess.

The model is a tiny DeconvNet whose BatchNorm statistics are set from data, so its
class scores are well separated (an untrained net's near-ties would let float
rounding differences between batch sizes flip labels). `tiny_model` is the only place
the serving tests build one.
"""

import base64
import io
import json
import os
import subprocess
import sys
import time
import types
import urllib.error
import urllib.request
from pathlib import Path

import keras
import numpy as np
import pytest
from PIL import Image

from keras_deconvnet.benchmarks.server_process import stop_process
from keras_deconvnet.export.saved_model import export_saved_model

IMAGE_SIZE = 64
NUM_CLASSES = 3
MAX_REQUEST_BYTES = 2_000_000
MODEL = "deconvnet"


def tiny_model(seed: int) -> keras.Model:
    """The one place the serving tests build a model: the shared tiny DeconvNet
    segmenter (tests/model_fixtures.py), its BatchNorm statistics set from data."""
    from model_fixtures import tiny_deconvnet

    return tiny_deconvnet(num_classes=NUM_CLASSES, seed=seed, calibrated=True)


def random_images(count: int, seed: int = 0, size=(IMAGE_SIZE, IMAGE_SIZE)) -> np.ndarray:
    """Smooth random RGB images in [0, 255] (blobs, so label maps have regions)."""
    rng = np.random.default_rng(seed)
    small = rng.uniform(0, 255, (count, 4, 4, 3))
    return np.stack([
        np.asarray(Image.fromarray(s.astype(np.uint8)).resize(size[::-1], Image.BILINEAR))
        for s in small
    ]).astype(np.float32)


def png_bytes(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image.astype(np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


@pytest.fixture(scope="session")
def export_base(tmp_path_factory) -> Path:
    """`BASE/deconvnet/{1,2}/`: two versions with different weights, + models.config."""
    base = tmp_path_factory.mktemp("serving") / "models"
    export_saved_model(tiny_model(1), base, name=MODEL, version=1)
    export_saved_model(tiny_model(2), base, name=MODEL, version=2)
    keras.backend.clear_session()
    return base


@pytest.fixture(scope="session")
def loaded(export_base):
    """The exported versions loaded in-process with plain tf.saved_model.load."""
    import tensorflow as tf

    return {v: tf.saved_model.load(str(export_base / MODEL / str(v))) for v in (1, 2)}


def grpc_available() -> bool:
    try:
        import grpc  # noqa: F401
        import tensorflow_serving.apis.prediction_service_pb2_grpc  # noqa: F401
    except ImportError:
        return False
    return True


def http(method, url, body=None, headers=None, timeout=60):
    """`(status, decoded JSON)` of one plain urllib request."""
    data = body if isinstance(body, bytes | type(None)) else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


@pytest.fixture(scope="session")
def server(export_base, tmp_path_factory):
    """The local server in a subprocess on free loopback ports (REST, and gRPC if
    tensorflow-serving-api is installed); terminated at the end of the session."""
    logs = tmp_path_factory.mktemp("server-logs")
    stdout, stderr = logs / "stdout.txt", logs / "stderr.txt"
    command = [
        sys.executable, "-m", "keras_deconvnet.serving.rest_server",
        "--model-base", str(export_base), "--port", "0",
        "--max-request-bytes", str(MAX_REQUEST_BYTES),
    ]
    if grpc_available():
        command += ["--grpc-port", "0"]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    with open(stdout, "w") as out, open(stderr, "w") as err:
        process = subprocess.Popen(command, stdout=out, stderr=err, env=env)
    try:
        ports = None
        deadline = time.monotonic() + 120
        while ports is None:
            if process.poll() is not None:
                raise RuntimeError(f"server exited: {stderr.read_text()[-3000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"server did not start: {stderr.read_text()[-3000:]}")
            for line in stdout.read_text().splitlines():
                if line.startswith("{"):
                    ports = json.loads(line)
            time.sleep(0.2)
        url = f"http://127.0.0.1:{ports['rest_port']}"
        while True:  # readiness: poll the status endpoint
            try:
                status, body = http("GET", f"{url}/v1/models/{MODEL}", timeout=5)
                if status == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError(f"server not ready: {stderr.read_text()[-3000:]}")
            time.sleep(0.2)
        grpc_port = ports.get("grpc_port")
        yield types.SimpleNamespace(
            url=url, process=process, stderr=stderr,
            grpc_target=f"127.0.0.1:{grpc_port}" if grpc_port else None,
        )
    finally:
        stop_process(process)
    # Every bad request was answered, none reached the "internal error" path.
    log = stderr.read_text()
    assert "Traceback" not in log and "internal error" not in log, log[-3000:]


@pytest.fixture(scope="session")
def util():
    """The helpers above for the test modules (conftest is not importable by name)."""
    return types.SimpleNamespace(
        MODEL=MODEL, IMAGE_SIZE=IMAGE_SIZE, NUM_CLASSES=NUM_CLASSES,
        MAX_REQUEST_BYTES=MAX_REQUEST_BYTES, tiny_model=tiny_model,
        random_images=random_images, png_bytes=png_bytes, b64=b64, http=http,
        grpc_available=grpc_available, stop_process=stop_process,
    )
