"""The flatbuffers of a TFLite file, read and written without TensorFlow.

A `.tflite` file is a `Model` flatbuffer (schema `schema.fbs`, file identifier
`TFL3`), possibly followed by an uncompressed zip archive of associated files. Its
metadata is a `ModelMetadata` flatbuffer (`metadata_schema.fbs`, file identifier
`M001`) stored in one of the model's buffers. This module holds what the metadata
modules share: the identifiers, enums and field slots of the published schemas

- `schema.fbs`: tensorflow/tensorflow `tensorflow/lite/schema/schema.fbs`, LiteRT
  `tflite/converter/schema/schema.fbs`, for the `Model`, `Buffer`, `Metadata`,
  `SubGraph`, `Operator` and `Tensor` tables;
- `metadata_schema.fbs`: tensorflow/tflite-support
  `tensorflow_lite_support/metadata/metadata_schema.fbs`, and the copy MediaPipe ships
  as `mediapipe/tasks/metadata/metadata_schema.fbs` (schema version 1.5.0, fields
  only ever appended);
- `mediapipe/tasks/metadata/image_segmenter_metadata_schema.fbs` (file identifier
  `V001`) for the `ImageSegmenterOptions` custom metadata;

a small flatbuffer reader (`FlatbufferTable`), the model's input and output tensors
(`model_info`), its packed files (`split_packed_files`), and the helpers that write
tables with the `flatbuffers` runtime (`write_table`, ...).

Field slots are the declaration order of each table, a union taking two slots (its
`_type` byte first).

Example:

>>> import tensorflow as tf
>>> relu = tf.function(tf.nn.relu, input_signature=[tf.TensorSpec([1, 4], tf.float32)])
>>> flatbuffer = tf.lite.TFLiteConverter.from_concrete_functions(
...     [relu.get_concrete_function()], tf.Module()).convert()
>>> model, files = load_model(flatbuffer)
>>> info = model_info(model)
>>> info.inputs[0].shape, info.inputs[0].type_name, files
((1, 4), 'FLOAT32', {})
"""

from __future__ import annotations

import io
import struct
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import flatbuffers

# --- Identifiers and names fixed by the schemas and by MediaPipe ----------------------

TFLITE_FILE_IDENTIFIER = b"TFL3"  # schema.fbs: file_identifier "TFL3"
METADATA_FILE_IDENTIFIER = b"M001"  # metadata_schema.fbs: file_identifier "M001"
SEGMENTER_OPTIONS_FILE_IDENTIFIER = b"V001"  # image_segmenter_metadata_schema.fbs
# The Model.metadata entry MediaPipe and the Task Library look for (metadata_extractor.cc).
METADATA_BUFFER_NAME = "TFLITE_METADATA"
# The SubGraphMetadata.custom_metadata name image_segmenter_graph.cc looks for.
SEGMENTER_METADATA_NAME = "SEGMENTER_METADATA"
LABELS_FILE_NAME = "labels.txt"

# --- metadata_schema.fbs enums -------------------------------------------------------

ASSOCIATED_FILE_TYPES = (
    "UNKNOWN", "DESCRIPTIONS", "TENSOR_AXIS_LABELS", "TENSOR_VALUE_LABELS",
    "TENSOR_AXIS_SCORE_CALIBRATION", "VOCABULARY", "SCANN_INDEX_FILE",
)
FILE_TENSOR_AXIS_LABELS = 2
FILE_TENSOR_VALUE_LABELS = 3
COLOR_SPACES = ("UNKNOWN", "RGB", "GRAYSCALE")
COLOR_RGB, COLOR_GRAYSCALE = 1, 2
# union ContentProperties (0 is NONE).
CONTENT_PROPERTIES = (
    "NONE", "FeatureProperties", "ImageProperties", "BoundingBoxProperties",
    "AudioProperties",
)
CONTENT_IMAGE_PROPERTIES = 2
CONTENT_BOUNDING_BOX_PROPERTIES = 3
CONTENT_AUDIO_PROPERTIES = 4
# union ProcessUnitOptions (0 is NONE).
PROCESS_UNIT_OPTIONS = (
    "NONE", "NormalizationOptions", "ScoreCalibrationOptions",
    "ScoreThresholdingOptions", "BertTokenizerOptions",
    "SentencePieceTokenizerOptions", "RegexTokenizerOptions",
)
OPTIONS_NORMALIZATION = 1
OPTIONS_SCORE_CALIBRATION = 2
OPTIONS_SCORE_THRESHOLDING = 3
BOUNDING_BOX_TYPES = ("UNKNOWN", "BOUNDARIES", "UPPER_LEFT", "CENTER")
COORDINATE_TYPES = ("RATIO", "PIXEL")
SCORE_TRANSFORMATIONS = ("IDENTITY", "LOG", "INVERSE_LOGISTIC")
# image_segmenter_metadata_schema.fbs: enum Activation : byte.
ACTIVATIONS = ("NONE", "SIGMOID", "SOFTMAX")
ACTIVATION_SOFTMAX = 2

# Where metadata_schema.fbs names a minimum parser version for a field we write
# ("Added in: 1.5.0" for SubGraphMetadata.custom_metadata).
BASE_PARSER_VERSION = "1.0.0"
CUSTOM_METADATA_PARSER_VERSION = "1.5.0"
SEGMENTER_OPTIONS_PARSER_VERSION = "1.0.0"

# --- schema.fbs enums and slots --------------------------------------------------------

TENSOR_TYPES = (
    "FLOAT32", "FLOAT16", "INT32", "UINT8", "INT64", "STRING", "BOOL", "INT16",
    "COMPLEX64", "INT8", "FLOAT64", "COMPLEX128", "UINT64", "RESOURCE", "VARIANT",
    "UINT32", "UINT16", "INT4", "BFLOAT16", "INT2", "UINT4", "FLOAT8_E4M3FN",
    "FLOAT8_E5M2",
)
TENSOR_FLOAT32, TENSOR_UINT8, TENSOR_INT8 = 0, 3, 9

# Model (schema.fbs): version 0 (uint), then offsets: operator_codes 1, subgraphs 2,
# description 3, buffers 4, metadata_buffer 5, metadata 6, signature_defs 7,
# external_buffer_groups 8, external_buffers 9.
MODEL_SLOTS = 10
MODEL_VERSION, MODEL_SUBGRAPHS, MODEL_BUFFERS, MODEL_METADATA = 0, 2, 4, 6

# Buffer.data and CustomMetadata.data are declared `(force_align: 16)`.
ALIGNMENT = 16

# What reading a truncated or corrupted flatbuffer raises.
MALFORMED_ERRORS = (struct.error, IndexError, UnicodeDecodeError)


# --- A minimal flatbuffers reader ----------------------------------------------------


class FlatbufferTable:
    """Read access to one flatbuffer table: fields by slot (declaration order).

    Args:
        buf: the whole flatbuffer.
        pos: where the table starts in `buf`.
    """

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

    def table(self, slot: int) -> FlatbufferTable | None:
        position = self.target(slot)
        return FlatbufferTable(self.buf, position) if position else None

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

    def tables(self, slot: int) -> list[FlatbufferTable] | None:
        positions = self.table_positions(slot)
        return None if positions is None else [FlatbufferTable(self.buf, p) for p in positions]

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


def root_table(buf: memoryview, identifier: bytes, what: str) -> FlatbufferTable:
    """The root table of a flatbuffer, after checking its file identifier."""
    if len(buf) < 8 or bytes(buf[4:8]) != identifier:
        raise ValueError(
            f"Not a {what}: expected the flatbuffer file identifier {identifier!r}."
        )
    return FlatbufferTable(buf, struct.unpack_from("<I", buf, 0)[0])


# --- The TFLite model: tensors, metadata entries, packed files -----------------------


@dataclass(frozen=True)
class TensorInfo:
    """A subgraph tensor of a TFLite model (schema.fbs `Tensor`).

    Args:
        name: the tensor's name.
        shape: its shape (`-1` nowhere: the shape of a fixed-size file).
        shape_signature: its shape with `-1` for dynamic dimensions, if recorded.
        type: its `TensorType` enum value (`TENSOR_TYPES` gives the names).
        scale: quantization scales, empty for a float tensor.
        zero_point: quantization zero points.
    """

    name: str
    shape: tuple[int, ...]
    shape_signature: tuple[int, ...] | None
    type: int
    scale: tuple[float, ...]
    zero_point: tuple[int, ...]

    @property
    def type_name(self) -> str:
        return TENSOR_TYPES[self.type] if self.type < len(TENSOR_TYPES) else str(self.type)


def tensor_info(tensor: FlatbufferTable) -> TensorInfo:
    """The `TensorInfo` of a `Tensor` table."""
    # Tensor (schema.fbs): shape 0, type 1, buffer 2, name 3, quantization 4, ...,
    # shape_signature 7. QuantizationParameters: min 0, max 1, scale 2, zero_point 3.
    quantization = tensor.table(4)
    shape_signature = tensor.scalars(7, "i")
    return TensorInfo(
        name=tensor.string(3) or "",
        shape=tuple(tensor.scalars(0, "i") or ()),
        shape_signature=None if shape_signature is None else tuple(shape_signature),
        type=tensor.scalar(1, "b", 0),
        scale=tuple(quantization.scalars(2, "f") or ()) if quantization else (),
        zero_point=tuple(quantization.scalars(3, "q") or ()) if quantization else (),
    )


@dataclass(frozen=True)
class ModelInfo:
    """The subgraph count and the main subgraph's inputs and outputs of a model.

    Args:
        num_subgraphs: how many subgraphs the model has.
        inputs: subgraph 0's input tensors, in order.
        outputs: subgraph 0's output tensors, in order.
    """

    num_subgraphs: int
    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]


def model_info(model: FlatbufferTable) -> ModelInfo:
    """The `ModelInfo` of a `Model` table; raises if it has no subgraph."""
    subgraphs = model.tables(MODEL_SUBGRAPHS) or []
    if not subgraphs:
        raise ValueError("The TFLite model has no subgraph.")
    # SubGraph (schema.fbs): tensors 0, inputs 1, outputs 2, operators 3, name 4.
    main = subgraphs[0]
    tensors = main.table_positions(0) or []

    def infos(slot):
        indices = main.scalars(slot, "i") or ()
        return tuple(tensor_info(FlatbufferTable(main.buf, tensors[i])) for i in indices)

    return ModelInfo(num_subgraphs=len(subgraphs), inputs=infos(1), outputs=infos(2))


def metadata_entries(model: FlatbufferTable) -> list[tuple[str | None, int]]:
    """The model's `Metadata` entries as `(name, buffer index)` pairs."""
    # Metadata (schema.fbs): name 0 (string), buffer 1 (uint).
    entries = model.tables(MODEL_METADATA) or []
    return [(entry.string(0), entry.scalar(1, "I", 0)) for entry in entries]


def buffer_data(model: FlatbufferTable, index: int) -> bytes | None:
    """The data of buffer `index`, `None` if there is no such buffer or no data."""
    buffers = model.tables(MODEL_BUFFERS) or []
    if not 0 <= index < len(buffers):
        return None
    # Buffer (schema.fbs): data 0 ([ubyte], force_align 16), offset 1, size 2.
    return buffers[index].byte_vector(0)


def split_packed_files(
    tflite_model: bytes | bytearray | memoryview,
) -> tuple[memoryview, dict[str, bytes]]:
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


def load_model(
    tflite_model: bytes | bytearray | memoryview,
) -> tuple[FlatbufferTable, dict[str, bytes]]:
    """The `Model` root table of a `.tflite` file's bytes, and its packed files."""
    flatbuffer, files = split_packed_files(tflite_model)
    return root_table(flatbuffer, TFLITE_FILE_IDENTIFIER, "TFLite model"), files


# --- Writing tables with the flatbuffers runtime ---------------------------------------

_PREPEND_SLOT = {
    "b": "PrependInt8Slot",
    "I": "PrependUint32Slot",
    "i": "PrependInt32Slot",
}


def write_table(builder: flatbuffers.Builder, fields: Sequence[tuple[int, str, Any]]) -> int:
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


def write_string(builder: flatbuffers.Builder, text: str | None) -> int | None:
    """A string's offset, `None` (field left out) for an empty or absent one."""
    return builder.CreateString(text) if text else None


def write_offsets(builder: flatbuffers.Builder, offsets: Sequence[int]) -> int:
    """A vector of offsets (of tables or strings)."""
    builder.StartVector(4, len(offsets), 4)
    for offset in reversed(offsets):
        builder.PrependUOffsetTRelative(offset)
    return builder.EndVector()


def write_floats(builder: flatbuffers.Builder, values: Sequence[float]) -> int:
    """A vector of float32."""
    builder.StartVector(4, len(values), 4)
    for value in reversed(values):
        builder.PrependFloat32(float(value))
    return builder.EndVector()


def write_aligned_bytes(builder: flatbuffers.Builder, data: bytes) -> int:
    """A `[ubyte]` vector whose data starts on a 16-byte boundary."""
    # Pads so that the vector's data (not its length prefix) starts on a 16-byte
    # boundary, as `(force_align: 16)` asks; CreateByteVector alone aligns to 4.
    builder.Prep(ALIGNMENT, len(data))
    return builder.CreateByteVector(bytes(data))
