"""The soak's requests: good ones with their reference answers, bad ones with the refusal
each must get.

Good requests: PNGs of several sizes to `predict_image_bytes`, alone or three per
request; float batches to `serving_default`; over REST and gRPC. Bad requests:
malformed JSON, bad base64, bytes that are not an image, too many rows, images whose
padded label maps or animation frames exceed the pixel limits, a header-only 8000x8000
PNG, NaN pixels, a 5000-digit JSON integer, an unknown model, a wrong shape, gRPC
tensors declaring more values than they carry, a body over the size limit,
connections that send half their headers (or half a request line) and stall until the
server's `--header-timeout` answers 408, and the hostile cases of the second
reliability round: a 48 KB GIF whose 1x1 screen hides an 8000x8000 second frame (REST
and gRPC), an APNG whose second frame claims 8000x8000 (answered at its 1x1 canvas),
900-deep JSON nesting, versions that are not ASCII digits ("²", 5000 digits) and two
Content-Length headers. `slot_pinning` (run alone, after the mix) holds every
connection slot with clients that never read their answers and times a status
request: it must be answered within `PINNED_STATUS_SECONDS`.

Every good answer's labels are compared with a direct call of the same SavedModel
(`tf.saved_model.load`) on the same request. The server batches concurrent requests,
and a batch of another size rounds floats differently, so a label may differ where the
reference's two best classes are within `TIE` of each other (an untrained model has
many such near-ties); any other difference is a wrong answer. `predict_image_bytes`
resizes the class scores bilinearly to each image's size before its argmax, so its
near-ties are found on the resized scores (log-probabilities: the same ranking and
margins as the logits), not on the model-size map.
"""

from __future__ import annotations

import base64
import functools
import io
import json
import socket
import threading
import urllib.error
import urllib.request

import numpy as np

from keras_deconvnet.benchmarks import hostile_images
from keras_deconvnet.benchmarks.server_process import smooth_image
from keras_deconvnet.serving.connections import DEFAULT_SEND_TIMEOUT

SERVER_MAX_REQUEST_BYTES = 4 * 1024 * 1024  # the soak's server runs with this limit
SERVER_MAX_CONNECTIONS = 32  # ... and this many connection slots (slot_pinning fills them)
PINNED_STATUS_SECONDS = 2.0  # a status request must be answered within this while pinned
# kinds that hold a connection idle: run beside the workers
STALLED = {"half_sent", "partial_request_line"}
TIE = 1e-4  # probability margin under which two classes may swap between batch sizes
LOG_TIE = 2e-3  # the same in log-probability (~1e-4 / p for p ~ 1 / num_classes)


def ties(probabilities: np.ndarray) -> np.ndarray:
    """Pixels whose two best class probabilities are within `TIE` of each other."""
    top = np.sort(probabilities, axis=-1)
    return top[..., -1] - top[..., -2] < TIE


def stack_padded(masks: list) -> np.ndarray:
    """Per-image masks stacked as `predict_image_bytes` lays out a batch's labels
    (padded to the largest height and width)."""
    height = max(m.shape[0] for m in masks)
    width = max(m.shape[1] for m in masks)
    return np.stack([np.pad(m, ((0, height - m.shape[0]), (0, width - m.shape[1])))
                     for m in masks])


def describe(status: int, body) -> str:
    """An answer in one line, for the soak's report."""
    return f"{status} {str(body)[:160]}"


def png(array_or_size, mode="RGB") -> bytes:
    from PIL import Image

    if isinstance(array_or_size, np.ndarray):
        image = Image.fromarray(array_or_size)
    else:
        image = Image.new(mode, array_or_size)
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def animated_gif(width: int, height: int, frames: int) -> bytes:
    from PIL import Image

    images = [Image.new("L", (width, height), 20 * i % 250) for i in range(frames)]
    buffer = io.BytesIO()
    images[0].save(buffer, "GIF", save_all=True, append_images=images[1:], duration=40)
    return buffer.getvalue()


def _answer_cut_off(sock: socket.socket) -> bool:
    """Whether the server closed `sock` before its whole answer was sent (reads what
    is left: a connection still served delivers the rest and stays open)."""
    sock.settimeout(10)
    data = b""
    try:
        while chunk := sock.recv(1 << 20):
            data += chunk
            head, _, body = data.partition(b"\r\n\r\n")
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:") and len(body) >= int(
                        line.split(b":")[1]):
                    return False
    except OSError:  # reset by the server, or nothing more within 10 s
        pass
    return True


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


class Soak:
    """The request kinds, their payloads and references, and the counters."""

    def __init__(self, url, grpc_target, name, version_dir, rows_limit):
        import tensorflow as tf

        self.url = url
        self.name = name
        self.grpc_target = grpc_target
        self.rows_limit = rows_limit
        loaded = tf.saved_model.load(str(version_dir))
        self._bytes_fn = loaded.signatures["predict_image_bytes"]
        self._float_fn = loaded.signatures["serving_default"]
        size = self.image_size = int(
            self._float_fn.structured_input_signature[1]["images"].shape[1]
        )
        rng = np.random.default_rng(1)
        shapes = [(size, size), (100, 150), (333, 250), (64, 480), (375, 500), (17, 23)]
        self.pngs = [png(smooth_image(rng, h, w)) for h, w in shapes]
        self.png_refs = [self._reference_bytes([p]) for p in self.pngs]
        tie_masks = [self._tie_mask(p) for p in self.pngs]
        self.png_ties = [stack_padded([m]) for m in tie_masks]
        trio_indices = [(i, (i + 2) % 6, (i + 3) % 6) for i in range(6)]
        self.trios = [[self.pngs[j] for j in trio] for trio in trio_indices]
        self.trio_refs = [self._reference_bytes(t) for t in self.trios]
        self.trio_ties = [stack_padded([tie_masks[j] for j in trio]) for trio in trio_indices]
        self.floats = [np.stack([smooth_image(rng, size, size) for _ in range(rows)])
                       .astype(np.float32) for rows in (1, 2, 1, 2)]
        outputs = [self._float_fn(images=tf.constant(f)) for f in self.floats]
        self.float_refs = [o["labels"].numpy() for o in outputs]
        self.float_ties = [ties(o["probabilities"].numpy()) for o in outputs]
        self.tie_flips = 0
        self._flips_lock = threading.Lock()
        self.tiny = png((1, 1))
        self.big_padded = [png((3000, 3000), "L")] + [self.tiny] * 7
        self.gif = animated_gif(2000, 2000, 12)
        self.header_bomb = png((8000, 8000), "1")
        self.gif_large_frame = hostile_images.gif_with_large_frame(8000, 8000)
        self.apng_large_frame = hostile_images.apng_with_large_frame(8000, 8000)
        self.apng_ref = self._reference_bytes([self.apng_large_frame])
        self.apng_ties = stack_padded([self._tie_mask(self.apng_large_frame)])
        self.nested = ('{"signature_name": "predict_image_bytes", "instances": '
                       + "[" * 900 + '"abc"' + "]" * 900 + "}").encode()
        self.oversized = b'{"inputs": [' + b"0.0," * (SERVER_MAX_REQUEST_BYTES // 4) + b"0]}"
        self.nan_body = self._nan_body(self.floats[0])
        self.kinds = self._kinds()
        if grpc_target:
            from keras_deconvnet.serving.client import GrpcClient, RetryPolicy

            self._grpc_local = threading.local()
            self._grpc_client = functools.partial(
                GrpcClient, grpc_target, name, timeout=120, retry=RetryPolicy(retries=0))

    # references: direct calls of the same SavedModel
    def _reference_bytes(self, encoded):
        import tensorflow as tf

        out = self._bytes_fn(image_bytes=tf.constant(encoded, dtype=tf.string))
        return out["labels"].numpy(), out["image_sizes"].numpy()

    def _tie_mask(self, data: bytes) -> np.ndarray:
        """Where the labels `predict_image_bytes` gives the encoded image `data` are
        near-ties: the graph's decode, resize, predict and bilinear resize-back."""
        import tensorflow as tf

        image = tf.io.decode_image(data, channels=3, expand_animations=False)
        size = tf.shape(image)[:2]
        pixels = tf.image.resize(tf.cast(image, tf.float32), (self.image_size,) * 2)
        probs = self._float_fn(images=pixels[None])["probabilities"][0]
        # Raw scores are logits or probabilities (the export's activation): both
        # resized as the signature resizes them, a near-tie in either counts.
        logp = tf.image.resize(tf.math.log(tf.maximum(probs, 1e-30)), size).numpy()
        top_log = np.sort(logp, axis=-1)
        resized = tf.image.resize(probs, size).numpy()
        return (top_log[..., -1] - top_log[..., -2] < LOG_TIE) | ties(resized)

    def agree(self, served, reference, tie_mask) -> tuple[bool, str]:
        """Same labels, except maybe at near-ties (counted in `tie_flips`)."""
        served = np.asarray(served)
        if served.shape != reference.shape:
            return False, f"labels differ: shape {served.shape} != {reference.shape}"
        differ = served != reference
        if (differ & ~tie_mask).any():
            return False, f"labels differ at {int((differ & ~tie_mask).sum())} pixels"
        with self._flips_lock:
            self.tie_flips += int(differ.sum())
        return True, ""

    @staticmethod
    def _float_body(images) -> bytes:
        return json.dumps({"inputs": images.tolist()}).encode()

    @staticmethod
    def _nan_body(images) -> bytes:
        values = images.copy().tolist()
        values[0][0][0][0] = float("nan")
        return json.dumps({"inputs": values}).encode()  # json writes NaN

    # transport
    def post(self, body, path=None, timeout=120):
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        url = path or f"{self.url}/v1/models/{self.name}:predict"
        request = urllib.request.Request(url, data=data, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as e:
            payload = e.read()
            try:
                return e.code, json.loads(payload)
            except ValueError:
                return e.code, {"error": payload[:200].decode("utf-8", "replace")}

    def grpc(self):
        client = getattr(self._grpc_local, "client", None)
        if client is None:
            client = self._grpc_client()
            self._grpc_local.client = client
        return client

    def _bytes_body(self, encoded):
        return {"signature_name": "predict_image_bytes",
                "inputs": [{"b64": b64(e)} for e in encoded]}

    # the kinds: name -> (weight, good?, function returning (ok, detail))
    def _kinds(self):
        kinds = {
            "rest_png": (30, True, self.rest_png),
            "rest_png_x3": (10, True, self.rest_png_x3),
            "rest_float": (2, True, self.rest_float),
            "bad_json": (4, False, lambda rng: self.expect(400, self.post(b"{not json"))),
            "bad_base64": (4, False, lambda rng: self.expect(400, self.post(
                {"signature_name": "predict_image_bytes", "inputs": [{"b64": "**"}]}))),
            "not_an_image": (4, False, lambda rng: self.expect(400, self.post(
                self._bytes_body([b"hello world"])))),
            "too_many_rows": (4, False, lambda rng: self.expect(400, self.post(
                self._bytes_body([self.tiny] * (self.rows_limit + 1 + rng.integers(50)))),
                "rows")),
            "padded_pixels": (4, False, lambda rng: self.expect(400, self.post(
                self._bytes_body(self.big_padded)), "--max-request-pixels")),
            "gif_frames": (3, False, lambda rng: self.expect(400, self.post(
                self._bytes_body([self.gif])), "frames")),
            "header_bomb": (3, False, lambda rng: self.expect(400, self.post(
                self._bytes_body([self.header_bomb])), "--max-image-pixels")),
            "nan_pixels": (3, False, lambda rng: self.expect(400, self.post(self.nan_body),
                                                             "non-finite")),
            "huge_int": (3, False, lambda rng: self.expect(400, self.post(
                b'{"inputs": [' + b"7" * 5000 + b"]}"))),
            "unknown_model": (3, False, lambda rng: self.expect(404, self.post(
                {"inputs": [1.0]}, f"{self.url}/v1/models/nope:predict"))),
            "wrong_shape": (3, False, lambda rng: self.expect(400, self.post(
                {"inputs": np.zeros((1, 8, 8, 3)).tolist()}), "shape")),
            "oversized_body": (1, False, lambda rng: self.expect(413, self.post(
                self.oversized))),
            "half_sent": (1, False, self.half_sent),
            "gif_large_frame": (3, False, lambda rng: self.expect(400, self.post(
                self._bytes_body([self.gif_large_frame])), "8000x8000 image of 2 frames")),
            "apng_large_frame": (2, True, self.apng_large),
            "nested_json": (2, False, lambda rng: self.expect(400, self.post(self.nested),
                                                              "nested")),
            "bad_version": (2, False, self.bad_version),
            "two_content_length": (1, False, self.two_content_lengths),
            "partial_request_line": (1, False, self.partial_request_line),
        }
        if self.grpc_target:
            kinds.update({
                "grpc_png": (10, True, self.grpc_png),
                "grpc_float": (8, True, self.grpc_float),
                "grpc_no_values": (3, False, self.grpc_no_values),
                "grpc_nan": (2, False, self.grpc_nan),
                "grpc_gif_large_frame": (2, False, lambda rng: self._grpc_error(
                    lambda: self.grpc().predict_images([self.gif_large_frame]),
                    "INVALID_ARGUMENT")),
            })
        return kinds

    @staticmethod
    def expect(status, answer, fragment=""):
        got, body = answer
        ok = got == status and fragment in body.get("error", "")
        return ok, describe(got, body)

    def rest_png(self, rng):
        i = int(rng.integers(len(self.pngs)))
        status, body = self.post(self._bytes_body([self.pngs[i]]))
        if status != 200:
            return False, describe(status, body)
        ref, _ = self.png_refs[i]
        return self.agree(body["outputs"]["labels"], ref, self.png_ties[i])

    def rest_png_x3(self, rng):
        i = int(rng.integers(len(self.trios)))
        status, body = self.post(self._bytes_body(self.trios[i]))
        if status != 200:
            return False, describe(status, body)
        ref_labels, ref_sizes = self.trio_refs[i]
        if not np.array_equal(body["outputs"]["image_sizes"], ref_sizes):
            return False, "labels differ: image_sizes"
        return self.agree(body["outputs"]["labels"], ref_labels, self.trio_ties[i])

    def rest_float(self, rng):
        i = int(rng.integers(len(self.floats)))
        status, body = self.post(self._float_body(self.floats[i]))
        if status != 200:
            return False, describe(status, body)
        return self.agree(body["outputs"]["labels"], self.float_refs[i], self.float_ties[i])

    def grpc_png(self, rng):
        i = int(rng.integers(len(self.pngs)))
        labels = self.grpc().predict_images([self.pngs[i]])[0]
        ref, _ = self.png_refs[i]
        return self.agree(labels[None], ref, self.png_ties[i])

    def grpc_float(self, rng):
        i = int(rng.integers(len(self.floats)))
        labels = self.grpc().predict_labels(self.floats[i])
        return self.agree(labels, self.float_refs[i], self.float_ties[i])

    def _grpc_error(self, call, code):
        from keras_deconvnet.serving.errors import ServingError

        try:
            call()
        except ServingError as e:
            return e.code == code, f"{e.code} {e.message[:160]}"
        return False, "accepted"

    def grpc_no_values(self, rng):
        from tensorflow.core.framework import tensor_pb2, types_pb2
        from tensorflow_serving.apis import predict_pb2

        client = self.grpc()
        proto = tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT)
        for size in (int(rng.integers(2, 1500)), *self.floats[0].shape[1:]):
            proto.tensor_shape.dim.add(size=size)
        request = predict_pb2.PredictRequest()
        request.model_spec.name = self.name
        request.inputs["images"].CopyFrom(proto)
        return self._grpc_error(lambda: client._call(client._prediction.Predict, request),
                                "INVALID_ARGUMENT")

    def grpc_nan(self, rng):
        images = self.floats[0].copy()
        images[0, 1, 2, 0] = np.nan
        return self._grpc_error(lambda: self.grpc().predict_labels(images), "INVALID_ARGUMENT")

    def _raw(self, request: bytes) -> bytes:
        """Sends raw bytes on a connection of its own; what came back until it closed."""
        host, port = self.url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=60) as sock:
            sock.sendall(request)
            answer = b""
            try:
                while chunk := sock.recv(65536):
                    answer += chunk
            except OSError:
                pass
        return answer

    def half_sent(self, rng):
        answer = self._raw(b"POST /v1/models/x:predict HTTP/1.1\r\nHost: x\r\nContent-Le")
        return answer.startswith(b"HTTP/1.1 408"), answer[:80].decode("latin-1")

    def partial_request_line(self, rng):
        answer = self._raw(b"GET /v1/mod")
        return answer.startswith(b"HTTP/1.1 408"), answer[:80].decode("latin-1")

    def two_content_lengths(self, rng):
        answer = self._raw(
            f"POST /v1/models/{self.name}:predict HTTP/1.1\r\nHost: x\r\n".encode()
            + b"Content-Length: 2\r\nContent-Length: 30\r\n\r\n{}")
        ok = answer.startswith(b"HTTP/1.1 400") and b"Content-Length" in answer
        return ok, answer[:80].decode("latin-1")

    def bad_version(self, rng):
        version = "%C2%B2" if rng.integers(2) else "7" * 5000
        url = f"{self.url}/v1/models/{self.name}/versions/{version}"
        try:
            with urllib.request.urlopen(url, timeout=60) as response:
                return False, describe(response.status, response.read()[:100])
        except urllib.error.HTTPError as e:
            return e.code == 404, describe(e.code, e.read()[:100])

    def apng_large(self, rng):
        status, body = self.post(self._bytes_body([self.apng_large_frame]))
        if status != 200:
            return False, describe(status, body)
        labels, sizes = self.apng_ref
        if not np.array_equal(body["outputs"]["image_sizes"], sizes):
            return False, "labels differ: image_sizes"
        return self.agree(body["outputs"]["labels"], labels, self.apng_ties)

    def slot_pinning(self, connections: int = SERVER_MAX_CONNECTIONS) -> tuple[bool, str]:
        """Fills every connection slot with clients that send a predict and never read
        its answer (a 1-row float predict: a ~10 MB answer), then times a status
        request: answered within `PINNED_STATUS_SECONDS`. The detail also says how
        many of the answers the server cut off (`--send-timeout`)."""
        import select
        import time

        host, port = self.url.removeprefix("http://").split(":")
        body = self._float_body(self.floats[0])
        request = (f"POST /v1/models/{self.name}:predict HTTP/1.1\r\nHost: x\r\n"
                   f"Content-Length: {len(body)}\r\n\r\n").encode() + body
        pinned = []
        try:
            for _ in range(connections):
                sock = socket.socket()
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                sock.settimeout(60)
                sock.connect((host, int(port)))
                sock.sendall(request)
                pinned.append(sock)
            deadline = time.monotonic() + 120
            waiting = list(pinned)
            while waiting and time.monotonic() < deadline:  # until every answer started
                readable, _, _ = select.select(waiting, [], [], 1.0)
                waiting = [s for s in waiting if s not in readable]
            if waiting:
                return False, f"{len(waiting)} of {connections} answers never started"
            start = time.monotonic()
            try:
                with urllib.request.urlopen(f"{self.url}/v1/models/{self.name}",
                                            timeout=30) as response:
                    status = response.status
            except (urllib.error.URLError, OSError) as e:
                return False, f"status request failed while pinned: {e}"
            seconds = time.monotonic() - start
            time.sleep(DEFAULT_SEND_TIMEOUT + 3)  # the server's default --send-timeout
            cut = sum(_answer_cut_off(sock) for sock in pinned)
            # (A small model's answers fit in the sockets' buffers: none is cut off.)
            return (status == 200 and seconds < PINNED_STATUS_SECONDS,
                    f"status {status} in {seconds:.2f} s with {connections} non-reading "
                    f"clients; {cut} of their answers cut off by --send-timeout")
        finally:
            for sock in pinned:
                sock.close()

