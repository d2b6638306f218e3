"""Throughput and latency of the local TF Serving-compatible server (prints a table).

    python -m benchmarks.serving                      # edge preset, 224x224, REST + gRPC
    python -m benchmarks.serving --quick --json serving.json

Exports `DeconvNetImageSegmenter.from_preset(--preset)` (untrained: speed does not
depend on the weights) at `--image-size` to a temporary TF Serving layout, starts
`python -m keras_deconvnet.serving.rest_server` on free loopback ports in a
subprocess, and sends `--requests` requests at each `--concurrency` from as many
client threads: one 224x224 PNG per request to `predict_image_bytes` (label map
back), or with `--signature serving_default` a float batch of one image (REST
answers the probabilities too, as TF Serving would). Client and server share the
machine's cores. Reports requests/s and p50/p95 latency per API and concurrency.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402


def _start_server(base: Path, grpc: bool, batching: bool, log: Path):
    command = [sys.executable, "-m", "keras_deconvnet.serving.rest_server",
               "--model-base", str(base), "--port", "0"]
    if grpc:
        command += ["--grpc-port", "0"]
    if not batching:
        command.append("--no-batching")
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


def _percentile(values, q):
    return float(np.percentile(np.asarray(values) * 1000.0, q))


def run_level(call, concurrency: int, requests: int) -> dict:
    """Runs `requests` calls from `concurrency` threads; latency stats and rate."""
    latencies, errors = [], []

    def one(_):
        start = time.perf_counter()
        try:
            call()
        except Exception as e:  # counted, not raised: a benchmark reports errors
            errors.append(repr(e))
        latencies.append(time.perf_counter() - start)

    start = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(one, range(requests)))
    elapsed = time.perf_counter() - start
    return {
        "concurrency": concurrency,
        "requests": requests,
        "errors": len(errors),
        "requests_per_s": requests / elapsed,
        "p50_ms": _percentile(latencies, 50),
        "p95_ms": _percentile(latencies, 95),
        "first_error": errors[0] if errors else None,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="deconvnet_edge")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--concurrency", nargs="+", type=int, default=[1, 4, 16])
    parser.add_argument("--requests", type=int, default=None,
                        help="requests per concurrency level (default 64; 16 with --quick)")
    parser.add_argument("--api", nargs="+", choices=("rest", "grpc"), default=None,
                        help="APIs to measure (default: rest, and grpc if installed)")
    parser.add_argument("--signature", choices=("predict_image_bytes", "serving_default"),
                        default="predict_image_bytes")
    parser.add_argument("--no-batching", action="store_true",
                        help="start the server with --no-batching")
    parser.add_argument("--quick", action="store_true", help="fewer requests")
    parser.add_argument("--json", default=None, help="write the rows as JSON here")
    args = parser.parse_args(argv)
    requests = args.requests or (16 if args.quick else 64)

    import tensorflow as tf

    from keras_deconvnet.export.saved_model import export_saved_model
    from keras_deconvnet.models import DeconvNetImageSegmenter
    from keras_deconvnet.serving.client import GrpcClient, RestClient, encode_image

    apis = args.api
    if apis is None:
        try:
            import tensorflow_serving.apis.prediction_service_pb2_grpc  # noqa: F401

            apis = ["rest", "grpc"]
        except ImportError:
            apis = ["rest"]

    size = args.image_size
    workdir = Path(tempfile.mkdtemp(prefix="serving-bench-"))
    process = None
    try:
        model = DeconvNetImageSegmenter.from_preset(args.preset, image_shape=(size, size, 3))
        export_saved_model(model, workdir / "models", version=1)
        del model
        process, ports = _start_server(
            workdir / "models", "grpc" in apis, not args.no_batching, workdir / "server.log"
        )
        rng = np.random.default_rng(0)
        image = rng.uniform(0, 255, (size, size, 3)).astype(np.float32)
        encoded = encode_image(np.rint(image))
        clients = {"rest": RestClient(f"http://127.0.0.1:{ports['rest_port']}", timeout=300)}
        if "grpc" in apis:
            clients["grpc"] = GrpcClient(f"127.0.0.1:{ports['grpc_port']}", timeout=300)
        clients["rest"].wait_until_available(timeout=120)

        print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
              f"TF {tf.__version__}; {args.preset} {size}x{size}, {args.signature}, "
              f"batching {'off' if args.no_batching else 'on'}; client and server on "
              "this machine")
        print(f"{'api':<5} {'conc':>4} {'reqs':>5} {'req/s':>7} {'p50 ms':>8} {'p95 ms':>8} "
              f"{'errors':>6}")
        rows = []
        for api in apis:
            client = clients[api]
            if args.signature == "predict_image_bytes":
                def call(client=client):
                    return client.predict_images([encoded])
            else:
                def call(client=client):
                    return client.predict_labels(image[None])
            for _ in range(2):
                call()  # warm-up: first calls trace and allocate
            for concurrency in args.concurrency:
                row = {"api": api, "preset": args.preset, "image_size": size,
                       "signature": args.signature, "batching": not args.no_batching,
                       **run_level(call, concurrency, requests)}
                rows.append(row)
                print(f"{api:<5} {concurrency:>4} {requests:>5} {row['requests_per_s']:>7.2f} "
                      f"{row['p50_ms']:>8.1f} {row['p95_ms']:>8.1f} {row['errors']:>6}",
                      flush=True)
                if row["first_error"]:
                    print(f"      first error: {row['first_error']}")
        if args.json:
            Path(args.json).write_text(json.dumps(rows, indent=2))
    finally:
        if process is not None:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
