"""The `seeds` section: the quickstart's claims over several seeds, mean and spread.

For each seed: the quickstart's DeconvNet and an FCN-8s partner trained with the same
recipe, then `evaluate_methods` with whole-image, proposal, CRF and ensemble inference,
under the authors' inference settings (the CLI's defaults) and the quickstart's. The
table is what the README reports:

    deconvnet benchmark --sections seeds --seeds 0 1 2 --json runs/seeds.json
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from keras_deconvnet.benchmarks.config import SuiteConfig

METHODS = ("whole", "proposals", "proposals_crf", "ensemble", "ensemble_crf")


def run_seed(seed: int, out: Path, val_examples: int) -> dict:
    """One seed: both models trained as the quickstart does, every method scored under
    the authors' and the quickstart's inference settings."""
    from keras_deconvnet.data import SYNTHETIC_INFO
    from keras_deconvnet.evaluation import InferenceConfig, evaluate_methods
    from keras_deconvnet.metrics import confusion_matrix, iou_from_confusion
    from keras_deconvnet.recipes import QuickstartConfig, train_recipe

    quick = QuickstartConfig(seed=seed, val_examples=val_examples)
    train, val = quick.datasets()
    models, seconds = {}, {}
    for arch in ("deconvnet", "fcn8s"):
        start = time.perf_counter()
        config = quick.training_config()
        config.verbose = 0
        config.tensorboard = False
        models[arch] = train_recipe(train, val, SYNTHETIC_INFO, out / f"seed{seed}" / arch,
                                    config, quick.recipe(arch)).model
        seconds[arch] = time.perf_counter() - start
    results = {"train_seconds": seconds}
    configs = {"authors": InferenceConfig(fcn_input_size=quick.image_size),
               "quickstart": quick.inference_config()}
    for name, config in configs.items():
        evaluation = evaluate_methods(
            models["deconvnet"], val.as_numpy_iterator(), SYNTHETIC_INFO.num_classes,
            METHODS, fcn=models["fcn8s"], config=config, verbose=0,
        )
        results[name] = {m: evaluation[m]["mean_iou"] for m in METHODS}
    labels = np.stack([e["class_mask"] for e in val.as_numpy_iterator()])
    background = iou_from_confusion(
        confusion_matrix(labels, np.zeros_like(labels), SYNTHETIC_INFO.num_classes))
    results["all_background"] = background["mean_iou"]
    return results


def bench_seeds(config: SuiteConfig, log: Callable[[str], None] = print) -> dict:
    """Mean IoU of every method and settings per seed (`runs`), and the all-background
    baseline."""
    settings = config.seeds
    runs = {}
    with tempfile.TemporaryDirectory(prefix="seeds-") as scratch:
        out = Path(settings.output_dir or scratch)
        for seed in settings.seeds:
            runs[str(seed)] = run_seed(seed, out, settings.val_examples)
            log(f"  seed {seed}: " + ", ".join(
                f"{m} {runs[str(seed)]['quickstart'][m]:.3f}" for m in METHODS))
    return {"methods": list(METHODS), "runs": runs}


def format_seeds(result: dict) -> list:
    """One row per settings and method: each seed's mean IoU (%), the mean and the
    sample standard deviation."""
    runs = result["runs"]
    lines = [f"{'settings':<12}{'method':<16}" + "".join(f"seed {s:>3}  " for s in runs)
             + "  mean   std"]
    for settings in ("authors", "quickstart"):
        for method in result["methods"]:
            values = np.array([runs[s][settings][method] for s in runs]) * 100
            spread = values.std(ddof=1) if len(values) > 1 else 0.0
            lines.append(f"{settings:<12}{method:<16}"
                         + "".join(f"{v:>8.1f}  " for v in values)
                         + f"{values.mean():>6.1f} {spread:>5.1f}")
    return lines
