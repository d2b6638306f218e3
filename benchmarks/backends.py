"""The `backends` section: the forward pass and one training step of the edge and paper
configurations on every installed Keras backend (TensorFlow, JAX, PyTorch), in one run.

Each backend runs `backend_steps` in its own child process (one Python process has one
Keras backend), one after the other, on the same CPU; every figure is also given as a
fraction of that backend's own matmul rate measured in the same child, and as a ratio
to TensorFlow's figure of the same row.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

from keras_deconvnet.benchmarks.config import SuiteConfig

BACKENDS = ("tensorflow", "jax", "torch")


def installed_backends() -> list[str]:
    """The Keras backends whose framework is importable here."""
    return [b for b in BACKENDS if importlib.util.find_spec(b) is not None]


def bench_backends(config: SuiteConfig, log=print) -> dict:
    """One child per installed backend; rows with ratios to TensorFlow's."""
    settings = config.backends
    result: dict = {"backends": {}, "rows": [], "skipped": {}}
    for backend in installed_backends():
        command = [sys.executable, "-m", "keras_deconvnet.benchmarks.backend_steps",
                   "--presets", *settings.presets, "--image-size", str(config.image_size),
                   "--batches", *map(str, settings.batches), "--dtypes", *settings.dtypes,
                   "--repeats", str(config.repeats), "--warmup", str(config.warmup),
                   "--matmul-size", str(config.matmul_size)]
        env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "2"}
        log(f"  {backend}: {', '.join(settings.presets)}")
        done = subprocess.run(command, env=env, capture_output=True, text=True,
                              timeout=settings.timeout_s)
        lines = done.stdout.strip().splitlines()
        if done.returncode != 0 or not lines:
            last = (done.stderr.strip().splitlines() or ["no output"])[-1]
            result["skipped"][backend] = last
            log(f"  {backend}: failed: {last}")
            continue
        child = json.loads(lines[-1])
        result["backends"][backend] = {k: v for k, v in child.items() if k != "rows"}
        result["rows"].extend(child["rows"])
    reference = {(r["preset"], r["batch"], r["dtype"]): r
                 for r in result["rows"] if r["backend"] == "tensorflow"}
    for row in result["rows"]:
        tf_row = reference.get((row["preset"], row["batch"], row["dtype"]))
        for key in ("forward_examples_per_s", "train_examples_per_s"):
            row[f"{key}_vs_tensorflow"] = row[key] / tf_row[key] if tf_row else None
        log(f"  {row['backend']} {row['preset']} b{row['batch']} {row['dtype']}: forward "
            f"{row['forward_examples_per_s']:.2f}/s, training step "
            f"{row['train_examples_per_s']:.2f}/s")
    return result


def format_backends(results: dict) -> list:
    """The section's table for the report."""
    from keras_deconvnet.benchmarks.report import fmt, table

    b = results["backends"]
    out = [f"\n## Keras backends on {results['machine']['cpu']} "
           f"({results['machine']['cores']} cores), {results['config']['image_size']}x"
           f"{results['config']['image_size']}; x TF: ratio to TensorFlow's figure; "
           "of mm: fraction of the backend's own matmul rate"]
    out.append(table(
        ["backend", "preset", "batch", "dtype", "fwd img/s", "x TF", "fwd of mm",
         "step img/s", "x TF", "step of mm", "1st step s"],
        [[r["backend"], r["preset"], r["batch"], r["dtype"],
          fmt(r["forward_examples_per_s"], ".2f"),
          fmt(r["forward_examples_per_s_vs_tensorflow"], ".2f"),
          fmt(r["forward_fraction_of_matmul"], ".2f"),
          fmt(r["train_examples_per_s"], ".2f"),
          fmt(r["train_examples_per_s_vs_tensorflow"], ".2f"),
          fmt(r["train_fraction_of_matmul"], ".2f"), fmt(r["first_train_step_s"])]
         for r in b["rows"]]))
    out += [f"  {name}: not measured ({why})" for name, why in b["skipped"].items()]
    return out
