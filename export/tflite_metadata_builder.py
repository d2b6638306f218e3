"""The `ModelMetadata` flatbuffer of an image segmenter, and what it describes.

`ImageSegmenterMetadata` holds what the metadata says (labels, normalisation, names,
what the output holds); `build_segmenter_metadata` writes it as the
`metadata_schema.fbs` tables MediaPipe Tasks' ImageSegmenter and the TFLite Task
Library read, for the model's input tensor:

- input 0 as an RGB image (`ImageProperties`, its size when static) with
  `NormalizationOptions{mean, std}` and its value range as `Stats`;
- the output as per-class grayscale masks (`ImageProperties` GRAYSCALE, content
  dimensions 1..2) with `labels.txt` as its `TENSOR_AXIS_LABELS` file (a
  `TENSOR_VALUE_LABELS` file for a class-index output);
- the `SEGMENTER_METADATA` custom metadata of subgraph 0 (an
  `image_segmenter_metadata_schema.fbs` `ImageSegmenterOptions` flatbuffer), whose
  activation tells MediaPipe what the output holds: NONE for probabilities, SOFTMAX
  for logits.

Example:

>>> from keras_deconvnet.export.tflite_flatbuffer import TENSOR_FLOAT32, TensorInfo
>>> image = TensorInfo("images", (1, 8, 8, 3), None, TENSOR_FLOAT32, (), ())
>>> metadata = build_segmenter_metadata(ImageSegmenterMetadata(labels=["a", "b"]), image)
>>> metadata[4:8]
b'M001'
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import flatbuffers

from keras_deconvnet.export.tflite_flatbuffer import (
    ACTIVATION_SOFTMAX,
    BASE_PARSER_VERSION,
    COLOR_GRAYSCALE,
    COLOR_RGB,
    CONTENT_IMAGE_PROPERTIES,
    CUSTOM_METADATA_PARSER_VERSION,
    FILE_TENSOR_AXIS_LABELS,
    FILE_TENSOR_VALUE_LABELS,
    LABELS_FILE_NAME,
    METADATA_FILE_IDENTIFIER,
    OPTIONS_NORMALIZATION,
    SEGMENTER_METADATA_NAME,
    SEGMENTER_OPTIONS_FILE_IDENTIFIER,
    SEGMENTER_OPTIONS_PARSER_VERSION,
    TENSOR_FLOAT32,
    TENSOR_UINT8,
    TensorInfo,
    write_aligned_bytes,
    write_floats,
    write_offsets,
    write_string,
    write_table,
)

OUTPUT_TYPES = ("probabilities", "logits", "category_mask")
OutputType = Literal["probabilities", "logits", "category_mask"]
# The SEGMENTER_METADATA activation of each output type MediaPipe can use (a
# category mask output gets no segmenter options).
ACTIVATION_FOR_OUTPUT = {"probabilities": 0, "logits": ACTIVATION_SOFTMAX}

_OUTPUT_DESCRIPTIONS = {
    "probabilities": "Per-pixel class probabilities (softmax), one channel per class.",
    "logits": "Per-pixel class logits (softmax not applied), one channel per class.",
    "category_mask": "Per-pixel class index.",
}


def _channels(values: Sequence[float], name: str) -> tuple[float, ...]:
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
        raise ValueError(f"`{name}` must be a sequence of 1 or 3 floats. Received: {values!r}")
    result = tuple(float(v) for v in values)
    if len(result) not in (1, 3) or not all(math.isfinite(v) for v in result):
        raise ValueError(
            f"`{name}` must hold 1 or 3 finite floats (one per RGB channel). "
            f"Received: {values!r}"
        )
    return result


@dataclass
class ImageSegmenterMetadata:
    """What the TFLite metadata of an image segmenter says about the model.

    Normalisation follows the metadata schema: a consumer feeds
    `(pixel - mean) / std` for pixels 0..255 to a float input. Files that take raw
    [0, 255] pixels (this package's exports, which normalise inside the graph) use
    the defaults mean 0, std 1. Quantized models keep the float model's values: for
    a uint8 input MediaPipe ignores them and feeds raw pixels, which the input's
    quantization must map to the same values.

    Args:
        labels: class names; `labels[i]` names output channel `i` (or class index
            `i` for `output_type="category_mask"`). Written one per line.
        input_mean: 1 or 3 (RGB) means. Defaults to `(0.0,)`.
        input_std: 1 or 3 (RGB) standard deviations. Defaults to `(1.0,)`.
        name: model name.
        description: model description.
        version: model version (e.g. the package version); left out when empty.
        author: left out when empty.
        license: left out when empty.
        output_type: what the (last) output holds: `"probabilities"` (default),
            `"logits"`, or `"category_mask"` (class indices; the labels are then a
            `TENSOR_VALUE_LABELS` file and MediaPipe cannot use the file).

    Example:

    >>> ImageSegmenterMetadata(labels=["sky", "sea"], input_mean=[127.5]).input_mean
    (127.5,)
    """

    labels: Sequence[str]
    input_mean: Sequence[float] = (0.0,)
    input_std: Sequence[float] = (1.0,)
    name: str = "DeconvNet"
    description: str = "Semantic segmentation: per-pixel class scores of an RGB image."
    version: str = ""
    author: str = ""
    license: str = ""
    output_type: OutputType = "probabilities"

    def __post_init__(self) -> None:
        if self.output_type not in OUTPUT_TYPES:
            raise ValueError(
                f"`output_type` must be one of {OUTPUT_TYPES}. Received: {self.output_type!r}"
            )
        if isinstance(self.labels, (str, bytes)) or not self.labels:
            raise ValueError(
                f"`labels` must be a non-empty sequence of strings. Received: {self.labels!r}"
            )
        self.labels = tuple(str(label) for label in self.labels)
        for label in self.labels:
            # labels.txt is split on line breaks; an empty last line is dropped.
            if not label or "\n" in label or "\r" in label:
                raise ValueError(f"Labels must be non-empty and on one line. Received: {label!r}")
        self.input_mean = _channels(self.input_mean, "input_mean")
        self.input_std = _channels(self.input_std, "input_std")
        if len(self.input_mean) != len(self.input_std):
            raise ValueError(
                "`input_mean` and `input_std` must have as many values. "
                f"Received: {self.input_mean}, {self.input_std}"
            )
        if any(s == 0 for s in self.input_std):
            raise ValueError(f"`input_std` must not be 0. Received: {self.input_std}")

    @property
    def category_mask(self) -> bool:
        """Whether the output holds class indices rather than per-class scores."""
        return self.output_type == "category_mask"

    def labels_file(self) -> bytes:
        """The contents of `labels.txt`: one label per line."""
        return "".join(label + "\n" for label in self.labels).encode("utf-8")


def _segmenter_options(activation: int) -> bytes:
    # ImageSegmenterOptions: activation 0 (byte), min_parser_version 1 (string).
    builder = flatbuffers.Builder(64)
    version = builder.CreateString(SEGMENTER_OPTIONS_PARSER_VERSION)
    options = write_table(builder, [(0, "b", activation or None), (1, "o", version)])
    builder.Finish(options, file_identifier=SEGMENTER_OPTIONS_FILE_IDENTIFIER)
    return bytes(builder.Output())


def _input_stats(
    metadata: ImageSegmenterMetadata, image: TensorInfo
) -> tuple[list[float], list[float]] | None:
    # The range of the values the model receives, as MediaPipe's own writer records
    # it: raw pixels for uint8, the normalised [0, 255] range for float32.
    if image.type == TENSOR_UINT8:
        return [0.0], [255.0]
    if image.type == TENSOR_FLOAT32:
        pairs = list(zip(metadata.input_mean, metadata.input_std))
        return [(0.0 - m) / s for m, s in pairs], [(255.0 - m) / s for m, s in pairs]
    return None


def _static_size(tensor: TensorInfo) -> tuple[int, int] | None:
    dims = tensor.shape_signature if tensor.shape_signature is not None else tensor.shape
    if len(dims) == 4 and dims[1] > 0 and dims[2] > 0:
        return dims[2], dims[1]
    return None


def _input_tensor_metadata(
    builder: flatbuffers.Builder, metadata: ImageSegmenterMetadata, image: TensorInfo
) -> int:
    """TensorMetadata{name 0, description 1, dimension_names 2, content 3,
    process_units 4, stats 5, associated_files 6} of the input image."""
    size = _static_size(image)
    default_size = None
    if size is not None:  # ImageSize: width 0, height 1 (uint).
        default_size = write_table(builder, [(0, "I", size[0]), (1, "I", size[1])])
    # ImageProperties: color_space 0 (byte), default_size 1.
    image_properties = write_table(builder, [(0, "b", COLOR_RGB), (1, "o", default_size)])
    # Content: content_properties_type 0 (byte), content_properties 1, range 2.
    content = write_table(
        builder,
        [(0, "b", CONTENT_IMAGE_PROPERTIES), (1, "o", image_properties), (2, "o", None)],
    )
    # NormalizationOptions: mean 0, std 1 ([float]). ProcessUnit: options_type 0,
    # options 1.
    normalization = write_table(
        builder,
        [
            (0, "o", write_floats(builder, metadata.input_mean)),
            (1, "o", write_floats(builder, metadata.input_std)),
        ],
    )
    process_unit = write_table(
        builder, [(0, "b", OPTIONS_NORMALIZATION), (1, "o", normalization)]
    )
    stats = None
    stats_values = _input_stats(metadata, image)
    if stats_values is not None:  # Stats: max 0, min 1 ([float]) -- max first.
        minimum, maximum = stats_values
        stats = write_table(
            builder,
            [(0, "o", write_floats(builder, maximum)), (1, "o", write_floats(builder, minimum))],
        )
    return write_table(
        builder,
        [
            (0, "o", write_string(builder, "image")),
            (1, "o", write_string(builder, "Input image to be segmented: RGB, pixels 0..255.")),
            (3, "o", content),
            (4, "o", write_offsets(builder, [process_unit])),
            (5, "o", stats),
        ],
    )


def _output_tensor_metadata(builder: flatbuffers.Builder, output_type: str) -> int:
    """The output's TensorMetadata: a stack of per-class grayscale score maps."""
    # ValueRange{min 0, max 1} (int): dimensions 1..2 are the image, as MediaPipe's
    # SegmentationMaskMd writes.
    mask_properties = write_table(builder, [(0, "b", COLOR_GRAYSCALE), (1, "o", None)])
    value_range = write_table(builder, [(0, "i", 1), (1, "i", 2)])
    content = write_table(
        builder,
        [(0, "b", CONTENT_IMAGE_PROPERTIES), (1, "o", mask_properties), (2, "o", value_range)],
    )
    category_mask = output_type == "category_mask"
    labels_description = (
        "Class names, one per line: line i names class i."
        if category_mask
        else "Class names, one per line: line i names channel i of the output."
    )
    # AssociatedFile: name 0, description 1, type 2 (byte), locale 3, version 4. No
    # locale: MediaPipe would read a file whose locale matches
    # `display_names_locale` ("en") as display names.
    labels_file = write_table(
        builder,
        [
            (0, "o", write_string(builder, LABELS_FILE_NAME)),
            (1, "o", write_string(builder, labels_description)),
            (2, "b", FILE_TENSOR_VALUE_LABELS if category_mask else FILE_TENSOR_AXIS_LABELS),
        ],
    )
    return write_table(
        builder,
        [
            (0, "o", write_string(builder, "segmentation_masks")),
            (1, "o", write_string(builder, _OUTPUT_DESCRIPTIONS[output_type])),
            (3, "o", content),
            (6, "o", write_offsets(builder, [labels_file])),
        ],
    )


def _custom_metadata(builder: flatbuffers.Builder, output_type: str) -> int | None:
    """The `[CustomMetadata]` vector holding the segmenter options, if any."""
    if output_type not in ACTIVATION_FOR_OUTPUT:
        return None
    # CustomMetadata: name 0, data 1 ([ubyte], force_align 16), holding an
    # ImageSegmenterOptions flatbuffer.
    options = _segmenter_options(ACTIVATION_FOR_OUTPUT[output_type])
    name = write_string(builder, SEGMENTER_METADATA_NAME)
    data = write_aligned_bytes(builder, options)
    return write_offsets(builder, [write_table(builder, [(0, "o", name), (1, "o", data)])])


def build_segmenter_metadata(metadata: ImageSegmenterMetadata, image: TensorInfo) -> bytes:
    """The `ModelMetadata` flatbuffer (metadata_schema.fbs) of an image segmenter.

    Args:
        metadata: what to write.
        image: the model's input tensor (its size and type give the default image
            size and the input's value range).

    Returns:
        The flatbuffer (file identifier `M001`), for `populate_metadata`.
    """
    builder = flatbuffers.Builder(1024)
    input_metadata = _input_tensor_metadata(builder, metadata, image)
    output_metadata = _output_tensor_metadata(builder, metadata.output_type)
    custom = _custom_metadata(builder, metadata.output_type)
    # SubGraphMetadata: name 0, description 1, input_tensor_metadata 2,
    # output_tensor_metadata 3, associated_files 4, input_process_units 5,
    # output_process_units 6, input_tensor_groups 7, output_tensor_groups 8,
    # custom_metadata 9.
    subgraph = write_table(
        builder,
        [
            (2, "o", write_offsets(builder, [input_metadata])),
            (3, "o", write_offsets(builder, [output_metadata])),
            (9, "o", custom),
        ],
    )
    # The largest "Added in" version of the fields written (metadata_schema.fbs).
    parser_version = CUSTOM_METADATA_PARSER_VERSION if custom else BASE_PARSER_VERSION
    # ModelMetadata: name 0, description 1, version 2, subgraph_metadata 3, author 4,
    # license 5, associated_files 6, min_parser_version 7.
    root = write_table(
        builder,
        [
            (0, "o", write_string(builder, metadata.name)),
            (1, "o", write_string(builder, metadata.description)),
            (2, "o", write_string(builder, metadata.version)),
            (3, "o", write_offsets(builder, [subgraph])),
            (4, "o", write_string(builder, metadata.author)),
            (5, "o", write_string(builder, metadata.license)),
            (7, "o", write_string(builder, parser_version)),
        ],
    )
    builder.Finish(root, file_identifier=METADATA_FILE_IDENTIFIER)
    return bytes(builder.Output())
