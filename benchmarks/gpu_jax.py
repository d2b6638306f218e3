"""The paper's DeconvNet on a GPU with JAX and no TensorFlow: forward pass and training
step at batch 8 and 64, float32 and bfloat16, against the same-run matmul rate.

For a machine that has JAX with CUDA but no TensorFlow (the device machines this
project can borrow): Keras runs on JAX, `import keras_deconvnet` imports no TensorFlow,
and the inputs are NumPy batches of synthetic crops. Prints one table and one JSON
line (`--json` also writes it). Run from the repository root, with keras, keras-hub
and their small dependencies importable (the README's "Backends" says how to carry
them as wheels):

    KERAS_BACKEND=jax PYTHONPATH=. python benchmarks/gpu_jax.py --json gpu.json

On a CPU the same script checks itself at a tiny size:

    KERAS_BACKEND=jax PYTHONPATH=. python benchmarks/gpu_jax.py \
        --preset deconvnet_edge_small --image-size 96 --batches 1 --repeats 1
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
from pathlib import Path

# Run as a file from the repository root, `benchmarks` is not installed as
# keras_deconvnet.benchmarks: import the worker from this folder.
sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("KERAS_BACKEND", "jax")

import keras  # noqa: E402
from backend_steps import run  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="deconvnet_vgg16_voc")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--batches", nargs="+", type=int, default=[8, 64])
    parser.add_argument("--dtypes", nargs="+", default=["float32", "bfloat16"])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--matmul-size", type=int, default=8192)
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args(argv)
    if keras.config.backend() != "jax":
        parser.error(f"needs KERAS_BACKEND=jax; this process runs {keras.config.backend()!r}")
    result = run([args.preset], args.image_size, args.batches, args.repeats, args.warmup,
                 args.dtypes, args.matmul_size)
    result["tensorflow_installed"] = importlib.util.find_spec("tensorflow") is not None
    result["tensorflow_imported"] = "tensorflow" in sys.modules
    print(f"devices: {', '.join(result['devices'])}; matmul GFLOP/s: "
          + ", ".join(f"{k} {v:.0f}" for k, v in result["matmul_gflops_per_s"].items())
          + f"; TensorFlow imported: {result['tensorflow_imported']}")
    print("dtype     batch  fwd img/s  fwd of mm  step img/s  step of mm  1st step s")
    for r in result["rows"]:
        print(f"{r['dtype']:<9} {r['batch']:>5}  {r['forward_examples_per_s']:9.1f}  "
              f"{r['forward_fraction_of_matmul']:9.2f}  {r['train_examples_per_s']:10.1f}  "
              f"{r['train_fraction_of_matmul']:10.2f}  {r['first_train_step_s']:10.1f}")
    print(json.dumps(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
