"""`deconvnet quickstart`: the README's main job on built-in data, end to end."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "quickstart",
        help="train a small model on built-in data, evaluate, export (the README's main job)",
        description=(
            "Builds the small edge configuration, trains it briefly on built-in data, "
            "evaluates it, saves it and exports a builtin-only TFLite file, then prints "
            "where every artefact went. Needs no files and no network."
        ),
        epilog=(
            "Examples:\n  deconvnet quickstart\n"
            "  deconvnet quickstart --out runs/try2 --steps 20 --image-size 96"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--out", default="runs/quickstart", help="output directory")
    parser.add_argument("--preset", default="deconvnet_edge_small", help="model configuration")
    parser.add_argument("--image-size", type=int, default=128, help="training image size")
    parser.add_argument("--steps", type=int, default=30, help="training steps")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.set_defaults(func=run)
    return parser


def run(args) -> int:
    import keras
    import numpy as np

    from keras_deconvnet.export.tflite import export_tflite
    from keras_deconvnet.models import DeconvNet

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(args.seed)
    size = args.image_size
    model = DeconvNet.from_preset(args.preset, num_classes=3, image_shape=(size, size, 3))
    print(f"Model {args.preset}: {model.count_params():,} parameters")

    # Random images whose label is a function of the pixels: a learnable stand-in.
    rng = np.random.default_rng(args.seed)
    images = rng.normal(0, 60, size=(4 * args.batch_size, size, size, 3)).astype("float32")
    labels = np.digitize(images[..., 0], [-30.0, 30.0]).astype("int32")
    model.compile(
        optimizer=keras.optimizers.SGD(0.01, momentum=0.9),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=255),
        metrics=["accuracy"],
    )
    start = time.perf_counter()
    epochs = max(1, args.steps // 4)
    history = model.fit(images, labels, batch_size=args.batch_size, epochs=epochs, verbose=2)
    train_seconds = time.perf_counter() - start
    predictions = model.predict(images, verbose=0).argmax(-1)
    accuracy = float((predictions == labels).mean())

    model_path = out / "model.keras"
    model.save(model_path)
    tflite_path = export_tflite(model, out / "model_float32.tflite")
    summary = {
        "preset": args.preset,
        "train_seconds": round(train_seconds, 1),
        "final_loss": float(history.history["loss"][-1]),
        "pixel_accuracy": accuracy,
        "artefacts": {"keras_model": str(model_path), "tflite_float32": str(tflite_path)},
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(f"\nPixel accuracy {accuracy:.3f} after {train_seconds:.0f} s of training.")
    print("Artefacts:")
    for name, path in summary["artefacts"].items():
        print(f"  {name:<16} {path}")
    print(f"  {'summary':<16} {out / 'summary.json'}")
    return 0
