"""`export_all`: every format into one directory, checked for parity with Keras.

Layout of `output_dir` (`NAME` defaults to `deconvnet`):

    saved_model/NAME/1/         SavedModel for TF Serving (`saved_model.pb`, `variables/`,
                                `export_config.json`)
    saved_model/models.config   TF Serving model config for `saved_model/`
    NAME_float32.tflite         reference TFLite, any CPU or GPU
    NAME_float16.tflite         phone GPUs (the GPU delegate's native precision)
    NAME_dynamic.tflite         CPUs (int8 weights, float activations)
    NAME_int8.tflite            CPUs and NPUs (full integer; uint8 input/output by
                                default, `int8_io`)
    NAME.onnx                   onnxruntime, TensorRT, OpenVINO, ...
    export_config.json          model config, preprocessing, class names, files
    parity.json                 the parity table's rows (see `parity.check_parity`)
    tflite_ops.md               the TFLite files' ops, counted from the files, with
                                the GPU delegate's support (`tflite.format_op_table`)

Every TFLite file carries MediaPipe ImageSegmenter metadata and `labels.txt` (the
class names), so MediaPipe Tasks runs it unchanged. The TFLite files are converted
from one conversion SavedModel (`tflite.conversion_saved_model`); large models are
converted in child processes, so the export's memory stays bounded.

Everything is written into a temporary sibling of `output_dir` that is renamed to
`output_dir` only once every export and the parity check succeeded: a failure leaves
nothing behind.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from keras_deconvnet import atomic_io
from keras_deconvnet.export import model_interface, onnx, parity, saved_model, tflite

FORMATS = (
    "saved_model",
    "tflite_float32",
    "tflite_float16",
    "tflite_dynamic",
    "tflite_int8",
    "onnx",
)


@dataclass
class ExportResult:
    """What `export_all` wrote: `{format: path}`, and the parity report (or `None`)."""

    output_dir: Path
    paths: dict
    report: parity.ParityReport | None


def synthetic_images(
    count: int, image_shape: Sequence[int], seed: int = 0
) -> np.ndarray:
    """Smooth random RGB images in [0, 255] (low-resolution noise, resized bilinearly).

    A stand-in when no real images are given: smoother than white noise, so
    activations have a more natural range, but real images calibrate int8 better.
    """
    height, width = int(image_shape[0]), int(image_shape[1])
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(0, 255, (count, 8, 8, 3)).astype(np.float32)
    images = tf.image.resize(coarse, (height, width), method="bilinear").numpy()
    noise = rng.normal(0, 8, images.shape).astype(np.float32)
    return np.clip(images + noise, 0, 255)


def original_size_images(
    image_shape: Sequence[int], count: int = 4, seed: int = 2
) -> list[np.ndarray]:
    """`count` smooth synthetic RGB images of other sizes than the model's input.

    Sizes cycle through the model size itself, odd up- and down-scaled sizes and a
    different aspect ratio, for the served-vs-local parity row.

    Example:

    >>> [image.shape for image in original_size_images((64, 64), 4)]
    [(64, 64, 3), (127, 97, 3), (49, 83, 3), (107, 79, 3)]
    """
    height, width = int(image_shape[0]), int(image_shape[1])
    sizes = [
        (height, width),
        (2 * height - 1, 3 * width // 2 + 1),
        (3 * height // 4 + 1, 5 * width // 4 + 3),
        (5 * height // 3 + 1, 5 * width // 4 - 1),
    ]
    return [
        synthetic_images(1, sizes[i % len(sizes)], seed=seed + i)[0].round()
        for i in range(count)
    ]


def validate_formats(formats: Iterable[str]) -> tuple[str, ...]:
    """Checks format names and removes duplicates, keeping the order."""
    if isinstance(formats, str):
        formats = [f.strip() for f in formats.split(",") if f.strip()]
    formats = tuple(dict.fromkeys(formats))
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        raise ValueError(
            f"`formats` must be a non-empty list of {', '.join(FORMATS)}. "
            f"Received: formats={list(formats)}"
        )
    return formats


def export_all(
    model: keras.Model,
    output_dir: str | os.PathLike,
    formats: Iterable[str] = FORMATS,
    image_shape: Sequence[int] | None = None,
    name: str = "deconvnet",
    class_names: Sequence[str] | None = None,
    representative_data: np.ndarray | Callable[[], Iterable] | None = None,
    representative_samples: int | None = tflite.DEFAULT_REPRESENTATIVE_SAMPLES,
    opset: int = onnx.DEFAULT_OPSET,
    parity_images: np.ndarray | None = None,
    parity_labels: np.ndarray | None = None,
    thresholds: Mapping[str, float] | None = None,
    check_parity: bool = True,
    latency_runs: int = 5,
    int8_io: str = tflite.DEFAULT_INT8_IO,
    metadata: bool = True,
    original_images: Sequence[np.ndarray] | None = None,
    isolate: bool | None = None,
) -> ExportResult:
    """Exports `model` to every format in `formats` and checks parity with Keras.

    Args:
        model: a segmenter with a preprocessor (`DeconvNetImageSegmenter`, ...):
            its image converter normalises the images inside the exported graph.
        output_dir: the directory to create; it must not exist or be empty.
        formats: names from `FORMATS` (or one comma-separated string).
        image_shape: `(height, width)` to export at; needed when the model's input
            size is not fixed.
        name: the model name: file names and the TF Serving model name.
        class_names: optional class names, recorded in the export configs.
        representative_data: int8 calibration images, RGB [0, 255], an array
            `(N, height, width, 3)` or a callable returning an iterable of batches.
            Defaults to `synthetic_images` (with a warning: real images calibrate
            better).
        representative_samples: the most calibration images to use. Defaults to 100.
        opset: ONNX opset. Defaults to `17`.
        parity_images: RGB [0, 255] images for the parity check; defaults to 4
            `synthetic_images`.
        parity_labels: optional ground truth for `parity_images` (255 = ignore).
        thresholds: minimum label agreement (%) per format, over
            `parity.DEFAULT_THRESHOLDS`.
        check_parity: run `parity.check_parity` and write `parity.json`. Defaults to
            `True`.
        latency_runs: timed runs per format for the latency column. Defaults to 5.
        int8_io: input/output type of the int8 file: `"uint8"` (default: raw
            pixels in, MediaPipe and NPUs), `"int8"` or `"float"`.
        metadata: pack MediaPipe ImageSegmenter metadata and `labels.txt` into every
            TFLite file. Defaults to `True`.
        original_images: RGB images of any sizes for the served-vs-local parity row
            (`saved_model_bytes`); defaults to 4 `original_size_images`.
        isolate: convert TFLite files in child processes; defaults to `True` for
            models over `tflite.ISOLATE_ABOVE_BYTES` of variables.

    Returns:
        An `ExportResult`; `result.report.table` is the parity table.

    Example:

    >>> from keras_deconvnet.models import DeconvNetImageSegmenter
    >>> model = DeconvNetImageSegmenter.from_preset(
    ...     "deconvnet_edge_small", num_classes=3, image_shape=(96, 96, 3))
    >>> images = synthetic_images(4, (96, 96))
    >>> result = export_all(model, "exported", formats=["tflite_int8"],
    ...                     representative_data=images, thresholds={"tflite_int8": 0})
    >>> sorted(result.paths), result.report.rows[1]["integer_ops"]
    (['tflite_int8'], 1.0)
    """
    formats = validate_formats(formats)
    if int8_io not in tflite.INT8_IO:
        raise ValueError(f"`int8_io` must be one of {tflite.INT8_IO}. Received: {int8_io!r}")
    shape, num_classes = model_interface.segmentation_shapes(model, image_shape)
    output_dir = atomic_io.check_new_directory(output_dir, "output directory")
    config = model_interface.export_config(model, shape, num_classes, class_names, name=name)
    if "tflite_int8" in formats:
        if representative_data is None:
            warnings.warn(
                "No `representative_data` given: calibrating int8 on synthetic images. "
                "Pass real images for a faithful int8 model.",
                stacklevel=2,
            )
            count = representative_samples or tflite.DEFAULT_REPRESENTATIVE_SAMPLES
            representative_data = synthetic_images(min(count, 32), shape, seed=1)
        # Fail on a wrong shape before anything is converted or written.
        tflite.representative_dataset(
            representative_data, (1, *shape), representative_samples
        )
    if parity_images is None:
        parity_images = synthetic_images(4, shape, seed=0)
    if original_images is None and "saved_model" in formats:
        original_images = original_size_images(shape)
    final_dir = Path(os.path.abspath(output_dir))
    paths = {}
    report = None
    tflite_formats = [fmt for fmt in formats if fmt.startswith("tflite_")]
    with contextlib.ExitStack() as stack:
        staging = stack.enter_context(atomic_io.staged_directory(output_dir))
        # One conversion SavedModel for every TFLite file (written once, streamed).
        source = stack.enter_context(
            tflite.conversion_saved_model(model, shape[:2])
        ) if tflite_formats else None
        for fmt in formats:
            if fmt == "saved_model":
                base = staging / "saved_model"
                paths[fmt] = saved_model.export_saved_model(
                    model, base, name=name, version=1, image_shape=shape[:2],
                    class_names=class_names, write_models_config=False,
                )
                saved_model.write_model_config(
                    base, base_path_prefix=str(final_dir / "saved_model")
                )
            elif fmt.startswith("tflite_"):
                quantization = fmt.removeprefix("tflite_")
                paths[fmt] = tflite.export_tflite(
                    model, staging / f"{name}_{quantization}.tflite", quantization,
                    metadata=metadata, class_names=class_names,
                    image_shape=shape[:2],
                    representative_data=representative_data,
                    representative_samples=representative_samples,
                    int8_io=int8_io, isolate=isolate, conversion_dir=source,
                )
            else:
                paths[fmt] = onnx.export_onnx(
                    model, staging / f"{name}.onnx", opset=opset, image_shape=shape[:2]
                )
        relative = {fmt: str(path.relative_to(staging)) for fmt, path in paths.items()}
        config["files"] = relative
        config["opset"] = opset if "onnx" in formats else None
        config["tflite"] = {
            "int8_io": int8_io if "tflite_int8" in formats else None,
            "metadata": "MediaPipe ImageSegmenter (labels.txt inside)" if metadata else None,
        }
        atomic_io.write_json(staging / "export_config.json", config)
        if tflite_formats:
            table = tflite.format_op_table(
                {fmt.removeprefix("tflite_"): paths[fmt] for fmt in tflite_formats}
            )
            (staging / "tflite_ops.md").write_text(
                "Ops of the exported TFLite files, counted from the files "
                "(`keras_deconvnet.export.tflite.format_op_table`).\n\n" + table + "\n"
            )
        if check_parity:
            report = parity.check_parity(
                model, paths, parity_images, parity_labels, thresholds,
                runs=latency_runs, original_images=original_images,
            )
            for row in report.rows:
                if row["path"] is not None:  # saved_model_bytes: the SavedModel's
                    row["path"] = relative.get(row["format"], relative.get("saved_model"))
            atomic_io.write_json(staging / "parity.json", report.to_json())
    paths = {fmt: final_dir / rel for fmt, rel in relative.items()}
    return ExportResult(final_dir, paths, report)
