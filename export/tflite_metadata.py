"""TFLite model metadata for MediaPipe Tasks' ImageSegmenter, without tflite-support.

MediaPipe Tasks (`mediapipe.tasks.python.vision.ImageSegmenter`) and the TFLite Task
Library read *TFLite model metadata*: a `ModelMetadata` flatbuffer (schema
`metadata_schema.fbs`, file identifier `M001`) stored in one of the model's buffers and
named by a `Metadata{name: "TFLITE_METADATA", buffer: i}` entry of the TFLite `Model`
table, plus associated files (here `labels.txt`) packed as an uncompressed zip archive
appended to the flatbuffer. The usual writer, `tflite-support`, pins protobuf<4 and
cannot be installed next to TensorFlow 2.21; the writer inside the `mediapipe` wheel
(1.2.3) imports a native module the wheel does not ship. This module writes the few
tables an image segmenter needs with the `flatbuffers` Python runtime, following the
published schemas:

- `metadata_schema.fbs` for `ModelMetadata` and its tables: tensorflow/tflite-support
  `tensorflow_lite_support/metadata/metadata_schema.fbs`, and the copy MediaPipe
  ships as `mediapipe/tasks/metadata/metadata_schema.fbs` (schema version 1.5.0,
  fields only ever appended, same file identifier `M001`);
- `mediapipe/tasks/metadata/image_segmenter_metadata_schema.fbs` (file identifier
  `V001`) for the `ImageSegmenterOptions` custom metadata, which tells MediaPipe
  which activation to apply to the output;
- `schema.fbs` (tensorflow/tensorflow `tensorflow/lite/schema/schema.fbs`, LiteRT
  `tflite/converter/schema/schema.fbs`, file identifier `TFL3`) for the `Model`,
  `Buffer`, `Metadata`, `SubGraph`, `Operator` and `Tensor` tables.

Field slots are the declaration order of each table, a union taking two slots (its
`_type` byte first). The module reads flatbuffers with a small reader of its own and
never imports TensorFlow.

What MediaPipe's ImageSegmenter requires (google-ai-edge/mediapipe,
`tasks/cc/vision/image_segmenter/image_segmenter_graph.cc`,
`tasks/cc/vision/utils/image_tensor_specs.cc`,
`tasks/cc/components/processors/image_preprocessing_graph.cc`,
`tasks/cc/vision/image_segmenter/calculators/tensors_to_segmentation_calculator.cc`,
`tasks/cc/metadata/metadata_extractor.cc`; checked with mediapipe 1.2.3):

- a valid `Model` flatbuffer with one subgraph; input 0 of shape `(1, H, W, 3)` and
  type float32 or uint8 (int8 inputs are refused); if the input metadata has
  `ImageProperties`, their colour space is RGB;
- a float32 input needs `NormalizationOptions` with 1 or 3 values, all channels
  equal (per-channel values are "Unimplemented"): the image is mapped from [0, 255]
  by `(pixel - mean) / std`. A uint8 input gets the raw pixels 0..255 and the
  normalisation options are ignored, so the input's quantization must itself
  encode them: `scale == 1 / std`, `zero_point == mean`;
- the last output holds `(1, h, w, classes)` scores, float32 or uint8/int8 (which
  MediaPipe dequantizes); the first `TENSOR_AXIS_LABELS` file of the last output
  tensor's metadata gives the label names (`segmenter.labels`), one per line;
- the `SEGMENTER_METADATA` custom metadata of subgraph 0 sets the activation: NONE
  (the default, scores used as they are), SIGMOID or SOFTMAX, applied to the
  confidence masks only;
- masks come back at the input image's size: the confidence masks resized with
  OpenCV's bilinear `cv2.resize`, the category mask the argmax of the scores
  interpolated corner-aligned (one channel: 0 where `score > 0.5`, else 255), so
  for an output smaller than the input it is not exactly the argmax of the
  confidence masks;
- associated files are stored uncompressed (`ZIP_STORED`): MediaPipe reads them in
  place.

`image_segmenter_issues` checks a file against these rules.

Example:

>>> import zipfile, io
>>> import tensorflow as tf
>>> softmax = tf.function(
...     tf.nn.softmax, input_signature=[tf.TensorSpec([1, 8, 8, 3], tf.float32)])
>>> flatbuffer = tf.lite.TFLiteConverter.from_concrete_functions(
...     [softmax.get_concrete_function()], tf.Module()).convert()
>>> model = add_image_segmenter_metadata(flatbuffer, labels=["sky", "sea", "sand"])
>>> read_metadata(model)["subgraph_metadata"][0]["custom_metadata"][0]["data"]
{'activation': 'NONE', 'min_parser_version': '1.0.0'}
>>> zipfile.ZipFile(io.BytesIO(model)).read("labels.txt")
b'sky\\nsea\\nsand\\n'
"""

from __future__ import annotations

import io
import math
import struct
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import flatbuffers

__all__ = [
    "LABELS_FILE_NAME",
    "METADATA_BUFFER_NAME",
    "OUTPUT_TYPES",
    "SEGMENTER_METADATA_NAME",
    "add_image_segmenter_metadata",
    "image_segmenter_issues",
    "populate_metadata",
    "read_metadata",
]

# --- Identifiers and names fixed by the schemas and by MediaPipe ----------------------

TFLITE_FILE_IDENTIFIER = b"TFL3"  # schema.fbs: file_identifier "TFL3"
METADATA_FILE_IDENTIFIER = b"M001"  # metadata_schema.fbs: file_identifier "M001"
SEGMENTER_OPTIONS_FILE_IDENTIFIER = b"V001"  # image_segmenter_metadata_schema.fbs
# The Model.metadata entry MediaPipe and the Task Library look for (metadata_extractor.cc).
METADATA_BUFFER_NAME = "TFLITE_METADATA"
# The SubGraphMetadata.custom_metadata name image_segmenter_graph.cc looks for.
SEGMENTER_METADATA_NAME = "SEGMENTER_METADATA"
LABELS_FILE_NAME = "labels.txt"

OUTPUT_TYPES = ("probabilities", "logits", "category_mask")
OutputType = Literal["probabilities", "logits", "category_mask"]

# --- metadata_schema.fbs enums -------------------------------------------------------

_ASSOCIATED_FILE_TYPES = (
    "UNKNOWN", "DESCRIPTIONS", "TENSOR_AXIS_LABELS", "TENSOR_VALUE_LABELS",
    "TENSOR_AXIS_SCORE_CALIBRATION", "VOCABULARY", "SCANN_INDEX_FILE",
)
_TENSOR_AXIS_LABELS = 2
_TENSOR_VALUE_LABELS = 3
_COLOR_SPACES = ("UNKNOWN", "RGB", "GRAYSCALE")
_RGB, _GRAYSCALE = 1, 2
# union ContentProperties (0 is NONE).
_CONTENT_PROPERTIES = (
    "NONE", "FeatureProperties", "ImageProperties", "BoundingBoxProperties",
    "AudioProperties",
)
_IMAGE_PROPERTIES = 2
# union ProcessUnitOptions (0 is NONE).
_PROCESS_UNIT_OPTIONS = (
    "NONE", "NormalizationOptions", "ScoreCalibrationOptions",
    "ScoreThresholdingOptions", "BertTokenizerOptions",
    "SentencePieceTokenizerOptions", "RegexTokenizerOptions",
)
_NORMALIZATION_OPTIONS = 1
_BOUNDING_BOX_TYPES = ("UNKNOWN", "BOUNDARIES", "UPPER_LEFT", "CENTER")
_COORDINATE_TYPES = ("RATIO", "PIXEL")
_SCORE_TRANSFORMATIONS = ("IDENTITY", "LOG", "INVERSE_LOGISTIC")
# image_segmenter_metadata_schema.fbs: enum Activation : byte.
_ACTIVATIONS = ("NONE", "SIGMOID", "SOFTMAX")
_ACTIVATION_FOR_OUTPUT = {"probabilities": 0, "logits": 2}

# --- schema.fbs enums ----------------------------------------------------------------

_TENSOR_TYPES = (
    "FLOAT32", "FLOAT16", "INT32", "UINT8", "INT64", "STRING", "BOOL", "INT16",
    "COMPLEX64", "INT8", "FLOAT64", "COMPLEX128", "UINT64", "RESOURCE", "VARIANT",
    "UINT32", "UINT16", "INT4", "BFLOAT16", "INT2", "UINT4", "FLOAT8_E4M3FN",
    "FLOAT8_E5M2",
)
_FLOAT32, _UINT8, _INT8 = 0, 3, 9

# Model (schema.fbs): version 0 (uint), then offsets: operator_codes 1, subgraphs 2,
# description 3, buffers 4, metadata_buffer 5, metadata 6, signature_defs 7,
# external_buffer_groups 8, external_buffers 9.
_MODEL_SLOTS = 10
_MODEL_VERSION, _MODEL_SUBGRAPHS, _MODEL_BUFFERS, _MODEL_METADATA = 0, 2, 4, 6

# Where schema.fbs names a minimum parser version for a metadata field we write
# (metadata_schema.fbs: "Added in: 1.5.0" for SubGraphMetadata.custom_metadata).
_BASE_PARSER_VERSION = "1.0.0"
_CUSTOM_METADATA_PARSER_VERSION = "1.5.0"
_SEGMENTER_OPTIONS_PARSER_VERSION = "1.0.0"

# Buffer.data and CustomMetadata.data are declared `(force_align: 16)`.
_ALIGNMENT = 16


# --- A minimal flatbuffers reader ----------------------------------------------------


class _Table:
    """Read access to one flatbuffer table: fields by slot (declaration order)."""

    __slots__ = ("buf", "pos", "_vtable", "_vtable_size")

    def __init__(self, buf: memoryview, pos: int) -> None:
        self.buf = buf
        self.pos = pos
        # The table starts with a signed offset back to its vtable: [vtable size in
        # bytes, table size, then one uint16 field offset per slot].
        self._vtable = pos - struct.unpack_from("<i", buf, pos)[0]
        self._vtable_size = struct.unpack_from("<H", buf, self._vtable)[0]

    @property
    def num_slots(self) -> int:
        return (self._vtable_size - 4) // 2

    def field(self, slot: int) -> int:
        """Absolute position of the field's value, 0 if absent (default value)."""
        entry = 4 + 2 * slot
        if entry >= self._vtable_size:
            return 0
        offset = struct.unpack_from("<H", self.buf, self._vtable + entry)[0]
        return self.pos + offset if offset else 0

    def scalar(self, slot: int, fmt: str, default: Any = 0) -> Any:
        position = self.field(slot)
        return struct.unpack_from("<" + fmt, self.buf, position)[0] if position else default

    def target(self, slot: int) -> int:
        """Absolute position of the string/vector/table an offset field points to."""
        # They are stored as a uoffset, relative to the field itself.
        position = self.field(slot)
        return position + struct.unpack_from("<I", self.buf, position)[0] if position else 0

    def string(self, slot: int) -> str | None:
        position = self.target(slot)
        if not position:
            return None
        length = struct.unpack_from("<I", self.buf, position)[0]
        return bytes(self.buf[position + 4 : position + 4 + length]).decode("utf-8")

    def table(self, slot: int) -> _Table | None:
        position = self.target(slot)
        return _Table(self.buf, position) if position else None

    def _vector(self, slot: int) -> tuple[int, int] | None:
        position = self.target(slot)
        if not position:
            return None
        return position + 4, struct.unpack_from("<I", self.buf, position)[0]

    def table_positions(self, slot: int) -> list[int] | None:
        vector = self._vector(slot)
        if vector is None:
            return None
        start, length = vector
        return [
            start + 4 * i + struct.unpack_from("<I", self.buf, start + 4 * i)[0]
            for i in range(length)
        ]

    def tables(self, slot: int) -> list[_Table] | None:
        positions = self.table_positions(slot)
        return None if positions is None else [_Table(self.buf, p) for p in positions]

    def scalars(self, slot: int, fmt: str) -> list | None:
        vector = self._vector(slot)
        if vector is None:
            return None
        start, length = vector
        return list(struct.unpack_from(f"<{length}{fmt}", self.buf, start))

    def byte_vector(self, slot: int) -> bytes | None:
        vector = self._vector(slot)
        if vector is None:
            return None
        start, length = vector
        return bytes(self.buf[start : start + length])

    def strings(self, slot: int) -> list[str] | None:
        positions = self.table_positions(slot)  # a vector of offsets, like tables
        if positions is None:
            return None
        return [
            bytes(self.buf[p + 4 : p + 4 + struct.unpack_from("<I", self.buf, p)[0]]).decode(
                "utf-8"
            )
            for p in positions
        ]


def _root(buf: memoryview, identifier: bytes, what: str) -> _Table:
    if len(buf) < 8 or bytes(buf[4:8]) != identifier:
        raise ValueError(
            f"Not a {what}: expected the flatbuffer file identifier {identifier!r}."
        )
    return _Table(buf, struct.unpack_from("<I", buf, 0)[0])


# --- The TFLite model: tensors, metadata entries, packed files -----------------------


@dataclass(frozen=True)
class _TensorInfo:
    name: str
    shape: tuple[int, ...]
    shape_signature: tuple[int, ...] | None
    type: int
    scale: tuple[float, ...]
    zero_point: tuple[int, ...]

    @property
    def type_name(self) -> str:
        return _TENSOR_TYPES[self.type] if self.type < len(_TENSOR_TYPES) else str(self.type)


def _tensor_info(tensor: _Table) -> _TensorInfo:
    # Tensor (schema.fbs): shape 0, type 1, buffer 2, name 3, quantization 4, ...,
    # shape_signature 7. QuantizationParameters: min 0, max 1, scale 2, zero_point 3.
    quantization = tensor.table(4)
    shape_signature = tensor.scalars(7, "i")
    return _TensorInfo(
        name=tensor.string(3) or "",
        shape=tuple(tensor.scalars(0, "i") or ()),
        shape_signature=None if shape_signature is None else tuple(shape_signature),
        type=tensor.scalar(1, "b", 0),
        scale=tuple(quantization.scalars(2, "f") or ()) if quantization else (),
        zero_point=tuple(quantization.scalars(3, "q") or ()) if quantization else (),
    )


@dataclass(frozen=True)
class _ModelInfo:
    num_subgraphs: int
    inputs: tuple[_TensorInfo, ...]
    outputs: tuple[_TensorInfo, ...]


def _model_info(model: _Table) -> _ModelInfo:
    subgraphs = model.tables(_MODEL_SUBGRAPHS) or []
    if not subgraphs:
        raise ValueError("The TFLite model has no subgraph.")
    # SubGraph (schema.fbs): tensors 0, inputs 1, outputs 2, operators 3, name 4.
    main = subgraphs[0]
    tensors = main.table_positions(0) or []

    def infos(slot):
        indices = main.scalars(slot, "i") or ()
        return tuple(_tensor_info(_Table(main.buf, tensors[i])) for i in indices)

    return _ModelInfo(num_subgraphs=len(subgraphs), inputs=infos(1), outputs=infos(2))


def _metadata_entries(model: _Table) -> list[tuple[str | None, int]]:
    # Metadata (schema.fbs): name 0 (string), buffer 1 (uint).
    entries = model.tables(_MODEL_METADATA) or []
    return [(entry.string(0), entry.scalar(1, "I", 0)) for entry in entries]


def _buffer_data(model: _Table, index: int) -> bytes | None:
    buffers = model.tables(_MODEL_BUFFERS) or []
    if not 0 <= index < len(buffers):
        return None
    # Buffer (schema.fbs): data 0 ([ubyte], force_align 16), offset 1, size 2.
    return buffers[index].byte_vector(0)


def _split_packed_files(tflite_model: bytes | bytearray | memoryview) -> tuple[memoryview, dict]:
    """Splits a model into its flatbuffer and the files of an appended zip archive."""
    view = memoryview(tflite_model).cast("B")
    # zipfile finds an archive by the end-of-central-directory record in the last
    # 64 KiB + 22 bytes; without its signature there, skip copying the model.
    if b"PK\x05\x06" not in view[-(65536 + 22) :].tobytes():
        return view, {}
    source = tflite_model if isinstance(tflite_model, bytes) else view.tobytes()
    try:
        with zipfile.ZipFile(io.BytesIO(source)) as archive:
            entries = archive.infolist()
            files = {entry.filename: archive.read(entry) for entry in entries}
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, struct.error):
        # A bare flatbuffer, the usual case.
        return view, {}
    if not entries:
        return view, {}
    # zipfile reports local header offsets from the start of the file, so the
    # archive starts at the first local header and the flatbuffer ends there.
    start = min(entry.header_offset for entry in entries)
    if not 8 <= start <= len(view):
        raise ValueError("The zip archive appended to the TFLite model is malformed.")
    return view[:start], files


def _load_model(tflite_model: bytes | bytearray | memoryview) -> tuple[_Table, dict]:
    flatbuffer, files = _split_packed_files(tflite_model)
    return _root(flatbuffer, TFLITE_FILE_IDENTIFIER, "TFLite model"), files


# --- Writing: the metadata flatbuffer ------------------------------------------------

_PREPEND_SLOT = {
    "b": "PrependInt8Slot",
    "I": "PrependUint32Slot",
    "i": "PrependInt32Slot",
}


def _table(builder: flatbuffers.Builder, fields: Sequence[tuple[int, str, Any]]) -> int:
    """Writes a table of `(slot, kind, value)` fields; kind "o" is an offset.

    Fields whose value is None are left out (absent fields read as their default).
    Children (strings, vectors, sub-tables) must already be written.
    """
    present = [field for field in fields if field[2] is not None]
    builder.StartObject(max((slot for slot, _, _ in fields), default=-1) + 1)
    for slot, kind, value in present:
        if kind == "o":
            builder.PrependUOffsetTRelativeSlot(slot, value, 0)
        else:
            getattr(builder, _PREPEND_SLOT[kind])(slot, value, 0)
    return builder.EndObject()


def _string(builder: flatbuffers.Builder, text: str | None) -> int | None:
    return builder.CreateString(text) if text else None


def _offsets(builder: flatbuffers.Builder, offsets: Sequence[int]) -> int:
    builder.StartVector(4, len(offsets), 4)
    for offset in reversed(offsets):
        builder.PrependUOffsetTRelative(offset)
    return builder.EndVector()


def _floats(builder: flatbuffers.Builder, values: Sequence[float]) -> int:
    builder.StartVector(4, len(values), 4)
    for value in reversed(values):
        builder.PrependFloat32(float(value))
    return builder.EndVector()


def _aligned_bytes(builder: flatbuffers.Builder, data: bytes) -> int:
    # Pads so that the vector's data (not its length prefix) starts on a 16-byte
    # boundary, as `(force_align: 16)` asks; CreateByteVector alone aligns to 4.
    builder.Prep(_ALIGNMENT, len(data))
    return builder.CreateByteVector(bytes(data))


def _segmenter_options(activation: int) -> bytes:
    # ImageSegmenterOptions: activation 0 (byte), min_parser_version 1 (string).
    builder = flatbuffers.Builder(64)
    version = builder.CreateString(_SEGMENTER_OPTIONS_PARSER_VERSION)
    options = _table(builder, [(0, "b", activation or None), (1, "o", version)])
    builder.Finish(options, file_identifier=SEGMENTER_OPTIONS_FILE_IDENTIFIER)
    return bytes(builder.Output())


@dataclass(frozen=True)
class _SegmenterSpec:
    name: str
    description: str
    version: str
    author: str
    license: str
    mean: tuple[float, ...]
    std: tuple[float, ...]
    output_type: str
    input: _TensorInfo
    output: _TensorInfo


def _input_stats(spec: _SegmenterSpec) -> tuple[list[float], list[float]] | None:
    # The range of the values the model receives, as MediaPipe's own writer records
    # it: raw pixels for uint8, the normalised [0, 255] range for float32.
    if spec.input.type == _UINT8:
        return [0.0], [255.0]
    if spec.input.type == _FLOAT32:
        return (
            [(0.0 - m) / s for m, s in zip(spec.mean, spec.std)],
            [(255.0 - m) / s for m, s in zip(spec.mean, spec.std)],
        )
    return None


def _static_size(tensor: _TensorInfo) -> tuple[int, int] | None:
    dims = tensor.shape_signature if tensor.shape_signature is not None else tensor.shape
    if len(dims) == 4 and dims[1] > 0 and dims[2] > 0:
        return dims[2], dims[1]
    return None


def _build_segmenter_metadata(spec: _SegmenterSpec) -> bytes:
    """The `ModelMetadata` flatbuffer (metadata_schema.fbs) of an image segmenter."""
    builder = flatbuffers.Builder(1024)

    # Input: TensorMetadata{name 0, description 1, dimension_names 2, content 3,
    # process_units 4, stats 5, associated_files 6}.
    size = _static_size(spec.input)
    default_size = None
    if size is not None:  # ImageSize: width 0, height 1 (uint).
        default_size = _table(builder, [(0, "I", size[0]), (1, "I", size[1])])
    # ImageProperties: color_space 0 (byte), default_size 1.
    image_properties = _table(builder, [(0, "b", _RGB), (1, "o", default_size)])
    # Content: content_properties_type 0 (byte), content_properties 1, range 2.
    input_content = _table(
        builder, [(0, "b", _IMAGE_PROPERTIES), (1, "o", image_properties), (2, "o", None)]
    )
    # NormalizationOptions: mean 0, std 1 ([float]). ProcessUnit: options_type 0,
    # options 1.
    normalization = _table(
        builder, [(0, "o", _floats(builder, spec.mean)), (1, "o", _floats(builder, spec.std))]
    )
    process_unit = _table(builder, [(0, "b", _NORMALIZATION_OPTIONS), (1, "o", normalization)])
    stats = None
    stats_values = _input_stats(spec)
    if stats_values is not None:  # Stats: max 0, min 1 ([float]) -- max first.
        minimum, maximum = stats_values
        stats = _table(
            builder, [(0, "o", _floats(builder, maximum)), (1, "o", _floats(builder, minimum))]
        )
    input_metadata = _table(
        builder,
        [
            (0, "o", _string(builder, "image")),
            (1, "o", _string(builder, "Input image to be segmented: RGB, pixels 0..255.")),
            (3, "o", input_content),
            (4, "o", _offsets(builder, [process_unit])),
            (5, "o", stats),
        ],
    )

    # Output: a stack of per-class grayscale score maps. ValueRange{min 0, max 1}
    # (int): dimensions 1..2 are the image, as MediaPipe's SegmentationMaskMd writes.
    mask_properties = _table(builder, [(0, "b", _GRAYSCALE), (1, "o", None)])
    value_range = _table(builder, [(0, "i", 1), (1, "i", 2)])
    output_content = _table(
        builder, [(0, "b", _IMAGE_PROPERTIES), (1, "o", mask_properties), (2, "o", value_range)]
    )
    category_mask = spec.output_type == "category_mask"
    # AssociatedFile: name 0, description 1, type 2 (byte), locale 3, version 4. No
    # locale: MediaPipe would read a file whose locale matches
    # `display_names_locale` ("en") as display names.
    labels_file = _table(
        builder,
        [
            (0, "o", _string(builder, LABELS_FILE_NAME)),
            (
                1,
                "o",
                _string(
                    builder,
                    "Class names, one per line: line i names class i."
                    if category_mask
                    else "Class names, one per line: line i names channel i of the output.",
                ),
            ),
            (2, "b", _TENSOR_VALUE_LABELS if category_mask else _TENSOR_AXIS_LABELS),
        ],
    )
    output_description = {
        "probabilities": "Per-pixel class probabilities (softmax), one channel per class.",
        "logits": "Per-pixel class logits (softmax not applied), one channel per class.",
        "category_mask": "Per-pixel class index.",
    }[spec.output_type]
    output_metadata = _table(
        builder,
        [
            (0, "o", _string(builder, "segmentation_masks")),
            (1, "o", _string(builder, output_description)),
            (3, "o", output_content),
            (6, "o", _offsets(builder, [labels_file])),
        ],
    )

    # CustomMetadata: name 0, data 1 ([ubyte], force_align 16), holding an
    # ImageSegmenterOptions flatbuffer.
    custom = None
    if spec.output_type in _ACTIVATION_FOR_OUTPUT:
        options = _segmenter_options(_ACTIVATION_FOR_OUTPUT[spec.output_type])
        custom_name = _string(builder, SEGMENTER_METADATA_NAME)
        custom_data = _aligned_bytes(builder, options)
        custom_metadata = _table(builder, [(0, "o", custom_name), (1, "o", custom_data)])
        custom = _offsets(builder, [custom_metadata])

    # SubGraphMetadata: name 0, description 1, input_tensor_metadata 2,
    # output_tensor_metadata 3, associated_files 4, input_process_units 5,
    # output_process_units 6, input_tensor_groups 7, output_tensor_groups 8,
    # custom_metadata 9.
    subgraph = _table(
        builder,
        [
            (2, "o", _offsets(builder, [input_metadata])),
            (3, "o", _offsets(builder, [output_metadata])),
            (9, "o", custom),
        ],
    )
    # The largest "Added in" version of the fields written (metadata_schema.fbs).
    parser_version = _CUSTOM_METADATA_PARSER_VERSION if custom else _BASE_PARSER_VERSION
    # ModelMetadata: name 0, description 1, version 2, subgraph_metadata 3, author 4,
    # license 5, associated_files 6, min_parser_version 7.
    root = _table(
        builder,
        [
            (0, "o", _string(builder, spec.name)),
            (1, "o", _string(builder, spec.description)),
            (2, "o", _string(builder, spec.version)),
            (3, "o", _offsets(builder, [subgraph])),
            (4, "o", _string(builder, spec.author)),
            (5, "o", _string(builder, spec.license)),
            (7, "o", _string(builder, parser_version)),
        ],
    )
    builder.Finish(root, file_identifier=METADATA_FILE_IDENTIFIER)
    return bytes(builder.Output())


# --- Writing: inserting the metadata into the model ----------------------------------


def _check_relocatable(model: _Table) -> None:
    """Refuses what cannot be moved: unknown Model fields, data outside the flatbuffer."""
    for slot in range(_MODEL_SLOTS, model.num_slots):
        if model.field(slot):
            raise ValueError(
                f"The TFLite model has a Model field (slot {slot}) newer than the schema "
                "this writer knows; refusing to drop it."
            )
    # Buffer.offset / Operator.large_custom_options_offset (schema.fbs) locate data
    # stored after the flatbuffer from the start of the file, in models over 2 GB.
    for buffer in model.tables(_MODEL_BUFFERS) or []:
        if buffer.scalar(1, "Q", 0) > 1:
            raise ValueError(
                "The TFLite model stores buffers outside its flatbuffer (the >2 GB "
                "layout); adding metadata to such files is not supported."
            )
    for subgraph in model.tables(_MODEL_SUBGRAPHS) or []:
        for operator in subgraph.tables(3) or []:
            if operator.scalar(9, "Q", 0) > 1:
                raise ValueError(
                    "The TFLite model stores custom options outside its flatbuffer "
                    "(the >2 GB layout); adding metadata to such files is not supported."
                )


def populate_metadata(
    tflite_model: bytes | bytearray | memoryview,
    metadata: bytes,
    associated_files: Mapping[str, bytes] | None = None,
) -> bytes:
    """Stores a `ModelMetadata` flatbuffer and its associated files in a TFLite model.

    The model's `Model` table gets a buffer holding `metadata` and a
    `Metadata{name: "TFLITE_METADATA"}` entry pointing at it (an existing
    `TFLITE_METADATA` entry is re-pointed, its buffer index reused); the other
    metadata entries (`min_runtime_version`, `CONVERSION_METADATA`, ...), subgraphs,
    signatures and weights are kept byte for byte. The associated files are appended
    as an uncompressed zip archive, which replaces any archive the model had.

    Rather than re-serialising the whole model, a new root `Model` table, `buffers`
    and `metadata` vectors are written *in front of* the original flatbuffer, which is
    kept whole: flatbuffer offsets are relative and point forward, so the old tables
    stay valid where they are, and the 16-byte shift keeps every buffer's alignment.

    Args:
        tflite_model: a `.tflite` file's bytes (flatbuffer identifier `TFL3`),
            possibly with associated files already appended.
        metadata: a `ModelMetadata` flatbuffer (identifier `M001`).
        associated_files: file name -> contents, packed after the flatbuffer; the
            names are those the metadata's `AssociatedFile` tables use.

    Returns:
        The new `.tflite` file's bytes: a valid flatbuffer and a valid zip archive.

    Raises:
        ValueError: if `tflite_model` is not a TFLite flatbuffer, or uses a layout this
            writer cannot relocate (buffers stored after a >2 GB flatbuffer, Model
            fields newer than `schema.fbs`), or `metadata` is not a metadata
            flatbuffer.

    Example:

    >>> import tensorflow as tf
    >>> relu = tf.function(tf.nn.relu, input_signature=[tf.TensorSpec([4], tf.float32)])
    >>> flatbuffer = tf.lite.TFLiteConverter.from_concrete_functions(
    ...     [relu.get_concrete_function()], tf.Module()).convert()
    >>> import flatbuffers
    >>> builder = flatbuffers.Builder(64)
    >>> name = builder.CreateString("relu")
    >>> builder.StartObject(1)  # ModelMetadata, with only its name (slot 0)
    >>> builder.PrependUOffsetTRelativeSlot(0, name, 0)
    >>> _ = builder.Finish(builder.EndObject(), file_identifier=b"M001")
    >>> model = populate_metadata(flatbuffer, builder.Output(), {"notes.txt": b"hi"})
    >>> read_metadata(model)
    {'name': 'relu', 'packed_files': ['notes.txt']}
    """
    metadata = bytes(metadata)
    _root(memoryview(metadata), METADATA_FILE_IDENTIFIER, "TFLite metadata flatbuffer")
    flatbuffer, _ = _split_packed_files(tflite_model)
    try:
        model = _root(flatbuffer, TFLITE_FILE_IDENTIFIER, "TFLite model")
        _check_relocatable(model)
        buffers = model.table_positions(_MODEL_BUFFERS) or []
        entries = model.table_positions(_MODEL_METADATA) or []
        existing = [
            (i, _Table(flatbuffer, p).scalar(1, "I", 0))
            for i, p in enumerate(entries)
            if _Table(flatbuffer, p).string(0) == METADATA_BUFFER_NAME
        ]
        model_fields = [
            (slot, model.field(slot), model.target(slot)) for slot in range(_MODEL_SLOTS)
        ]
    except (struct.error, IndexError, UnicodeDecodeError) as error:
        raise ValueError(f"The TFLite model's flatbuffer is malformed: {error}") from error

    # The old flatbuffer goes last, padded to a multiple of 16 bytes so that, the
    # whole file also being a multiple of 16 (the builder's `minalign`), it starts on
    # a 16-byte boundary and its buffers keep their alignment.
    old = bytes(flatbuffer) + bytes(-len(flatbuffer) % _ALIGNMENT)
    end = len(old)
    builder = flatbuffers.Builder(end + len(metadata) + 4096)
    builder.Prep(_ALIGNMENT, end)
    builder.CreateByteVector(old)
    del old

    def old_offset(position: int) -> int:
        # Builder offsets count from the end of the buffer: byte `position` of the old
        # flatbuffer lies `end - position` bytes before it.
        return end - position

    metadata_buffer = _table(builder, [(0, "o", _aligned_bytes(builder, metadata))])
    buffer_offsets = [old_offset(p) for p in buffers]
    if not buffer_offsets:
        # Buffer 0 must be the empty sentinel (schema.fbs); never put metadata there.
        buffer_offsets.append(_table(builder, []))
    entry_offsets = [old_offset(p) for p in entries]
    if existing and 0 < existing[0][1] < len(buffer_offsets):
        buffer_offsets[existing[0][1]] = metadata_buffer
    else:
        buffer_offsets.append(metadata_buffer)
        name = builder.CreateString(METADATA_BUFFER_NAME)
        entry = _table(builder, [(0, "o", name), (1, "I", len(buffer_offsets) - 1)])
        if existing:  # an entry pointing nowhere useful: replace it.
            entry_offsets[existing[0][0]] = entry
        else:
            entry_offsets.append(entry)
    new_vectors = {
        _MODEL_BUFFERS: _offsets(builder, buffer_offsets),
        _MODEL_METADATA: _offsets(builder, entry_offsets),
    }

    builder.StartObject(_MODEL_SLOTS)
    for slot, field, target in model_fields:
        if slot == _MODEL_VERSION:
            if field:
                builder.PrependUint32Slot(slot, struct.unpack_from("<I", flatbuffer, field)[0], 0)
        elif slot in new_vectors:
            builder.PrependUOffsetTRelativeSlot(slot, new_vectors[slot], 0)
        elif target:
            builder.PrependUOffsetTRelativeSlot(slot, old_offset(target), 0)
    builder.Finish(builder.EndObject(), file_identifier=TFLITE_FILE_IDENTIFIER)

    output = io.BytesIO()
    # Builder.Output() would copy the (possibly large) result once more.
    output.write(memoryview(builder.Bytes)[builder.Head() :])
    del builder
    if associated_files:
        # ZipFile in "w" mode writes from the current position and records local
        # header offsets from the start of the file, as MetadataPopulator's archives
        # do. MediaPipe reads the files in place and refuses compressed ones.
        with zipfile.ZipFile(output, "w", compression=zipfile.ZIP_STORED) as archive:
            for file_name, contents in associated_files.items():
                # A fixed timestamp keeps the output reproducible.
                info = zipfile.ZipInfo(file_name, date_time=(1980, 1, 1, 0, 0, 0))
                archive.writestr(info, bytes(contents))
    return output.getvalue()


# --- The image segmenter -------------------------------------------------------------


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


def _segmenter_issues(
    info: _ModelInfo,
    *,
    mean: tuple[float, ...] | None,
    std: tuple[float, ...] | None,
    color_space: int | None,
    num_labels: int | None,
    activation: int | None,
    category_mask_output: bool = False,
) -> list[str]:
    """What would make MediaPipe's ImageSegmenter refuse or misread the model."""
    issues = []
    if info.num_subgraphs != 1:
        issues.append(f"the model has {info.num_subgraphs} subgraphs; MediaPipe needs exactly 1.")
    if len(info.inputs) != 1:
        issues.append(f"the model has {len(info.inputs)} inputs; an image segmenter takes 1.")
    if info.inputs:
        image = info.inputs[0]
        if len(image.shape) != 4 or image.shape[0] != 1 or image.shape[3] != 3:
            issues.append(
                f"input shape {list(image.shape)}: MediaPipe needs (1, height, width, 3)."
            )
        if image.type not in (_FLOAT32, _UINT8):
            issues.append(
                f"input type {image.type_name}: MediaPipe takes float32 or uint8 images "
                "(convert int8 models with `inference_input_type=tf.uint8` or float32)."
            )
        if color_space is not None and color_space != _RGB:
            issues.append("the input's ImageProperties colour space must be RGB.")
        if image.type == _FLOAT32 and mean is None:
            issues.append("a float32 input needs NormalizationOptions metadata.")
        if mean is not None and std is not None:
            if len(mean) != len(std) or len(mean) not in (1, 3):
                issues.append("NormalizationOptions need 1 or 3 means and as many stds.")
            elif len(set(mean)) > 1 or len(set(std)) > 1:
                issues.append(
                    "per-channel normalisation (different mean/std per channel) is "
                    "'Unimplemented' in MediaPipe's image preprocessing."
                )
            elif std[0] == 0:
                issues.append("NormalizationOptions std must not be 0.")
            elif image.type == _UINT8 and image.scale:
                # MediaPipe feeds the raw pixel p as q = p, which the model reads as
                # scale * (p - zero_point); it must equal (p - mean) / std.
                scale, zero_point = image.scale[0], image.zero_point[0] if image.zero_point else 0
                if not math.isclose(scale, 1.0 / std[0], rel_tol=1e-3) or abs(
                    zero_point - mean[0]
                ) > 0.5:
                    issues.append(
                        f"uint8 input quantization (scale {scale:g}, zero point "
                        f"{zero_point}) does not map pixels 0..255 to (pixel - {mean[0]:g}) "
                        f"/ {std[0]:g}: MediaPipe feeds raw pixels to uint8 inputs. "
                        f"Expected scale {1.0 / std[0]:g}, zero point {mean[0]:g} (for "
                        "int8 conversion, calibrate on data spanning 0..255)."
                    )
    if category_mask_output:
        issues.append(
            "MediaPipe's ImageSegmenter needs per-class scores (1, h, w, classes), not a "
            "category mask output."
        )
    elif info.outputs:
        # image_segmenter_graph.cc reads the last output.
        scores = info.outputs[-1]
        # MediaPipe's inference runner copies float32 outputs and dequantizes uint8
        # and int8 ones; it would misread float16 (copied as float32) and refuses
        # the other types.
        if scores.type not in (_FLOAT32, _UINT8, _INT8):
            issues.append(
                f"output type {scores.type_name}: MediaPipe reads float32, uint8 or int8 "
                "scores."
            )
        if not 2 <= len(scores.shape) <= 4 or (len(scores.shape) == 4 and scores.shape[0] != 1):
            issues.append(
                f"output shape {list(scores.shape)}: MediaPipe needs (1, height, width, "
                "classes)."
            )
        channels = scores.shape[-1] if len(scores.shape) >= 3 else 1
        if num_labels is not None and num_labels != channels:
            issues.append(f"{num_labels} labels for an output of {channels} channels.")
        if activation == 2 and channels == 1:
            issues.append("SOFTMAX activation needs more than one output channel.")
    return issues


def add_image_segmenter_metadata(
    tflite_model: bytes | bytearray | memoryview,
    *,
    labels: Sequence[str],
    input_mean: Sequence[float] = (0.0,),
    input_std: Sequence[float] = (1.0,),
    name: str = "DeconvNet",
    description: str = "Semantic segmentation: per-pixel class scores of an RGB image.",
    version: str = "",
    author: str = "",
    license: str = "",
    output_type: OutputType = "probabilities",
    check_mediapipe: bool = True,
) -> bytes:
    """Adds the image segmenter metadata MediaPipe Tasks and the Task Library read.

    Writes, for subgraph 0: input 0 as an RGB image (`ImageProperties`, its size when
    static) with `NormalizationOptions{input_mean, input_std}` and its value range as
    `Stats`; the output as per-class grayscale masks (`ImageProperties` GRAYSCALE,
    content dimensions 1..2) with `labels.txt` as its `TENSOR_AXIS_LABELS` file; and
    the `SEGMENTER_METADATA` custom metadata whose activation tells MediaPipe what the
    output holds: NONE for `"probabilities"` (used as they are), SOFTMAX for
    `"logits"`. `labels.txt` is packed in the file.

    Normalisation follows the metadata schema: a consumer feeds
    `(pixel - mean) / std` for pixels 0..255 to a float input. Files that take raw
    [0, 255] pixels (this package's exports, which normalise inside the graph) use the
    defaults mean 0, std 1. Quantized models keep the float model's values: for a uint8
    input MediaPipe ignores them and feeds raw pixels, which the input's quantization
    must map to the same values (checked with `check_mediapipe`).

    Args:
        tflite_model: the `.tflite` file's bytes; metadata and packed files it already
            has are replaced.
        labels: class names; `labels[i]` names output channel `i` (or class index `i`
            for `output_type="category_mask"`). Written one per line.
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
        check_mediapipe: `True` (default): raise if MediaPipe's ImageSegmenter would
            refuse or misread the result (see `image_segmenter_issues`). `False`
            writes the metadata anyway, e.g. for an int8-input file meant for other
            runtimes.

    Returns:
        The `.tflite` file's bytes with metadata and `labels.txt` (see
        `populate_metadata`).

    Raises:
        ValueError: on an invalid argument, a model that is not a TFLite flatbuffer or
            has several inputs or outputs, a label count that does not match the
            output channels, or (with `check_mediapipe`) a model MediaPipe cannot run.

    Example:

    >>> import tensorflow as tf
    >>> softmax = tf.function(
    ...     tf.nn.softmax, input_signature=[tf.TensorSpec([1, 8, 8, 2], tf.float32)])
    >>> flatbuffer = tf.lite.TFLiteConverter.from_concrete_functions(
    ...     [softmax.get_concrete_function()], tf.Module()).convert()
    >>> add_image_segmenter_metadata(flatbuffer, labels=["a", "b"])  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: The model cannot be used by MediaPipe's ImageSegmenter: input shape [1, 8, 8, 2]...
    """
    if output_type not in OUTPUT_TYPES:
        raise ValueError(
            f"`output_type` must be one of {OUTPUT_TYPES}. Received: {output_type!r}"
        )
    if isinstance(labels, (str, bytes)) or not labels:
        raise ValueError(f"`labels` must be a non-empty sequence of strings. Received: {labels!r}")
    labels = [str(label) for label in labels]
    for label in labels:
        # labels.txt is split on line breaks; an empty last line is dropped.
        if not label or "\n" in label or "\r" in label:
            raise ValueError(f"Labels must be non-empty and on one line. Received: {label!r}")
    mean = _channels(input_mean, "input_mean")
    std = _channels(input_std, "input_std")
    if len(mean) != len(std):
        raise ValueError(
            f"`input_mean` and `input_std` must have as many values. Received: {mean}, {std}"
        )
    if any(s == 0 for s in std):
        raise ValueError(f"`input_std` must not be 0. Received: {std}")

    flatbuffer, _ = _split_packed_files(tflite_model)
    try:
        info = _model_info(_root(flatbuffer, TFLITE_FILE_IDENTIFIER, "TFLite model"))
    except (struct.error, IndexError, UnicodeDecodeError) as error:
        raise ValueError(f"The TFLite model's flatbuffer is malformed: {error}") from error
    # The metadata lists one TensorMetadata per subgraph input and output, in order.
    if len(info.inputs) != 1 or len(info.outputs) != 1:
        raise ValueError(
            "An image segmenter has one input and one output; the model has "
            f"{len(info.inputs)} inputs and {len(info.outputs)} outputs."
        )
    output = info.outputs[0]
    if output_type != "category_mask":
        channels = output.shape[-1] if len(output.shape) >= 3 else 1
        if channels != len(labels):
            raise ValueError(
                f"{len(labels)} labels for an output of shape {list(output.shape)} "
                f"({channels} classes)."
            )
    if check_mediapipe:
        issues = _segmenter_issues(
            info,
            mean=mean,
            std=std,
            color_space=_RGB,
            num_labels=len(labels) if output_type != "category_mask" else None,
            activation=_ACTIVATION_FOR_OUTPUT.get(output_type),
            category_mask_output=output_type == "category_mask",
        )
        if issues:
            raise ValueError(
                "The model cannot be used by MediaPipe's ImageSegmenter: " + " ".join(issues)
            )

    spec = _SegmenterSpec(
        name=name,
        description=description,
        version=version,
        author=author,
        license=license,
        mean=mean,
        std=std,
        output_type=output_type,
        input=info.inputs[0],
        output=output,
    )
    labels_file = "".join(label + "\n" for label in labels).encode("utf-8")
    return populate_metadata(
        flatbuffer, _build_segmenter_metadata(spec), {LABELS_FILE_NAME: labels_file}
    )


# --- Reading -------------------------------------------------------------------------


def _enum(names: Sequence[str], value: int) -> str | int:
    return names[value] if 0 <= value < len(names) else value


def _drop_none(fields: dict) -> dict:
    return {key: value for key, value in fields.items() if value is not None}


def _read_associated_file(table: _Table) -> dict:
    return _drop_none(
        {
            "name": table.string(0),
            "description": table.string(1),
            "type": _enum(_ASSOCIATED_FILE_TYPES, table.scalar(2, "b")),
            "locale": table.string(3),
            "version": table.string(4),
        }
    )


def _read_associated_files(table: _Table, slot: int) -> list[dict] | None:
    files = table.tables(slot)
    return None if files is None else [_read_associated_file(f) for f in files]


def _read_content(table: _Table) -> dict:
    kind = table.scalar(0, "B")
    properties = table.table(1)
    content: dict[str, Any] = {"content_properties_type": _enum(_CONTENT_PROPERTIES, kind)}
    if properties is not None:
        if kind == 2:  # ImageProperties: color_space 0, default_size 1.
            size = properties.table(1)
            content["content_properties"] = _drop_none(
                {
                    "color_space": _enum(_COLOR_SPACES, properties.scalar(0, "b")),
                    "default_size": None
                    if size is None
                    else {"width": size.scalar(0, "I"), "height": size.scalar(1, "I")},
                }
            )
        elif kind == 3:  # BoundingBoxProperties: index 0, type 1, coordinate_type 2.
            content["content_properties"] = _drop_none(
                {
                    "index": properties.scalars(0, "I"),
                    "type": _enum(_BOUNDING_BOX_TYPES, properties.scalar(1, "b")),
                    "coordinate_type": _enum(_COORDINATE_TYPES, properties.scalar(2, "b")),
                }
            )
        elif kind == 4:  # AudioProperties: sample_rate 0, channels 1.
            content["content_properties"] = {
                "sample_rate": properties.scalar(0, "I"),
                "channels": properties.scalar(1, "I"),
            }
        else:  # FeatureProperties has no fields.
            content["content_properties"] = {}
    value_range = table.table(2)
    if value_range is not None:  # ValueRange: min 0, max 1.
        content["range"] = {"min": value_range.scalar(0, "i"), "max": value_range.scalar(1, "i")}
    return content


def _read_process_unit(table: _Table) -> dict:
    kind = table.scalar(0, "B")
    options = table.table(1)
    unit: dict[str, Any] = {"options_type": _enum(_PROCESS_UNIT_OPTIONS, kind)}
    if options is None:
        return unit
    if kind == 1:  # NormalizationOptions: mean 0, std 1.
        unit["options"] = _drop_none(
            {"mean": options.scalars(0, "f"), "std": options.scalars(1, "f")}
        )
    elif kind == 2:  # ScoreCalibrationOptions: score_transformation 0, default_score 1.
        unit["options"] = {
            "score_transformation": _enum(_SCORE_TRANSFORMATIONS, options.scalar(0, "b")),
            "default_score": options.scalar(1, "f", 0.0),
        }
    elif kind == 3:  # ScoreThresholdingOptions: global_score_threshold 0.
        unit["options"] = {"global_score_threshold": options.scalar(0, "f", 0.0)}
    # Tokenizer options are reported by type only.
    return unit


def _read_process_units(table: _Table, slot: int) -> list[dict] | None:
    units = table.tables(slot)
    return None if units is None else [_read_process_unit(u) for u in units]


def _read_tensor_metadata(table: _Table) -> dict:
    content = table.table(3)
    stats = table.table(5)
    return _drop_none(
        {
            "name": table.string(0),
            "description": table.string(1),
            "dimension_names": table.strings(2),
            "content": None if content is None else _read_content(content),
            "process_units": _read_process_units(table, 4),
            # Stats: max 0, min 1.
            "stats": None
            if stats is None
            else _drop_none({"max": stats.scalars(0, "f"), "min": stats.scalars(1, "f")}),
            "associated_files": _read_associated_files(table, 6),
        }
    )


def _read_custom_metadata(table: _Table) -> dict:
    name = table.string(0)
    data = table.byte_vector(1)
    custom: dict[str, Any] = _drop_none({"name": name})
    if data is None:
        return custom
    if name == SEGMENTER_METADATA_NAME and data[4:8] == SEGMENTER_OPTIONS_FILE_IDENTIFIER:
        options = _root(memoryview(data), SEGMENTER_OPTIONS_FILE_IDENTIFIER, "segmenter options")
        custom["data"] = _drop_none(
            {
                "activation": _enum(_ACTIVATIONS, options.scalar(0, "b")),
                "min_parser_version": options.string(1),
            }
        )
    else:
        custom["data_size"] = len(data)
    return custom


def _read_subgraph_metadata(table: _Table) -> dict:
    def tensors(slot):
        items = table.tables(slot)
        return None if items is None else [_read_tensor_metadata(t) for t in items]

    def groups(slot):  # TensorGroup: name 0, tensor_names 1.
        items = table.tables(slot)
        return (
            None
            if items is None
            else [_drop_none({"name": g.string(0), "tensor_names": g.strings(1)}) for g in items]
        )

    custom = table.tables(9)
    return _drop_none(
        {
            "name": table.string(0),
            "description": table.string(1),
            "input_tensor_metadata": tensors(2),
            "output_tensor_metadata": tensors(3),
            "associated_files": _read_associated_files(table, 4),
            "input_process_units": _read_process_units(table, 5),
            "output_process_units": _read_process_units(table, 6),
            "input_tensor_groups": groups(7),
            "output_tensor_groups": groups(8),
            "custom_metadata": None
            if custom is None
            else [_read_custom_metadata(c) for c in custom],
        }
    )


def _metadata_table(model: _Table) -> _Table | None:
    for entry_name, index in _metadata_entries(model):
        if entry_name == METADATA_BUFFER_NAME:
            data = _buffer_data(model, index)
            if data:
                return _root(memoryview(data), METADATA_FILE_IDENTIFIER, "TFLite metadata buffer")
    return None


def read_metadata(tflite_model: bytes | bytearray | memoryview) -> dict:
    """Reads a TFLite model's metadata as a JSON-friendly dict.

    The keys are the `metadata_schema.fbs` field names and enums are given by name,
    as flatc's JSON output does; absent fields are left out. The `SEGMENTER_METADATA`
    custom metadata is decoded (`{"activation": "NONE"}`); other custom metadata is
    given by size. `packed_files` lists the files in the zip archive appended to the
    model.

    Args:
        tflite_model: a `.tflite` file's bytes.

    Returns:
        The metadata, `{}` if the model has no `TFLITE_METADATA`.

    Raises:
        ValueError: if `tflite_model` is not a TFLite flatbuffer, or its metadata
            buffer has not the metadata file identifier `M001`, or is malformed.

    Example:

    >>> import tensorflow as tf
    >>> relu = tf.function(tf.nn.relu, input_signature=[tf.TensorSpec([4], tf.float32)])
    >>> read_metadata(tf.lite.TFLiteConverter.from_concrete_functions(
    ...     [relu.get_concrete_function()], tf.Module()).convert())
    {}
    """
    try:
        model, files = _load_model(tflite_model)
        table = _metadata_table(model)
        if table is None:
            return {}
        subgraphs = table.tables(3)
        metadata = _drop_none(
            {
                "name": table.string(0),
                "description": table.string(1),
                "version": table.string(2),
                "subgraph_metadata": None
                if subgraphs is None
                else [_read_subgraph_metadata(s) for s in subgraphs],
                "author": table.string(4),
                "license": table.string(5),
                "associated_files": _read_associated_files(table, 6),
                "min_parser_version": table.string(7),
            }
        )
    except (struct.error, IndexError, UnicodeDecodeError) as error:
        raise ValueError(f"The TFLite model or its metadata is malformed: {error}") from error
    if files:
        metadata["packed_files"] = sorted(files)
    return metadata


def image_segmenter_issues(tflite_model: bytes | bytearray | memoryview) -> list[str]:
    """Lists what would make MediaPipe's ImageSegmenter refuse or misread a model.

    Checks the model and its metadata against what MediaPipe Tasks' image segmenter
    reads (see the module docstring): one subgraph, a `(1, H, W, 3)` float32 or uint8
    input, `NormalizationOptions` equal across channels for a float input (and a uint8
    input's quantization matching them), an RGB colour space, a float32
    `(1, h, w, classes)` last output with as many labels, and that the labels file
    named in the metadata is packed in the file.

    Args:
        tflite_model: a `.tflite` file's bytes.

    Returns:
        One sentence per problem; empty if MediaPipe can use the file.

    Raises:
        ValueError: if `tflite_model` is not a TFLite flatbuffer.

    Example:

    >>> import tensorflow as tf
    >>> softmax = tf.function(
    ...     tf.nn.softmax, input_signature=[tf.TensorSpec([1, 8, 8, 3], tf.float32)])
    >>> flatbuffer = tf.lite.TFLiteConverter.from_concrete_functions(
    ...     [softmax.get_concrete_function()], tf.Module()).convert()
    >>> image_segmenter_issues(flatbuffer)
    ['a float32 input needs NormalizationOptions metadata.']
    >>> image_segmenter_issues(add_image_segmenter_metadata(flatbuffer, labels=list("abc")))
    []
    """
    try:
        model, files = _load_model(tflite_model)
        info = _model_info(model)
    except (struct.error, IndexError, UnicodeDecodeError) as error:
        raise ValueError(f"The TFLite model's flatbuffer is malformed: {error}") from error
    metadata = read_metadata(tflite_model)
    subgraph = (metadata.get("subgraph_metadata") or [{}])[0]
    mean = std = color_space = num_labels = activation = None
    issues = []
    inputs = subgraph.get("input_tensor_metadata") or []
    if inputs:
        for unit in inputs[0].get("process_units", []):
            if unit["options_type"] == "NormalizationOptions":
                mean = tuple(unit.get("options", {}).get("mean", ()))
                std = tuple(unit.get("options", {}).get("std", ()))
        properties = inputs[0].get("content", {})
        if properties.get("content_properties_type") == "ImageProperties":
            space = properties.get("content_properties", {}).get("color_space", "UNKNOWN")
            color_space = _COLOR_SPACES.index(space) if space in _COLOR_SPACES else -1
    outputs = subgraph.get("output_tensor_metadata") or []
    if outputs:
        for file in outputs[-1].get("associated_files", []):
            if file.get("type") == "TENSOR_AXIS_LABELS":
                if file.get("name") not in files:
                    issues.append(
                        f"the labels file {file.get('name')!r} is not packed in the model."
                    )
                else:
                    text = files[file["name"]].decode("utf-8").split("\n")
                    num_labels = len(text) - (text[-1] == "")
                break
    for custom in subgraph.get("custom_metadata", []):
        if custom.get("name") == SEGMENTER_METADATA_NAME and "data" in custom:
            activation = _ACTIVATIONS.index(custom["data"]["activation"])
    return (
        _segmenter_issues(
            info,
            mean=mean,
            std=std,
            color_space=color_space,
            num_labels=num_labels,
            activation=activation,
        )
        + issues
    )
