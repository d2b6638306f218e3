"""`deconvnet export`: export a model to TF Serving, TFLite and ONNX, with a parity table."""

from __future__ import annotations

import argparse
from pathlib import Path

from keras_deconvnet.cli import CommandError
from keras_deconvnet.cli.arguments import load_model
from keras_deconvnet.export.pipeline import FORMATS
from keras_deconvnet.export.tflite_quantization import DEFAULT_INT8_IO, INT8_IO

# Rows of the parity table: the formats, plus the served-vs-local row at original
# image sizes.
PARITY_ROWS = (*FORMATS, "saved_model_bytes", "saved_model_jpeg")
FLOAT_FORMATS = (
    "saved_model", "saved_model_bytes", "saved_model_jpeg", "tflite_float32", "onnx"
)
PRESET_FLOAT_THRESHOLD = 95.0

EPILOG = """\
Every artefact takes RGB images in [0, 255] (preprocessing is inside) and returns
per-pixel class probabilities; the int8 TFLite file takes uint8 pixels as they are
(--int8-io). Every TFLite file carries MediaPipe ImageSegmenter metadata and its
labels, so MediaPipe Tasks (Android, iOS, web, Python) loads it unchanged.
Layout of --out:
  saved_model/NAME/1/, saved_model/models.config   TF Serving
  NAME_{float32,float16,dynamic,int8}.tflite       TFLite, builtin ops only
  NAME.onnx                                        ONNX
  export_config.json, parity.json, tflite_ops.md

Examples:
  deconvnet export --model runs/quickstart/preset --out exported \\
      --representative-data calib.npy --validation-data val.npz
  deconvnet export --preset deconvnet_edge --num-classes 3 --out /tmp/edge \\
      --formats tflite_float16,tflite_int8
  deconvnet export --model runs/voc/preset --out exported --image-size 320x320 \\
      --thresholds tflite_int8=85,tflite_dynamic=95 --original-images photos/*.jpg
"""


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "export",
        help="export to TF Serving (SavedModel), TFLite and ONNX, and check parity",
        description=(
            "Export a trained model (or an untrained preset, to test a deployment "
            "pipeline) to the SavedModel/TF Serving layout, TFLite (float32, float16, "
            "dynamic-range, full-integer int8; builtin ops only, GPU delegate checked, "
            "MediaPipe ImageSegmenter metadata inside) and ONNX. Every artefact is then "
            "run in its own runtime and compared with Keras, and the SavedModel's "
            "predict_image_bytes with local whole-image inference at the images' own "
            "sizes; the table is printed and written to parity.json. Large models are "
            "converted in child processes (bounded memory). Nothing is left in --out if "
            "any step fails."
        ),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_model_arguments(parser)
    _add_output_arguments(parser)
    _add_tflite_arguments(parser)
    _add_parity_arguments(parser)
    parser.set_defaults(func=run)
    return parser


def _add_model_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--model", help="a trained segmenter: preset directory, hub handle or .keras file"
    )
    source.add_argument(
        "--preset", help="a name from `deconvnet presets` (untrained weights)"
    )
    parser.add_argument("--num-classes", type=int, help="with --preset: override num_classes")
    parser.add_argument(
        "--image-size",
        help="HEIGHTxWIDTH (or one number) to export at; needed if the model takes any size",
    )


def _add_output_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--out", type=Path, required=True, help="output directory (must not exist or be empty)"
    )
    parser.add_argument(
        "--formats",
        default=",".join(FORMATS),
        help=f"comma-separated formats (default: all): {', '.join(FORMATS)}",
    )
    parser.add_argument("--name", default="deconvnet", help="model name (default: deconvnet)")
    parser.add_argument("--class-names", help="comma-separated class names, background first")
    parser.add_argument("--opset", type=int, default=17, help="ONNX opset (default: 17)")


def _add_tflite_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("TFLite")
    group.add_argument(
        "--representative-data",
        type=Path,
        help="int8 calibration images, a .npy of RGB 0-255 images (N, H, W, 3); "
        "default: synthetic images (a warning is printed)",
    )
    group.add_argument(
        "--representative-samples",
        type=int,
        default=100,
        help="the most calibration images to use (default: 100)",
    )
    group.add_argument(
        "--int8-io", choices=INT8_IO, default=DEFAULT_INT8_IO,
        help="input/output type of the int8 TFLite file: uint8 (raw pixels in, for "
        "MediaPipe and NPUs), int8 (pixel - 128; NPUs, not MediaPipe) or float "
        f"(QUANTIZE/DEQUANTIZE at the ends). Default: {DEFAULT_INT8_IO}",
    )
    group.add_argument(
        "--no-metadata", action="store_true",
        help="do not pack MediaPipe ImageSegmenter metadata and labels.txt into the "
        "TFLite files",
    )
    group.add_argument(
        "--isolate", choices=("auto", "on", "off"), default="auto",
        help="convert TFLite files in child processes (bounded memory); auto: for "
        "models over 256 MB of weights (default: auto)",
    )


def _add_parity_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("parity check")
    group.add_argument(
        "--validation-data",
        type=Path,
        help="a .npz with `images` (N, H, W, 3) RGB 0-255 and optional `labels` (N, H, W) "
        "for the parity check; default: 4 synthetic images",
    )
    group.add_argument(
        "--original-images", nargs="+", type=Path,
        help="image files of any size for the served-vs-local parity row "
        "(saved_model_bytes: predict_image_bytes vs local whole-image inference); "
        "default: 4 synthetic images of other sizes",
    )
    group.add_argument(
        "--thresholds",
        help="minimum label agreement with Keras in %%, e.g. tflite_int8=85,onnx=99.9 "
        "(also saved_model_bytes; defaults: keras_deconvnet.export.DEFAULT_THRESHOLDS)",
    )
    group.add_argument(
        "--runs", type=int, default=5, help="timed runs per format for latency (default: 5)"
    )


def parse_image_size(text: str | None) -> tuple[int, int] | None:
    """`"320x240"`, `"320,240"` or `"320"` -> `(320, 240)` / `(320, 320)`."""
    if text is None:
        return None
    parts = text.lower().replace(",", "x").split("x")
    try:
        sizes = [int(p) for p in parts]
    except ValueError:
        sizes = []
    if len(sizes) not in (1, 2) or min(sizes, default=0) < 1:
        raise CommandError(
            f"--image-size must be HEIGHTxWIDTH or one positive number. Received: {text!r}"
        )
    return (sizes[0], sizes[-1])


def parse_thresholds(text: str | None) -> dict[str, float]:
    """`"tflite_int8=85,onnx=99.9"` -> `{"tflite_int8": 85.0, "onnx": 99.9}`."""
    thresholds = {}
    for item in (text or "").split(","):
        if not item.strip():
            continue
        name, _, value = item.partition("=")
        name = name.strip()
        try:
            number = float(value)
        except ValueError:
            number = None
        if name not in PARITY_ROWS or number is None or not 0 <= number <= 100:
            raise CommandError(
                "--thresholds must be FORMAT=PERCENT pairs with FORMAT in "
                f"{', '.join(PARITY_ROWS)} and PERCENT in [0, 100]. Received: {item!r}"
            )
        thresholds[name] = number
    return thresholds


def _validation_data(path: Path | None):
    """`(images, labels)` of `--validation-data` (`(None, None)` without it)."""
    import numpy as np

    if path is None:
        return None, None
    with np.load(path) as data:
        if "images" not in data:
            raise CommandError(
                f"--validation-data must hold an `images` array. "
                f"Received keys: {sorted(data.keys())}"
            )
        return data["images"], data["labels"] if "labels" in data else None


def _original_images(paths: list[Path] | None):
    if not paths:
        return None
    from keras_deconvnet.inference import ImageReadError, load_image

    try:
        return [load_image(path) for path in paths]
    except ImageReadError as e:
        raise CommandError(f"--original-images: {e}") from e


def _preset_thresholds(thresholds: dict[str, float]) -> dict[str, float]:
    """Untrained weights give near-uniform class scores: labels flip on rounding
    noise, so float formats are held to 95% and quantized ones not at all."""
    print(
        "note: --preset gives untrained weights (near-tied scores); the parity "
        f"check holds {', '.join(FLOAT_FORMATS)} to {PRESET_FLOAT_THRESHOLD}% label "
        "agreement and the quantized formats to none."
    )
    defaults = {
        fmt: PRESET_FLOAT_THRESHOLD if fmt in FLOAT_FORMATS else 0.0 for fmt in PARITY_ROWS
    }
    return {**defaults, **thresholds}


def export_config(args):
    """The `ExportConfig` of parsed arguments (without the preset thresholds)."""
    from keras_deconvnet.export import ExportConfig

    class_names = (
        [n.strip() for n in args.class_names.split(",")] if args.class_names else None
    )
    return ExportConfig(
        formats=args.formats,
        name=args.name,
        image_shape=parse_image_size(args.image_size),
        class_names=class_names,
        representative_samples=args.representative_samples,
        int8_io=args.int8_io,
        isolate={"auto": None, "on": True, "off": False}[args.isolate],
        metadata=not args.no_metadata,
        opset=args.opset,
        thresholds=parse_thresholds(args.thresholds),
        latency_runs=args.runs,
    )


def run(args) -> int:
    import dataclasses

    import numpy as np

    from keras_deconvnet.export import ParityError, export_all

    config = export_config(args)
    if args.out.exists() and (args.out.is_file() or any(args.out.iterdir())):
        raise CommandError(f"--out exists and is not empty: {args.out}")
    representative = None
    if args.representative_data is not None:
        representative = np.load(args.representative_data)
    images, labels = _validation_data(args.validation_data)
    originals = _original_images(args.original_images)
    model = load_model(args)
    if config.image_shape is not None:  # one line instead of TensorFlow's shape error
        from keras_deconvnet.inference.whole_image import check_input_size

        check_input_size(model, config.image_shape[:2])
    if args.preset:
        config = dataclasses.replace(config, thresholds=_preset_thresholds(config.thresholds))
    try:
        result = export_all(
            model, args.out, config, representative_data=representative,
            parity_images=images, parity_labels=labels, original_images=originals,
        )
    except ParityError as e:
        print(e.report.table)
        raise CommandError(str(e).splitlines()[0] + " Nothing was written.") from e
    print(result.report.table)
    print(f"\nWrote {', '.join(sorted(result.paths))} and parity.json to {result.output_dir}")
    print(hardware_lines(result))
    return 0


def hardware_lines(result) -> str:
    """Which written file is for which hardware, and the browser demo's command."""
    from keras_deconvnet.export.pipeline import FILE_PURPOSES

    lines = ["Which file for which hardware:"]
    for fmt, path in sorted(result.paths.items(), key=lambda item: FORMATS.index(item[0])):
        path = Path(path)
        name = str(path.relative_to(result.output_dir)) if path.is_relative_to(
            result.output_dir) else path.name
        lines.append(f"  {name + '/' * path.is_dir():<28} {FILE_PURPOSES.get(fmt, '')}")
    if any(fmt.startswith("tflite_") for fmt in result.paths):
        lines.append(f"See them segment your images in your browser: "
                     f"deconvnet serve-web {result.output_dir}")
    return "\n".join(lines)
