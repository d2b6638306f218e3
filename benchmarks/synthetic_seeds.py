"""The synthetic-shapes claims over several seeds: mean and spread of every method.

For each seed: the quickstart's DeconvNet and an FCN-8s partner trained with the same
recipe, then `evaluate_methods` with whole-image, proposal, CRF and ensemble inference,
under the authors' inference settings (the CLI's defaults) and the quickstart's. The
table is what the README reports.

    python -m benchmarks.synthetic_seeds --seeds 0 1 2 --json runs/seeds.json
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

METHODS = ("whole", "proposals", "proposals_crf", "ensemble", "ensemble_crf")


def quickstart_args(**overrides) -> argparse.Namespace:
    """The quickstart's defaults, as its parser gives them."""
    from keras_deconvnet.cli import build_parser

    args = build_parser().parse_args(["quickstart"])
    for key, value in overrides.items():
        setattr(args, key, value)
    return args


def run_seed(seed: int, out: Path, val_examples: int) -> dict:
    from keras_deconvnet.cli.quickstart import (
        quickstart_inference_config,
        quickstart_training_config,
    )
    from keras_deconvnet.data import SYNTHETIC_INFO, synthetic_dataset
    from keras_deconvnet.evaluation import InferenceConfig, evaluate_methods
    from keras_deconvnet.recipes import RecipeConfig, train_recipe

    args = quickstart_args(seed=seed)
    size = (args.image_size, args.image_size)
    train = synthetic_dataset("train", args.train_examples, size, seed=seed)
    val = synthetic_dataset("val", val_examples, size, seed=seed)
    models, seconds = {}, {}
    for arch in ("deconvnet", "fcn8s"):
        start = time.perf_counter()
        config = quickstart_training_config(args)
        config.verbose = 0
        config.tensorboard = False
        recipe = RecipeConfig(architecture=arch, crop_size=args.crop_size, seed=seed,
                              evaluate=())
        models[arch] = train_recipe(train, val, SYNTHETIC_INFO, out / f"seed{seed}" / arch,
                                    config, recipe).model
        seconds[arch] = time.perf_counter() - start
    results = {"train_seconds": seconds}
    configs = {"authors": InferenceConfig(fcn_input_size=size[0]),
               "quickstart": quickstart_inference_config(args)}
    configs["quickstart"].fcn_input_size = size[0]
    for name, config in configs.items():
        evaluation = evaluate_methods(
            models["deconvnet"], val.as_numpy_iterator(), SYNTHETIC_INFO.num_classes,
            METHODS, fcn=models["fcn8s"], config=config, verbose=0,
        )
        results[name] = {m: evaluation[m]["mean_iou"] for m in METHODS}
    labels = np.stack([e["class_mask"] for e in val.as_numpy_iterator()])
    from keras_deconvnet.metrics import confusion_matrix, iou_from_confusion

    background = iou_from_confusion(confusion_matrix(labels, np.zeros_like(labels), 6))
    results["all_background"] = background["mean_iou"]
    return results


def table(runs: dict) -> str:
    lines = [f"{'settings':<12}{'method':<16}" + "".join(f"seed {s:>3}  " for s in runs)
             + "  mean   std"]
    for settings in ("authors", "quickstart"):
        for method in METHODS:
            values = np.array([runs[s][settings][method] for s in runs]) * 100
            spread = values.std(ddof=1) if len(values) > 1 else 0.0
            lines.append(f"{settings:<12}{method:<16}"
                         + "".join(f"{v:>8.1f}  " for v in values)
                         + f"{values.mean():>6.1f} {spread:>5.1f}")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--val-examples", type=int, default=48)
    parser.add_argument("--out", default="runs/seeds")
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    runs = {}
    for seed in args.seeds:
        runs[seed] = run_seed(seed, Path(args.out), args.val_examples)
        print(f"seed {seed}: {runs[seed]}", flush=True)
    print(table(runs))
    if args.json:
        from keras_deconvnet.atomic_io import write_json

        write_json(args.json, {str(k): v for k, v in runs.items()})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
