"""`deconvnet predict`: label PNGs and overlays for image files."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from keras_deconvnet.atomic_io import write_json
from keras_deconvnet.cli.arguments import (
    add_inference_args,
    add_model_args,
    inference_config_from_args,
    load_model,
)


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "predict",
        help="segment image files: label PNGs and overlays with a legend",
        description=(
            "Segments each image (JPEG/PNG of any size, grayscale, RGBA and 16-bit "
            "included) with proposal-based (the paper's) or whole-image inference, and "
            "writes NAME_labels.png (palette PNG, VOC format) and NAME_overlay.png "
            "(image + coloured segmentation + legend) to --out, and predictions.json "
            "listing them; inputs that share a name get NAME-2, NAME-3, ... A file that "
            "cannot be read, or that is not a regular file (a FIFO, a device), is "
            "reported and skipped; the exit status is 1 if any failed."
        ),
        epilog=(
            "Examples:\n"
            "  deconvnet predict photo.jpg --model runs/quickstart/preset --out preds\n"
            "  deconvnet predict a.png b.png --model voc_preset --method whole --crf\n"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("images", nargs="+", help="image files")
    parser.add_argument("--out", required=True, help="output directory")
    add_model_args(parser)
    parser.add_argument("--method", choices=("proposals", "whole", "ensemble"),
                        default="proposals",
                        help="proposal-based (the paper's), whole-image, or the "
                        "DeconvNet + FCN-8s ensemble")
    parser.add_argument("--fcn", help="FCN-8s segmenter (preset) for --method ensemble")
    parser.add_argument("--crf", action="store_true", help="refine with the dense CRF")
    parser.add_argument("--exif-transpose", action="store_true",
                        help="apply the EXIF orientation (off by default, like TF Serving's "
                        "decoder, so local and served labels agree)")
    add_inference_args(parser)
    parser.add_argument("--class-names", help="comma-separated class names for the legend")
    parser.set_defaults(func=run)
    return parser


def run(args) -> int:
    import keras

    from keras_deconvnet import visualize
    from keras_deconvnet.inference import ImageReadError, load_image
    from keras_deconvnet.inference.methods import segment_image
    from keras_deconvnet.models import load_segmenter

    model = load_model(args)
    config = inference_config_from_args(args)
    method = args.method + ("_crf" if args.crf else "")
    fcn = load_segmenter(args.fcn) if args.fcn else None
    if args.class_names:
        names = [n.strip() for n in args.class_names.split(",")]
    else:
        names = list(model.class_names)
    palette = visualize.full_palette(getattr(model, "palette", None))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results, failures = [], []
    progress = keras.utils.Progbar(len(args.images), unit_name="image")
    stems = output_stems(args.images)
    for i, name in enumerate(args.images, 1):
        try:
            check_regular_file(name)
            image = load_image(name, exif_transpose=args.exif_transpose)
        except ImageReadError as e:
            print(f"\ndeconvnet predict: skipped {e}", file=sys.stderr)
            failures.append({"image": name, "error": str(e)})
            progress.update(i)
            continue
        labels = segment_image(image, model, (method,), config, fcn,
                               image_id=Path(name).stem)[method]
        stem = stems[i - 1]
        label_path = visualize.save_label_png(labels, out / f"{stem}_labels.png", palette)
        overlay_path = visualize.save_overlay(
            image, labels, out / f"{stem}_overlay.png", names, palette,
            title=f"{args.method}{' + CRF' if args.crf else ''}",
        )
        present = sorted(int(c) for c in set(labels.ravel().tolist()))
        results.append({
            "image": name, "labels": str(label_path), "overlay": str(overlay_path),
            "classes": [names[c] if c < len(names) else str(c) for c in present],
        })
        progress.update(i)
    settings = config.to_dict()
    write_json(out / "predictions.json", {
        "predictions": results, "failures": failures, "num_images": len(results),
        "method": method, "model": args.model or args.preset, "fcn": args.fcn,
        # The only seed of inference: the built-in proposals' jitter (None for files).
        "seed": (settings["proposals"].get("config") or {}).get("seed"),
        "inference_config": settings})
    print(f"{len(results)} image(s) segmented, {len(failures)} failed; "
          f"outputs and predictions.json in {out}")
    return 1 if failures else 0


def output_stems(images: list[str]) -> list[str]:
    """One output name per input: the file's stem, made unique by a `-N` suffix.

    Two inputs with the same stem (`a/x.jpg`, `b/x.png`) would otherwise write the
    same `x_labels.png`. The first keeps its stem; names are compared without case,
    as on case-insensitive file systems.

    Example:

    >>> output_stems(["a/x.jpg", "b/x.png", "x-2.jpg", "c/X.jpg"])
    ['x', 'x-3', 'x-2', 'X-4']
    """
    taken = {Path(name).stem.lower() for name in images}
    used, stems = set(), []
    for name in images:
        stem = Path(name).stem
        candidate, n = stem, 1
        while candidate.lower() in used or (n > 1 and candidate.lower() in taken):
            n += 1
            candidate = f"{stem}-{n}"
        used.add(candidate.lower())
        stems.append(candidate)
    return stems


def check_regular_file(name: str) -> None:
    """Raises `ImageReadError` for a FIFO, device, socket or directory (reading a FIFO
    would block forever); a missing file is left to the image reader's own error."""
    import stat

    from keras_deconvnet.inference import ImageReadError

    try:
        mode = Path(name).stat().st_mode
    except OSError:
        return
    if not stat.S_ISREG(mode):
        kind = ("a FIFO" if stat.S_ISFIFO(mode) else "a directory" if stat.S_ISDIR(mode)
                else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
                else "a socket" if stat.S_ISSOCK(mode) else "not a regular file")
        raise ImageReadError(f"{name}: {kind}, not an image file")
