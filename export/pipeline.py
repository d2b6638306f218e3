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
                                the GPU delegate's support
                                (`tflite_inspection.format_op_table`)

Every TFLite file carries MediaPipe ImageSegmenter metadata and `labels.txt` (the
class names), so MediaPipe Tasks runs it unchanged. The TFLite files are converted
from one conversion SavedModel (`tflite_conversion.conversion_saved_model`); large
models are converted in child processes, so the export's memory stays bounded.

What to export and how to check it is an `ExportConfig`; the images (calibration,
parity, original sizes) are `export_all`'s own arguments.

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
from keras_deconvnet.export import model_interface, onnx, parity, saved_model
from keras_deconvnet.export.tflite import export_tflite
from keras_deconvnet.export.tflite_conversion import TFLiteConfig, conversion_saved_model
from keras_deconvnet.export.tflite_inspection import format_op_table
from keras_deconvnet.export.tflite_quantization import (
    DEFAULT_INT8_IO,
    DEFAULT_REPRESENTATIVE_SAMPLES,
    representative_dataset,
)

FORMATS = (
    "saved_model",
    "tflite_float32",
    "tflite_float16",
    "tflite_dynamic",
    "tflite_int8",
    "onnx",
)

# Which file is for which hardware (`deconvnet export` prints it; the README's
# "Phones and edge GPUs" has the measurements behind it).
FILE_PURPOSES = {
    "saved_model": "TF Serving (CPU or GPU servers)",
    "tflite_float32": "reference TFLite; CPUs, and GPUs (runs wholly on the GPU delegate)",
    "tflite_float16": "phone and web GPUs: the GPU delegate's file (MediaPipe delegate GPU)",
    "tflite_dynamic": "CPUs (XNNPACK)",
    "tflite_int8": "CPUs (XNNPACK) and NPUs; not the GPU delegate (uint8 input/output)",
    "onnx": "onnxruntime, TensorRT, OpenVINO",
}


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


@dataclass
class ExportConfig:
    """What `export_all` exports, and how it checks the result.

    Args:
        formats: names from `FORMATS` (or one comma-separated string); duplicates
            are dropped, the order is kept. Defaults to all of them.
        name: the model name: file names and the TF Serving model name. Defaults
            to `"deconvnet"`.
        image_shape: `(height, width)` to export at; needed when the model's input
            size is not fixed.
        class_names: optional class names, recorded in the export configs and the
            TFLite metadata.
        representative_samples: the most int8 calibration images to use; `None`
            for all. Defaults to `100`.
        int8_io: input/output type of the int8 file: `"uint8"` (default: raw
            pixels in, MediaPipe and NPUs), `"int8"` or `"float"`.
        isolate: convert TFLite files in child processes; defaults to `True` for
            models over `tflite_conversion.ISOLATE_ABOVE_BYTES` of variables.
        metadata: pack MediaPipe ImageSegmenter metadata and `labels.txt` into every
            TFLite file. Defaults to `True`.
        opset: ONNX opset. Defaults to `17`.
        check_parity: run `parity.check_parity` and write `parity.json`. Defaults to
            `True`.
        thresholds: minimum label agreement (%) per format, over
            `parity.DEFAULT_THRESHOLDS`.
        latency_runs: timed runs per format for the latency column. Defaults to 5.

    Example:

    >>> config = ExportConfig(formats="tflite_int8,onnx", thresholds={"tflite_int8": 85})
    >>> config.formats
    ('tflite_int8', 'onnx')
    """

    formats: Sequence[str] | str = FORMATS
    name: str = "deconvnet"
    image_shape: Sequence[int] | None = None
    class_names: Sequence[str] | None = None
    representative_samples: int | None = DEFAULT_REPRESENTATIVE_SAMPLES
    int8_io: str = DEFAULT_INT8_IO
    isolate: bool | None = None
    metadata: bool = True
    opset: int = onnx.DEFAULT_OPSET
    check_parity: bool = True
    thresholds: Mapping[str, float] | None = None
    latency_runs: int = 5

    def __post_init__(self) -> None:
        self.formats = validate_formats(self.formats)
        saved_model.check_model_name(self.name)
        if "onnx" in self.formats:
            onnx.check_opset(self.opset)
        if (
            isinstance(self.latency_runs, bool)
            or not isinstance(self.latency_runs, int)
            or self.latency_runs < 1
        ):
            raise ValueError(
                f"`latency_runs` must be a positive int. Received: {self.latency_runs!r}"
            )
        # The TFLite and parity settings are checked by their own configs.
        self.class_names = self.tflite_config().class_names
        self.parity_config()

    def tflite_config(self, image_shape: Sequence[int] | None = None) -> TFLiteConfig:
        """The `TFLiteConfig` every TFLite file of the export is converted with."""
        return TFLiteConfig(
            image_shape=image_shape,
            representative_samples=self.representative_samples,
            int8_io=self.int8_io,
            isolate=self.isolate,
            metadata=self.metadata,
            class_names=self.class_names,
        )

    def parity_config(self) -> parity.ParityConfig:
        """The `ParityConfig` of the parity check."""
        return parity.ParityConfig(thresholds=self.thresholds, runs=self.latency_runs)


@dataclass
class _ExportData:
    """The images of an export: int8 calibration, parity check, original sizes."""

    representative: np.ndarray | Callable[[], Iterable] | None
    parity_images: np.ndarray
    parity_labels: np.ndarray | None
    original_images: Sequence[np.ndarray] | None

    @classmethod
    def with_defaults(
        cls,
        config: ExportConfig,
        shape: tuple[int, int, int],
        representative: np.ndarray | Callable[[], Iterable] | None,
        parity_images: np.ndarray | None,
        parity_labels: np.ndarray | None,
        original_images: Sequence[np.ndarray] | None,
    ) -> _ExportData:
        """Synthetic images where none are given; calibration images validated."""
        if "tflite_int8" in config.formats:
            if representative is None:
                warnings.warn(
                    "No `representative_data` given: calibrating int8 on synthetic "
                    "images. Pass real images for a faithful int8 model.",
                    stacklevel=3,
                )
                count = config.representative_samples or DEFAULT_REPRESENTATIVE_SAMPLES
                representative = synthetic_images(min(count, 32), shape, seed=1)
            # Fail on a wrong shape before anything is converted or written.
            representative_dataset(representative, (1, *shape), config.representative_samples)
        if parity_images is None:
            parity_images = synthetic_images(4, shape, seed=0)
        if original_images is None and "saved_model" in config.formats:
            original_images = original_size_images(shape)
        return cls(representative, parity_images, parity_labels, original_images)


@dataclass
class _ExportJob:
    """One `export_all` call: every step writes into `staging`."""

    model: keras.Model
    config: ExportConfig
    shape: tuple[int, int, int]
    data: _ExportData
    staging: Path
    final_dir: Path
    conversion_dir: Path | None

    def export_format(self, fmt: str) -> Path:
        if fmt == "saved_model":
            return self.export_saved_model()
        if fmt.startswith("tflite_"):
            return self.export_tflite(fmt.removeprefix("tflite_"))
        return self.export_onnx()

    def export_saved_model(self) -> Path:
        base = self.staging / "saved_model"
        path = saved_model.export_saved_model(
            self.model, base, name=self.config.name, version=1, image_shape=self.shape[:2],
            class_names=self.config.class_names, write_models_config=False,
        )
        saved_model.write_model_config(base)  # container paths: /models/NAME
        return path

    def export_tflite(self, quantization: str) -> Path:
        return export_tflite(
            self.model, self.staging / f"{self.config.name}_{quantization}.tflite",
            quantization, self.config.tflite_config(self.shape[:2]),
            representative_data=self.data.representative,
            conversion_dir=self.conversion_dir,
        )

    def export_onnx(self) -> Path:
        return onnx.export_onnx(
            self.model, self.staging / f"{self.config.name}.onnx", opset=self.config.opset,
            image_shape=self.shape[:2], class_names=self.config.class_names,
        )

    def write_export_config(self, export_config: dict, relative: dict[str, str]) -> None:
        formats = self.config.formats
        export_config["files"] = relative
        export_config["opset"] = self.config.opset if "onnx" in formats else None
        export_config["tflite"] = {
            "int8_io": self.config.int8_io if "tflite_int8" in formats else None,
            "metadata": "MediaPipe ImageSegmenter (labels.txt inside)"
            if self.config.metadata else None,
        }
        atomic_io.write_json(self.staging / "export_config.json", export_config)

    def write_op_table(self, paths: dict[str, Path]) -> None:
        tflite_formats = [fmt for fmt in self.config.formats if fmt.startswith("tflite_")]
        if not tflite_formats:
            return
        table = format_op_table(
            {fmt.removeprefix("tflite_"): paths[fmt] for fmt in tflite_formats}
        )
        (self.staging / "tflite_ops.md").write_text(
            "Ops of the exported TFLite files, counted from the files "
            "(`keras_deconvnet.export.tflite_inspection.format_op_table`).\n\n"
            + table + "\n"
        )

    def check_parity(
        self, paths: dict[str, Path], relative: dict[str, str]
    ) -> parity.ParityReport:
        report = parity.check_parity(
            self.model, paths, self.data.parity_images, self.data.parity_labels,
            self.config.parity_config(), original_images=self.data.original_images,
        )
        for row in report.rows:
            if row["path"] is not None:  # saved_model_bytes: the SavedModel's
                row["path"] = relative.get(row["format"], relative.get("saved_model"))
        atomic_io.write_json(self.staging / "parity.json", report.to_json())
        return report


def export_all(
    model: keras.Model,
    output_dir: str | os.PathLike,
    config: ExportConfig | None = None,
    *,
    representative_data: np.ndarray | Callable[[], Iterable] | None = None,
    parity_images: np.ndarray | None = None,
    parity_labels: np.ndarray | None = None,
    original_images: Sequence[np.ndarray] | None = None,
) -> ExportResult:
    """Exports `model` to every format of `config` and checks parity with Keras.

    Args:
        model: a segmenter with a preprocessor (`DeconvNetImageSegmenter`, ...):
            its image converter normalises the images inside the exported graph.
        output_dir: the directory to create; it must not exist or be empty.
        config: the formats, names, TFLite and parity settings (`ExportConfig`);
            defaults to `ExportConfig()` (every format).
        representative_data: int8 calibration images, RGB [0, 255], an array
            `(N, height, width, 3)` or a callable returning an iterable of batches.
            Defaults to `synthetic_images` (with a warning: real images calibrate
            better).
        parity_images: RGB [0, 255] images for the parity check; defaults to 4
            `synthetic_images`.
        parity_labels: optional ground truth for `parity_images` (255 = ignore).
        original_images: RGB images of any sizes for the served-vs-local parity row
            (`saved_model_bytes`); defaults to 4 `original_size_images`.

    Returns:
        An `ExportResult`; `result.report.table` is the parity table.

    Example:

    >>> from keras_deconvnet.models import DeconvNetImageSegmenter
    >>> model = DeconvNetImageSegmenter.from_preset(
    ...     "deconvnet_edge_small", num_classes=3, image_shape=(96, 96, 3))
    >>> images = synthetic_images(4, (96, 96))
    >>> config = ExportConfig(formats=["tflite_int8"], thresholds={"tflite_int8": 0})
    >>> result = export_all(model, "exported", config, representative_data=images)
    >>> sorted(result.paths), result.report.rows[1]["integer_ops"]
    (['tflite_int8'], 1.0)
    """
    config = config or ExportConfig()
    shape, num_classes = model_interface.segmentation_shapes(model, config.image_shape)
    output_dir = atomic_io.check_new_directory(output_dir, "output directory")
    export_config = model_interface.export_config(
        model, shape, num_classes, config.class_names, name=config.name
    )
    data = _ExportData.with_defaults(
        config, shape, representative_data, parity_images, parity_labels, original_images
    )
    final_dir = Path(os.path.abspath(output_dir))
    report = None
    with contextlib.ExitStack() as stack:
        staging = stack.enter_context(atomic_io.staged_directory(output_dir))
        # One conversion SavedModel for every TFLite file (written once, streamed).
        conversion_dir = None
        if any(fmt.startswith("tflite_") for fmt in config.formats):
            conversion_dir = stack.enter_context(conversion_saved_model(model, shape[:2]))
        job = _ExportJob(model, config, shape, data, staging, final_dir, conversion_dir)
        paths = {fmt: job.export_format(fmt) for fmt in config.formats}
        relative = {fmt: str(path.relative_to(staging)) for fmt, path in paths.items()}
        job.write_export_config(export_config, relative)
        job.write_op_table(paths)
        if config.check_parity:
            report = job.check_parity(paths, relative)
    paths = {fmt: final_dir / rel for fmt, rel in relative.items()}
    return ExportResult(final_dir, paths, report)
