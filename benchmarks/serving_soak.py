"""Soak test of the local TF Serving-compatible server: mixed good and bad requests.

    python -m benchmarks.serving_soak                         # 3000 requests, 16 threads
    python -m benchmarks.serving_soak --quick                 # 240 requests
    python -m benchmarks.serving_soak --model-base DIR --name deconvnet --json soak.json

Starts `python -m keras_deconvnet.serving.rest_server` (REST, and gRPC when
tensorflow-serving-api is installed) on free loopback ports in a subprocess, over
`--model-base` (or over a model it exports: `--preset` at `--image-size`), and sends
`--requests` requests from `--concurrency` threads, drawn at random (seeded) from a mix
of good requests (PNGs of several sizes to `predict_image_bytes`, alone or three per
request; float batches to `serving_default`; over REST and gRPC) and bad ones, each
with the answer it must get: malformed JSON, bad base64, bytes that are not an image,
too many rows, images whose padded label maps or animation frames exceed the pixel
limits, a header-only 8000x8000 PNG, NaN pixels, a 5000-digit JSON integer, an unknown
model, a wrong shape, gRPC tensors declaring more values than they carry, a body over
the size limit, and connections that send half their headers and stall (on threads of
their own, until the server's `--header-timeout` answers 408).

Every good answer's labels are compared with a direct call of the same SavedModel
(`tf.saved_model.load`) in this process on the same request. The server batches
concurrent requests, and a batch of another size rounds floats differently, so a label
may differ where the reference's two best classes are within `TIE` of each other (an
untrained model has many such near-ties); any other difference is a wrong answer. The
near-tie flips are counted and reported. The server's resident memory (VmRSS) is
sampled every 0.1 s; the report gives throughput, outcomes by kind, and RSS at start,
at 25/50/75/100% of the requests and at its peak. The exit status is 1 if any answer
was wrong or unexpected, or the server died.
"""

from __future__ import annotations

import argparse
import base64
import collections
import concurrent.futures
import io
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

SERVER_MAX_REQUEST_BYTES = 4 * 1024 * 1024
STALLED = {"half_sent"}  # kinds that hold a connection idle: run beside the workers
TIE = 1e-4  # probability margin under which two classes may swap between batch sizes


# -- the model ------------------------------------------------------------------------
def export_model(base: Path, preset: str, image_size: int, name: str) -> Path:
    """Exports `preset` (untrained) at `image_size` to `base/name/1/`.

    The BatchNorm statistics are set from random images (as the serving tests do), so
    the class scores are better separated. The only place this script builds a model.
    """
    import keras

    from keras_deconvnet.export.saved_model import export_saved_model
    from keras_deconvnet.models import DeconvNetImageSegmenter
    from keras_deconvnet.training import recompute_batchnorm_statistics

    keras.utils.set_random_seed(0)
    model = DeconvNetImageSegmenter.from_preset(
        preset, image_shape=(image_size, image_size, 3)
    )
    rng = np.random.default_rng(0)
    images = np.stack([smooth_image(rng, image_size, image_size) for _ in range(8)])
    recompute_batchnorm_statistics(model, [images.astype("float32")], num_batches=None)
    path = export_saved_model(model, base, name=name, version=1)
    keras.backend.clear_session()
    return path


def ties(probabilities: np.ndarray) -> np.ndarray:
    """Pixels whose two best class probabilities are within `TIE` of each other."""
    top = np.sort(probabilities, axis=-1)
    return top[..., -1] - top[..., -2] < TIE


def latest_version(base: Path, name: str) -> Path:
    versions = [p for p in (base / name).iterdir() if p.name.isdigit() and p.is_dir()]
    if not versions:
        raise SystemExit(f"no version directory under {base / name}")
    return max(versions, key=lambda p: int(p.name))


# -- payloads -------------------------------------------------------------------------
def smooth_image(rng, height: int, width: int) -> np.ndarray:
    from PIL import Image

    small = rng.uniform(0, 255, (4, 4, 3)).astype(np.uint8)
    return np.asarray(Image.fromarray(small).resize((width, height), Image.BILINEAR))


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
        self.png_ties = [self._ties_bytes([p]) for p in self.pngs]
        self.trios = [[self.pngs[i], self.pngs[(i + 2) % 6], self.pngs[(i + 3) % 6]]
                      for i in range(6)]
        self.trio_refs = [self._reference_bytes(t) for t in self.trios]
        self.trio_ties = [self._ties_bytes(t) for t in self.trios]
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
        self.oversized = b'{"inputs": [' + b"0.0," * (SERVER_MAX_REQUEST_BYTES // 4) + b"0]}"
        self.nan_body = self._nan_body(self.floats[0])
        self.kinds = self._kinds()
        if grpc_target:
            from keras_deconvnet.serving.client import GrpcClient

            self._grpc_local = threading.local()
            self._GrpcClient = GrpcClient

    # references: direct calls of the same SavedModel
    def _reference_bytes(self, encoded):
        import tensorflow as tf

        out = self._bytes_fn(image_bytes=tf.constant(encoded, dtype=tf.string))
        return out["labels"].numpy(), out["image_sizes"].numpy()

    def _ties_bytes(self, encoded):
        """Where the labels of `encoded` (as `predict_image_bytes` lays them out) are
        near-ties: the graph's decode, resize, predict and nearest resize-back."""
        import tensorflow as tf

        masks = []
        for data in encoded:
            image = tf.io.decode_image(data, channels=3, expand_animations=False)
            size = tf.shape(image)[:2]
            pixels = tf.image.resize(tf.cast(image, tf.float32), (self.image_size,) * 2)
            probs = self._float_fn(images=pixels[None])["probabilities"].numpy()[0]
            tie = tf.constant(ties(probs)[..., None].astype(np.int32))
            masks.append(tf.image.resize(tie, size, method="nearest")[..., 0].numpy() > 0)
        height = max(m.shape[0] for m in masks)
        width = max(m.shape[1] for m in masks)
        return np.stack([np.pad(m, ((0, height - m.shape[0]), (0, width - m.shape[1])))
                         for m in masks])

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
            client = self._GrpcClient(self.grpc_target, self.name, timeout=120, retries=0)
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
        }
        if self.grpc_target:
            kinds.update({
                "grpc_png": (10, True, self.grpc_png),
                "grpc_float": (8, True, self.grpc_float),
                "grpc_no_values": (3, False, self.grpc_no_values),
                "grpc_nan": (2, False, self.grpc_nan),
            })
        return kinds

    @staticmethod
    def expect(status, answer, fragment=""):
        got, body = answer
        ok = got == status and fragment in body.get("error", "")
        return ok, f"{got} {str(body)[:160]}"

    def rest_png(self, rng):
        i = int(rng.integers(len(self.pngs)))
        status, body = self.post(self._bytes_body([self.pngs[i]]))
        if status != 200:
            return False, f"{status} {str(body)[:160]}"
        ref, _ = self.png_refs[i]
        return self.agree(body["outputs"]["labels"], ref, self.png_ties[i])

    def rest_png_x3(self, rng):
        i = int(rng.integers(len(self.trios)))
        status, body = self.post(self._bytes_body(self.trios[i]))
        if status != 200:
            return False, f"{status} {str(body)[:160]}"
        ref_labels, ref_sizes = self.trio_refs[i]
        if not np.array_equal(body["outputs"]["image_sizes"], ref_sizes):
            return False, "labels differ: image_sizes"
        return self.agree(body["outputs"]["labels"], ref_labels, self.trio_ties[i])

    def rest_float(self, rng):
        i = int(rng.integers(len(self.floats)))
        status, body = self.post(self._float_body(self.floats[i]))
        if status != 200:
            return False, f"{status} {str(body)[:160]}"
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

    def half_sent(self, rng):
        host, port = self.url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=60) as sock:
            sock.sendall(b"POST /v1/models/x:predict HTTP/1.1\r\nHost: x\r\nContent-Le")
            answer = b""
            try:
                while chunk := sock.recv(65536):
                    answer += chunk
            except OSError:
                pass
        return answer.startswith(b"HTTP/1.1 408"), answer[:80].decode("latin-1")


# -- the server and its memory ----------------------------------------------------------
def start_server(base: Path, name: str, grpc: bool, log: Path, extra: list[str]):
    command = [sys.executable, "-m", "keras_deconvnet.serving.rest_server",
               "--model-base", str(base), "--name", name, "--port", "0",
               "--max-request-bytes", str(SERVER_MAX_REQUEST_BYTES), *extra]
    if grpc:
        command += ["--grpc-port", "0"]
    stdout = log.with_suffix(".out")
    with open(stdout, "w") as out, open(log, "w") as err:
        process = subprocess.Popen(command, stdout=out, stderr=err)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited: {log.read_text()[-2000:]}")
        for line in stdout.read_text().splitlines():
            if line.startswith("{"):
                return process, json.loads(line)
        time.sleep(0.2)
    process.kill()
    raise RuntimeError("server did not start in 300 s")


def rss_mb(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


class MemorySampler(threading.Thread):
    """Samples the server's RSS every `interval` s with the number of finished requests."""

    def __init__(self, pid: int, progress, interval: float = 0.1):
        super().__init__(daemon=True)
        self.pid, self.progress, self.interval = pid, progress, interval
        self.samples: list[tuple[int, float]] = []
        self._halt = threading.Event()

    def run(self):
        while not self._halt.is_set():
            value = rss_mb(self.pid)
            if value is not None:
                self.samples.append((self.progress(), value))
            self._halt.wait(self.interval)

    def stop(self):
        self._halt.set()
        self.join()

    def at_fraction(self, fraction: float, total: int) -> float:
        """RSS at the first sample taken once `fraction` of the requests had finished."""
        target = fraction * total
        for done, value in self.samples:
            if done >= target:
                return value
        return self.samples[-1][1]

    def peak(self) -> float:
        return max(value for _, value in self.samples)


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


# -- main -----------------------------------------------------------------------------------
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-base", type=Path, default=None,
                        help="TF Serving base directory to serve (default: export --preset)")
    parser.add_argument("--name", default="deconvnet", help="the model to soak")
    parser.add_argument("--preset", default="deconvnet_edge",
                        help="preset exported when no --model-base is given")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--requests", type=int, default=None,
                        help="requests in all (default 3000; 240 with --quick)")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-grpc", action="store_true", help="REST requests only")
    parser.add_argument("--server-arg", action="append", default=[], metavar="ARG",
                        help="extra server option (repeatable), e.g. --server-arg=--no-batching")
    parser.add_argument("--quick", action="store_true", help="few requests, for a test")
    parser.add_argument("--json", type=Path, default=None, help="write the report here")
    args = parser.parse_args(argv)
    total = args.requests or (240 if args.quick else 3000)

    grpc = not args.no_grpc
    if grpc:
        try:
            import tensorflow_serving.apis.prediction_service_pb2_grpc  # noqa: F401
        except ImportError:
            grpc = False
    workdir = Path(tempfile.mkdtemp(prefix="serving-soak-"))
    process = None
    try:
        base = args.model_base
        if base is None:
            base = workdir / "models"
            export_model(base, args.preset, args.image_size, args.name)
        version_dir = latest_version(base, args.name)
        process, ports = start_server(base, args.name, grpc, workdir / "server.log",
                                      args.server_arg)
        url = f"http://127.0.0.1:{ports['rest_port']}"
        grpc_target = f"127.0.0.1:{ports['grpc_port']}" if ports.get("grpc_port") else None
        import tensorflow as tf

        soak = Soak(url, grpc_target, args.name, version_dir, rows_limit=8)

        rng = np.random.default_rng(args.seed)
        names = list(soak.kinds)
        weights = np.array([soak.kinds[k][0] for k in names], float)
        schedule = list(rng.choice(names, size=total, p=weights / weights.sum()))
        seeds = rng.integers(0, 2**31, size=total)
        for kind in ("rest_png", "rest_float"):  # warm-up: trace and allocate
            soak.kinds[kind][2](np.random.default_rng(0))

        done = [0]
        lock = threading.Lock()
        outcomes = collections.defaultdict(collections.Counter)
        latencies = collections.defaultdict(list)
        examples = {}
        sampler = MemorySampler(process.pid, lambda: done[0])
        baseline = rss_mb(process.pid)
        sampler.start()

        def run(i):
            kind = schedule[i]
            _, good, call = soak.kinds[kind]
            start = time.perf_counter()
            try:
                ok, detail = call(np.random.default_rng(int(seeds[i])))
            except Exception as e:  # a failure of the request itself: an outcome
                ok, detail = False, f"{type(e).__name__}: {str(e)[:160]}"
            elapsed = time.perf_counter() - start
            if ok:
                outcome = "ok" if good else "refused_as_expected"
            elif good:
                outcome = "wrong_answer" if detail.startswith("labels differ") else "failed"
            else:
                outcome = "unexpected_answer"
            with lock:
                outcomes[kind][outcome] += 1
                latencies[kind].append(elapsed)
                if outcome not in ("ok", "refused_as_expected"):
                    examples.setdefault(f"{kind}/{outcome}", detail)
                done[0] += 1

        # Stalled connections wait for the server's header deadline (10 s by default)
        # on threads of their own, so they do not take the 16 workers' turns.
        stalled = concurrent.futures.ThreadPoolExecutor(64, thread_name_prefix="stalled")

        def one(i):
            if schedule[i] in STALLED:
                stalled.submit(run, i)
            else:
                run(i)

        start = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(args.concurrency) as pool:
            list(pool.map(one, range(total)))
        stalled.shutdown(wait=True)
        elapsed = time.perf_counter() - start
        sampler.stop()
        alive = process.poll() is None

        counts = collections.Counter()
        for kind_counts in outcomes.values():
            counts.update(kind_counts)
        report = {
            "cpu": cpu_name(), "cores": os.cpu_count(), "tensorflow": tf.__version__,
            "model": str(version_dir), "image_size": soak.image_size,
            "preset": None if args.model_base else args.preset,
            "requests": total, "concurrency": args.concurrency, "grpc": bool(grpc_target),
            "seconds": round(elapsed, 1), "requests_per_s": round(total / elapsed, 2),
            "good_requests": sum(c["ok"] + c["wrong_answer"] + c["failed"]
                                 for c in outcomes.values()),
            "outcomes": dict(counts),
            "by_kind": {
                k: {**outcomes[k], "p50_ms": round(1000 * float(np.median(latencies[k])), 1)}
                for k in sorted(outcomes)
            },
            "near_tie_label_flips": soak.tie_flips,
            "examples": examples,
            "rss_mb": {
                "start": round(baseline or 0, 1),
                **{f"{int(q * 100)}%": round(sampler.at_fraction(q, total), 1)
                   for q in (0.25, 0.5, 0.75, 1.0)},
                "peak": round(sampler.peak(), 1),
            },
            "server_alive": alive,
        }
        bad = counts["wrong_answer"] + counts["failed"] + counts["unexpected_answer"]
        _print(report)
        if args.json:
            args.json.write_text(json.dumps(report, indent=2))
        log = (workdir / "server.log").read_text()
        if "Traceback" in log:
            print("server log has a traceback:\n" + log[-3000:], file=sys.stderr)
            bad += 1
        return 0 if bad == 0 and alive else 1
    finally:
        if process is not None:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        shutil.rmtree(workdir, ignore_errors=True)


def _print(report: dict) -> None:
    print(f"# {report['cpu']}, {report['cores']} cores, TF {report['tensorflow']}; "
          f"{report['image_size']}x{report['image_size']} model; {report['requests']} "
          f"requests from {report['concurrency']} threads "
          f"({'REST + gRPC' if report['grpc'] else 'REST'}); client and server on this "
          "machine")
    print(f"{report['seconds']} s, {report['requests_per_s']} requests/s; outcomes: "
          + ", ".join(f"{k} {v}" for k, v in sorted(report["outcomes"].items())))
    print(f"{'kind':<16} {'sent':>5} {'as expected':>11} {'other':>6} {'p50 ms':>8}")
    for kind, counts in report["by_kind"].items():
        expected = counts.get("ok", 0) + counts.get("refused_as_expected", 0)
        sent = sum(v for k, v in counts.items() if k != "p50_ms")
        print(f"{kind:<16} {sent:>5} {expected:>11} {sent - expected:>6} "
              f"{counts['p50_ms']:>8.1f}")
    print(f"wrong answers: {report['outcomes'].get('wrong_answer', 0)} (near-tie label "
          f"flips allowed: {report['near_tie_label_flips']} pixels)")
    rss = report["rss_mb"]
    print("server RSS MB: " + ", ".join(f"{k} {v}" for k, v in rss.items()))
    for key, detail in report["examples"].items():
        print(f"  {key}: {detail}")


if __name__ == "__main__":
    sys.exit(main())
