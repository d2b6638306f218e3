"""The `soak` section: mixed good and bad requests against the local server.

`deconvnet benchmark --sections soak` starts `python -m keras_deconvnet.serving.rest_server`
(REST, and gRPC when tensorflow-serving-api is installed) on free loopback ports over
a TF Serving base directory (`--model-base`, or an untrained `--presets` model it
exports at `--image-size`), and sends `soak_requests` requests from as many client
threads as the largest `--concurrency`, drawn at random (seeded) from the mix in
`soak_requests.py`. Stalled connections wait for the server's header deadline on
threads of their own, so they do not take the workers' turns. The server's resident
memory (VmRSS) is sampled every 0.1 s. The section reports throughput, outcomes by
kind, the near-tie label flips, and RSS at start, at 25/50/75/100% of the requests and
at its peak. After the mix, `slot_pinning` fills the server's connection slots
(`--max-connections 32`) with clients that never read their answers, three times, and
times a status request each time. `passed` is false if any answer was wrong or
unexpected, a pinned status request took 2 s or more, the server died or its log has a
traceback (the CLI then exits with status 1).
"""

from __future__ import annotations

import collections
import concurrent.futures
import os
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from keras_deconvnet.benchmarks.config import SuiteConfig
from keras_deconvnet.benchmarks.machine import cpu_model
from keras_deconvnet.benchmarks.server_process import (
    MemorySampler,
    export_untrained,
    grpc_available,
    latest_version,
    rss_mb,
    running_server,
)
from keras_deconvnet.benchmarks.soak_requests import (
    SERVER_MAX_CONNECTIONS,
    SERVER_MAX_REQUEST_BYTES,
    STALLED,
    Soak,
)

GOOD_OUTCOMES = ("ok", "refused_as_expected")
PINNING_RUNS = 3


class _Tally:
    """Outcomes and latencies by request kind, filled from many threads."""

    def __init__(self):
        self.lock = threading.Lock()
        self.done = 0
        self.outcomes = collections.defaultdict(collections.Counter)
        self.latencies = collections.defaultdict(list)
        self.examples: dict = {}

    def add(self, kind: str, good: bool, ok: bool, detail: str, seconds: float) -> None:
        if ok:
            outcome = "ok" if good else "refused_as_expected"
        elif good:
            outcome = "wrong_answer" if detail.startswith("labels differ") else "failed"
        else:
            outcome = "unexpected_answer"
        with self.lock:
            self.outcomes[kind][outcome] += 1
            self.latencies[kind].append(seconds)
            if outcome not in GOOD_OUTCOMES:
                self.examples.setdefault(f"{kind}/{outcome}", detail)
            self.done += 1


def _send_all(soak: Soak, schedule: list, seeds: np.ndarray, threads: int, tally: _Tally):
    def run(i):
        kind = schedule[i]
        _, good, call = soak.kinds[kind]
        start = time.perf_counter()
        try:
            ok, detail = call(np.random.default_rng(int(seeds[i])))
        except Exception as e:  # a failure of the request itself: an outcome
            ok, detail = False, f"{type(e).__name__}: {str(e)[:160]}"
        tally.add(kind, good, ok, detail, time.perf_counter() - start)

    stalled = concurrent.futures.ThreadPoolExecutor(64, thread_name_prefix="stalled")

    def one(i):
        if schedule[i] in STALLED:
            stalled.submit(run, i)
        else:
            run(i)

    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        list(pool.map(one, range(len(schedule))))
    stalled.shutdown(wait=True)


def _soak_report(soak: Soak, tally: _Tally, sampler: MemorySampler, baseline, total: int,
                 seconds: float) -> dict:
    counts = collections.Counter()
    for kind_counts in tally.outcomes.values():
        counts.update(kind_counts)
    return {
        "seconds": round(seconds, 1), "requests_per_s": round(total / seconds, 2),
        "good_requests": sum(c["ok"] + c["wrong_answer"] + c["failed"]
                             for c in tally.outcomes.values()),
        "outcomes": dict(counts),
        "by_kind": {
            k: {**tally.outcomes[k],
                "p50_ms": round(1000 * float(np.median(tally.latencies[k])), 1)}
            for k in sorted(tally.outcomes)
        },
        "near_tie_label_flips": soak.tie_flips,
        "examples": tally.examples,
        "rss_mb": {
            "start": round(baseline or 0, 1),
            **{f"{int(q * 100)}%": round(sampler.at_fraction(q, total), 1)
               for q in (0.25, 0.5, 0.75, 1.0)},
            "peak": round(sampler.peak(), 1),
        },
    }


def bench_soak(config: SuiteConfig, log: Callable[[str], None] = print) -> dict:
    """Runs the soak; returns its report (`passed` says whether every answer was right)."""
    import tensorflow as tf

    serving = config.serving
    total = serving.soak_requests
    grpc = serving.grpc and grpc_available()
    with tempfile.TemporaryDirectory(prefix="serving-soak-") as workdir:
        workdir = Path(workdir)
        base = Path(serving.model_base) if serving.model_base else workdir / "models"
        if not serving.model_base:
            export_untrained(base, serving.preset, config.image_size, serving.model_name)
        version_dir = latest_version(base, serving.model_name)
        extra = ["--max-request-bytes", str(SERVER_MAX_REQUEST_BYTES),
                 "--max-connections", str(SERVER_MAX_CONNECTIONS), *serving.server_args]
        with running_server(base, workdir / "server.log", serving.model_name, grpc,
                            extra) as (process, ports):
            grpc_target = f"127.0.0.1:{ports['grpc_port']}" if ports.get("grpc_port") else None
            soak = Soak(f"http://127.0.0.1:{ports['rest_port']}", grpc_target,
                        serving.model_name, version_dir, rows_limit=8)
            rng = np.random.default_rng(serving.seed)
            names = list(soak.kinds)
            weights = np.array([soak.kinds[k][0] for k in names], float)
            schedule = list(rng.choice(names, size=total, p=weights / weights.sum()))
            seeds = rng.integers(0, 2**31, size=total)
            for kind in ("rest_png", "rest_float"):  # warm-up: trace and allocate
                soak.kinds[kind][2](np.random.default_rng(0))
            log(f"  {total} requests from {max(serving.concurrency)} threads")
            tally = _Tally()
            sampler = MemorySampler(process.pid, lambda: tally.done)
            baseline = rss_mb(process.pid)
            sampler.start()
            start = time.perf_counter()
            _send_all(soak, schedule, seeds, max(serving.concurrency), tally)
            elapsed = time.perf_counter() - start
            log(f"  slot pinning: {PINNING_RUNS} x {SERVER_MAX_CONNECTIONS} non-reading clients")
            pinning = [soak.slot_pinning() for _ in range(PINNING_RUNS)]
            sampler.stop()
            alive = process.poll() is None
        server_log = (workdir / "server.log").read_text()
    report = {
        "cpu": cpu_model(), "cores": os.cpu_count(), "tensorflow": tf.__version__,
        "model": str(version_dir), "image_size": soak.image_size,
        "preset": None if serving.model_base else serving.preset,
        "requests": total, "concurrency": max(serving.concurrency),
        "grpc": bool(grpc_target),
        **_soak_report(soak, tally, sampler, baseline, total, elapsed),
        "slot_pinning": {"runs": [detail for _, detail in pinning],
                         "passed": all(ok for ok, _ in pinning)},
        "server_alive": alive,
        "server_traceback": server_log[-3000:] if "Traceback" in server_log else None,
    }
    bad = sum(report["outcomes"].get(k, 0)
              for k in ("wrong_answer", "failed", "unexpected_answer"))
    report["passed"] = (bad == 0 and alive and report["server_traceback"] is None
                        and report["slot_pinning"]["passed"])
    return report
