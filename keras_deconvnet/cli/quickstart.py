"""`deconvnet quickstart`: the README's main job on built-in data, end to end.

Trains the small edge configuration with the two-stage recipe on the built-in
synthetic shapes, evaluates whole-image and proposal-based inference, exports the
model (SavedModel for TF Serving, TFLite float32 and int8, ONNX) with a parity check,
draws a prediction, and prints where every artefact went. No files, no network.
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

from keras_deconvnet.atomic_io import write_json

METHODS = ("whole", "proposals")  # evaluated and drawn
EXPORT_FORMATS = ("saved_model", "tflite_float32", "tflite_float16", "tflite_int8", "onnx")


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "quickstart",
        help="train a small model on built-in data, evaluate, export (the README's main job)",
        description=__doc__.split("\n\n")[1].replace("\n", " "),
        epilog=(
            "Examples:\n  deconvnet quickstart\n"
            "  deconvnet quickstart --out runs/fast --stage1-epochs 1 --stage2-epochs 2 \\\n"
            "      --steps-per-epoch 20 --formats saved_model,tflite_int8\n"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    from keras_deconvnet.recipes import QuickstartConfig

    defaults = QuickstartConfig()
    parser.add_argument("--out", default="runs/quickstart", help="output directory")
    parser.add_argument("--preset", default=defaults.preset, help="model configuration")
    parser.add_argument("--image-size", type=int, default=defaults.image_size,
                        help="synthetic image size")
    parser.add_argument("--crop-size", type=int, default=defaults.crop_size,
                        help="training crop size")
    for name, text in (("train_examples", "synthetic training images"),
                       ("val_examples", "synthetic validation images"),
                       ("stage1_epochs", "epochs of stage 1 (object-centred crops)"),
                       ("stage2_epochs", "epochs of stage 2 (proposal crops)"),
                       ("steps_per_epoch", "steps per epoch")):
        parser.add_argument("--" + name.replace("_", "-"), type=int,
                            default=getattr(defaults, name), help=text)
    parser.add_argument("--learning-rate", type=float, default=defaults.learning_rate,
                        help="base learning rate")
    parser.add_argument("--top-n", type=int, default=defaults.top_n,
                        help="proposal windows run per image (the paper's 50)")
    parser.add_argument("--formats", default=",".join(EXPORT_FORMATS),
                        help="comma-separated export formats (as `deconvnet export`)")
    parser.add_argument("--seed", type=int, default=defaults.seed,
                        help="seed of the data, the weights and the training")
    parser.set_defaults(func=run)
    return parser


def quickstart_config(args):
    """The `QuickstartConfig` of parsed arguments."""
    import dataclasses

    from keras_deconvnet.recipes import QuickstartConfig

    return QuickstartConfig(**{f.name: getattr(args, f.name)
                               for f in dataclasses.fields(QuickstartConfig)})


def run(args) -> int:
    from keras_deconvnet.data import SYNTHETIC_INFO
    from keras_deconvnet.evaluation import comparison_table, evaluate_methods
    from keras_deconvnet.recipes import train_recipe

    out = Path(args.out)
    quick = quickstart_config(args)
    info = SYNTHETIC_INFO
    train, val = quick.datasets()
    print(f"== 1/4 Training {quick.preset} on synthetic shapes ({quick.train_examples} "
          f"images, {quick.image_size}x{quick.image_size}), stage 1 then stage 2")
    start = time.perf_counter()
    result = train_recipe(train, val, info, out / "train", quick.training_config(),
                          quick.recipe())
    model = result.model

    print(f"\n== 2/4 Evaluating on {quick.val_examples} validation images")
    methods = list(METHODS)  # (as a list for the table)
    evaluation = evaluate_methods(model, val.as_numpy_iterator(), info.num_classes,
                                  methods=methods, config=quick.inference_config(),
                                  total=quick.val_examples)
    print(comparison_table(evaluation, methods, info.class_names))

    print("\n== 3/4 Exporting with parity checks")
    examples = list(val.take(16).as_numpy_iterator())
    exported = _export(model, out / "export", examples, quick, args.formats.split(","))
    preset_dir = model.save_to_preset(
        out / "preset", overwrite=True,
        training_data=(f"synthetic shapes, {quick.train_examples} images "
                       f"{quick.image_size}x{quick.image_size}"),
        metrics={f"val_mean_iou_{m}": evaluation[m]["mean_iou"] for m in methods},
        description="deconvnet quickstart model (two-stage recipe on synthetic shapes)",
    )

    print("\n== 4/4 Drawing predictions next to the ground truth")
    picture = _draw(model, examples[:4], quick, out / "prediction.png")
    seconds = time.perf_counter() - start
    artefacts = {
        "preset": preset_dir,
        **{f"export_{k}": v for k, v in exported.paths.items()},
        "prediction_picture": picture,
        "tensorboard_logs": out / "train",
    }
    summary = _summary(quick, result, evaluation, exported, artefacts, seconds)
    summary_path = write_json(out / "summary.json", summary)
    print(f"\nDone in {seconds / 60:.1f} min. Validation mean IoU: "
          + ", ".join(f"{m} {100 * evaluation[m]['mean_iou']:.1f}%" for m in methods))
    print("Artefacts:")
    for name, path in summary["artefacts"].items():
        print(f"  {name:<24} {path}")
    print(f"  {'summary':<24} {summary_path.resolve()}")
    return 0


def _summary(quick, result, evaluation: dict, exported, artefacts: dict, seconds: float):
    """What `summary.json` records: settings, times, scores, parity and artefacts."""
    return {
        "preset": quick.preset,
        "seed": quick.seed,
        "train_seconds": round(result.train_seconds, 1),
        "total_seconds": round(seconds, 1),
        "validation_mean_iou": {m: evaluation[m]["mean_iou"] for m in METHODS},
        "validation_pixel_accuracy": {m: evaluation[m]["pixel_accuracy"] for m in METHODS},
        "parity": exported.report.rows if exported.report is not None else None,
        "artefacts": {k: str(Path(v).resolve()) for k, v in artefacts.items()},
    }


def _export(model, export_dir: Path, examples: list, quick, formats: list):
    """Every format with parity checks on validation images resized to the crop size."""
    import numpy as np
    import tensorflow as tf

    from keras_deconvnet.data import SYNTHETIC_INFO
    from keras_deconvnet.export import ExportConfig, export_all

    config = ExportConfig(formats=formats, name="deconvnet",
                          class_names=SYNTHETIC_INFO.class_names)
    if export_dir.exists():
        shutil.rmtree(export_dir)  # quickstart's own artefacts from an earlier run
    images = np.stack([e["image"] for e in examples]).astype("float32")
    labels = np.stack([e["class_mask"] for e in examples])
    crop = (quick.crop_size, quick.crop_size)
    resized = tf.image.resize(images, crop).numpy()
    resized_labels = tf.image.resize(labels[..., None], crop, "nearest").numpy()[..., 0]
    exported = export_all(
        model, export_dir, config, representative_data=resized,
        parity_images=resized[:8], parity_labels=resized_labels[:8],
        original_images=list(images[:12].astype("uint8")),
    )
    if exported.report is not None:
        print(exported.report.table)
    return exported


def _draw(model, shown: list, quick, path: Path) -> Path:
    """Image | ground truth | whole-image | proposal predictions, one row per image."""
    from keras_deconvnet import visualize
    from keras_deconvnet.data import SYNTHETIC_INFO
    from keras_deconvnet.inference.methods import segment_image

    predictions = {m: [] for m in METHODS}
    for example in shown:
        labels_by_method = segment_image(example["image"], model, METHODS,
                                         quick.inference_config())
        for m in METHODS:
            predictions[m].append(labels_by_method[m])
    return visualize.save_comparison(
        [e["image"] for e in shown], [e["class_mask"] for e in shown],
        {"whole image": predictions["whole"], "proposals": predictions["proposals"]},
        path, SYNTHETIC_INFO.class_names, SYNTHETIC_INFO.palette,
    )
