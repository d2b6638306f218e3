"""Stores a metadata flatbuffer and its associated files in a TFLite model.

What tflite-support's `MetadataPopulator` does, without tflite-support (which pins
protobuf<4 and cannot be installed next to TensorFlow 2.21) and without
re-serialising the model: the weights are kept byte for byte.
"""

from __future__ import annotations

import io
import struct
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass

import flatbuffers

from keras_deconvnet.export.tflite_flatbuffer import (
    ALIGNMENT,
    MALFORMED_ERRORS,
    METADATA_BUFFER_NAME,
    METADATA_FILE_IDENTIFIER,
    MODEL_BUFFERS,
    MODEL_METADATA,
    MODEL_SLOTS,
    MODEL_SUBGRAPHS,
    MODEL_VERSION,
    TFLITE_FILE_IDENTIFIER,
    FlatbufferTable,
    root_table,
    split_packed_files,
    write_aligned_bytes,
    write_offsets,
    write_table,
)


def _check_relocatable(model: FlatbufferTable) -> None:
    """Refuses what cannot be moved: unknown Model fields, data outside the flatbuffer."""
    for slot in range(MODEL_SLOTS, model.num_slots):
        if model.field(slot):
            raise ValueError(
                f"The TFLite model has a Model field (slot {slot}) newer than the schema "
                "this writer knows; refusing to drop it."
            )
    # Buffer.offset / Operator.large_custom_options_offset (schema.fbs) locate data
    # stored after the flatbuffer from the start of the file, in models over 2 GB.
    for buffer in model.tables(MODEL_BUFFERS) or []:
        if buffer.scalar(1, "Q", 0) > 1:
            raise ValueError(
                "The TFLite model stores buffers outside its flatbuffer (the >2 GB "
                "layout); adding metadata to such files is not supported."
            )
    for subgraph in model.tables(MODEL_SUBGRAPHS) or []:
        for operator in subgraph.tables(3) or []:
            if operator.scalar(9, "Q", 0) > 1:
                raise ValueError(
                    "The TFLite model stores custom options outside its flatbuffer "
                    "(the >2 GB layout); adding metadata to such files is not supported."
                )


@dataclass(frozen=True)
class _ModelLayout:
    """Where the `Model` table's parts are in the old flatbuffer.

    Args:
        buffers: positions of the `Buffer` tables.
        entries: positions of the `Metadata` tables.
        existing: `(entry index, buffer index)` of `TFLITE_METADATA` entries.
        fields: `(slot, field position, target position)` of every known slot.
    """

    buffers: list[int]
    entries: list[int]
    existing: list[tuple[int, int]]
    fields: list[tuple[int, int, int]]


def _model_layout(flatbuffer: memoryview) -> _ModelLayout:
    try:
        model = root_table(flatbuffer, TFLITE_FILE_IDENTIFIER, "TFLite model")
        _check_relocatable(model)
        entries = model.table_positions(MODEL_METADATA) or []
        existing = []
        for i, position in enumerate(entries):
            entry = FlatbufferTable(flatbuffer, position)
            if entry.string(0) == METADATA_BUFFER_NAME:
                existing.append((i, entry.scalar(1, "I", 0)))
        return _ModelLayout(
            buffers=model.table_positions(MODEL_BUFFERS) or [],
            entries=entries,
            existing=existing,
            fields=[(s, model.field(s), model.target(s)) for s in range(MODEL_SLOTS)],
        )
    except MALFORMED_ERRORS as error:
        raise ValueError(f"The TFLite model's flatbuffer is malformed: {error}") from error


def _metadata_vectors(
    builder: flatbuffers.Builder, layout: _ModelLayout, metadata: bytes, old_offset
) -> dict[int, int]:
    """The new `buffers` and `metadata` vectors of the Model table, by slot."""
    metadata_buffer = write_table(builder, [(0, "o", write_aligned_bytes(builder, metadata))])
    buffer_offsets = [old_offset(p) for p in layout.buffers]
    if not buffer_offsets:
        # Buffer 0 must be the empty sentinel (schema.fbs); never put metadata there.
        buffer_offsets.append(write_table(builder, []))
    entry_offsets = [old_offset(p) for p in layout.entries]
    existing = layout.existing
    if existing and 0 < existing[0][1] < len(buffer_offsets):
        buffer_offsets[existing[0][1]] = metadata_buffer
    else:
        buffer_offsets.append(metadata_buffer)
        name = builder.CreateString(METADATA_BUFFER_NAME)
        entry = write_table(builder, [(0, "o", name), (1, "I", len(buffer_offsets) - 1)])
        if existing:  # an entry pointing nowhere useful: replace it.
            entry_offsets[existing[0][0]] = entry
        else:
            entry_offsets.append(entry)
    return {
        MODEL_BUFFERS: write_offsets(builder, buffer_offsets),
        MODEL_METADATA: write_offsets(builder, entry_offsets),
    }


def _rewrite_model(flatbuffer: memoryview, layout: _ModelLayout, metadata: bytes) -> io.BytesIO:
    """A new root `Model` table and vectors in front of the old flatbuffer, kept whole."""
    # The old flatbuffer goes last, padded to a multiple of 16 bytes so that, the
    # whole file also being a multiple of 16 (the builder's `minalign`), it starts on
    # a 16-byte boundary and its buffers keep their alignment.
    old = bytes(flatbuffer) + bytes(-len(flatbuffer) % ALIGNMENT)
    end = len(old)
    builder = flatbuffers.Builder(end + len(metadata) + 4096)
    builder.Prep(ALIGNMENT, end)
    builder.CreateByteVector(old)
    del old

    def old_offset(position: int) -> int:
        # Builder offsets count from the end of the buffer: byte `position` of the old
        # flatbuffer lies `end - position` bytes before it.
        return end - position

    new_vectors = _metadata_vectors(builder, layout, metadata, old_offset)
    builder.StartObject(MODEL_SLOTS)
    for slot, field, target in layout.fields:
        if slot == MODEL_VERSION:
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
    return output


def _append_files(output: io.BytesIO, files: Mapping[str, bytes]) -> None:
    # ZipFile in "w" mode writes from the current position and records local header
    # offsets from the start of the file, as MetadataPopulator's archives do.
    # MediaPipe reads the files in place and refuses compressed ones.
    with zipfile.ZipFile(output, "w", compression=zipfile.ZIP_STORED) as archive:
        for file_name, contents in files.items():
            # A fixed timestamp keeps the output reproducible.
            info = zipfile.ZipInfo(file_name, date_time=(1980, 1, 1, 0, 0, 0))
            archive.writestr(info, bytes(contents))


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
    >>> from keras_deconvnet.export import read_metadata
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
    root_table(memoryview(metadata), METADATA_FILE_IDENTIFIER, "TFLite metadata flatbuffer")
    flatbuffer, _ = split_packed_files(tflite_model)
    output = _rewrite_model(flatbuffer, _model_layout(flatbuffer), metadata)
    if associated_files:
        _append_files(output, associated_files)
    return output.getvalue()
