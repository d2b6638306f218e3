"""The `serving` section: throughput and latency of the local TF Serving-compatible server.

Exports `DeconvNetImageSegmenter.from_preset(preset)` (untrained: speed does not depend
on the weights) at the suite's `image_size` to a temporary TF Serving layout, starts
`python -m keras_deconvnet.serving.rest_server` on free loopback ports, and sends
`requests` requests at each `concurrency` from as many client threads: one PNG per
request to `predict_image_bytes` (label map back), or with `signature="serving_default"`
a float batch of one image (REST answers the probabilities too, as TF Serving would).
Client and server share the machine's cores.
"""

from __future__ import annotations

import concurrent.futures
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from keras_deconvnet.benchmarks.config import SuiteConfig
from keras_deconvnet.benchmarks.server_process import (
    export_untrained,
    grpc_available,
    running_server,
)


def run_level(call: Callable[[], object], concurrency: int, requests: int) -> dict:
    """Runs `requests` calls from `concurrency` threads; latency percentiles and rate."""
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
    milliseconds = np.asarray(latencies) * 1000.0
    return {
        "concurrency": concurrency,
        "requests": requests,
        "errors": len(errors),
        "requests_per_s": requests / elapsed,
        "p50_ms": float(np.percentile(milliseconds, 50)),
        "p95_ms": float(np.percentile(milliseconds, 95)),
        "first_error": errors[0] if errors else None,
    }


def _calls(ports: dict, apis: list, signature: str, size: int) -> dict:
    from keras_deconvnet.serving.client import GrpcClient, RestClient, encode_image

    image = np.random.default_rng(0).uniform(0, 255, (size, size, 3)).astype(np.float32)
    encoded = encode_image(np.rint(image))
    clients = {"rest": RestClient(f"http://127.0.0.1:{ports['rest_port']}", timeout=300)}
    if "grpc" in apis:
        clients["grpc"] = GrpcClient(f"127.0.0.1:{ports['grpc_port']}", timeout=300)
    clients["rest"].wait_until_available(timeout=120)
    if signature == "predict_image_bytes":
        return {api: (lambda c=clients[api]: c.predict_images([encoded])) for api in apis}
    return {api: (lambda c=clients[api]: c.predict_labels(image[None])) for api in apis}


def bench_serving(config: SuiteConfig, log: Callable[[str], None] = print) -> dict:
    """Requests/s and p50/p95 latency per API and concurrency level."""
    serving = config.serving
    size = config.image_size
    apis = ["rest", "grpc"] if serving.grpc and grpc_available() else ["rest"]
    extra = [] if serving.batching else ["--no-batching"]
    rows = []
    with tempfile.TemporaryDirectory(prefix="serving-bench-") as workdir:
        workdir = Path(workdir)
        export_untrained(workdir / "models", serving.preset, size, serving.model_name)
        with running_server(workdir / "models", workdir / "server.log", serving.model_name,
                            "grpc" in apis, extra) as (_, ports):
            for api, call in _calls(ports, apis, serving.signature, size).items():
                for _ in range(2):
                    call()  # warm-up: first calls trace and allocate
                for concurrency in serving.concurrency:
                    row = {"api": api, **run_level(call, concurrency, serving.requests)}
                    log(f"  {api} x{concurrency}: {row['requests_per_s']:.2f} req/s, "
                        f"p50 {row['p50_ms']:.0f} ms, {row['errors']} errors")
                    rows.append(row)
    return {"preset": serving.preset, "image_size": size, "signature": serving.signature,
            "batching": serving.batching, "rows": rows}
