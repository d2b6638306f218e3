"""The benchmark suite: what it measures (`SuiteConfig`) and the run of every section."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable

from keras_deconvnet.benchmarks.backends import bench_backends
from keras_deconvnet.benchmarks.config import ALL_SECTIONS, SuiteConfig
from keras_deconvnet.benchmarks.exported import bench_exported
from keras_deconvnet.benchmarks.forward import bench_forward
from keras_deconvnet.benchmarks.layers import bench_layers
from keras_deconvnet.benchmarks.machine import bench_matmul, machine_info
from keras_deconvnet.benchmarks.memory import bench_memory
from keras_deconvnet.benchmarks.pipelines import bench_pipeline
from keras_deconvnet.benchmarks.profile import bench_profile
from keras_deconvnet.benchmarks.proposals import bench_proposals
from keras_deconvnet.benchmarks.report import compute_verdicts
from keras_deconvnet.benchmarks.seeds import bench_seeds
from keras_deconvnet.benchmarks.serving import bench_serving
from keras_deconvnet.benchmarks.soak import bench_soak
from keras_deconvnet.benchmarks.torch_reference import bench_torch
from keras_deconvnet.benchmarks.training import bench_training


def run_suite(config: SuiteConfig, log: Callable[[str], None] = print) -> dict:
    """Runs the configured sections; returns everything as a JSON-serialisable dict."""
    unknown = set(config.sections) - set(ALL_SECTIONS)
    if unknown:
        raise ValueError(f"Unknown sections {sorted(unknown)}; choose from {ALL_SECTIONS}.")
    started = time.perf_counter()
    results: dict = {"machine": machine_info(), "config": dataclasses.asdict(config),
                     "section_seconds": {}}

    def section(name, fn):
        if name not in config.sections:
            return
        log(f"[{name}]")
        start = time.perf_counter()
        results[name] = fn()
        results["section_seconds"][name] = time.perf_counter() - start

    # The matmul yardstick, measured again after the forward pass: the higher rate is
    # the reference (a conservative denominator when other work shares the machine).
    section("matmul", lambda: bench_matmul(config))
    matmul = results.get("matmul", {}).get("peak_gflops")
    section("forward", lambda: bench_forward(config, matmul, log))
    if "matmul" in results and "forward" in results:
        again = bench_matmul(config)
        mm = results["matmul"]
        mm["repeated_after_forward"] = again
        if again["peak_gflops"] > mm["peak_gflops"]:
            mm["peak_gflops"] = again["peak_gflops"]
            for row in results["forward"]:
                row["fraction_of_matmul"] = row["gflops_per_second"] / mm["peak_gflops"]
        log(f"  matmul reference: {mm['peak_gflops']:.1f} GFLOP/s")
    section("layers", lambda: bench_layers(config, log))
    if "training" in config.sections:
        section("training", lambda: bench_training(config, log))
        results["pipeline"] = bench_pipeline(config, log)
    section("torch", lambda: bench_torch(config, log))
    section("exported", lambda: bench_exported(config, log))
    section("memory", lambda: bench_memory(config, log))
    section("profile", lambda: bench_profile(config, log))
    section("proposals", lambda: bench_proposals(config, log))
    section("serving", lambda: bench_serving(config, log))
    section("soak", lambda: bench_soak(config, log))
    section("seeds", lambda: bench_seeds(config, log))
    section("backends", lambda: bench_backends(config, log))
    results["verdicts"] = compute_verdicts(results)
    results["total_seconds"] = time.perf_counter() - started
    return results
