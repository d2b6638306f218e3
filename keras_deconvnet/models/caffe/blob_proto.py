"""Caffe `BlobProto` messages as read-only NumPy views into the file.

BlobProto (fork and BVLC): num 1, channels 2, height 3, width 4 (the legacy 4-D shape),
data 5 (packed float), diff 6; BVLC only: shape 7 (BlobShape: dim 1, packed int64),
double_data 8, double_diff 9. Packed values are views into the buffer, never copies;
unpacked repeated values (one tag per value, as some old writers do) are gathered into
one copy. Caffe reads `double_data` when present, else `data`; `diff` and `double_diff`
are skipped unread.

Example:

>>> import struct
>>> from keras_deconvnet.models.caffe.protobuf_wire import WireReader
>>> shape = bytes([0x3A, 0x04, 0x0A, 0x02, 0x02, 0x03])  # shape { dim: [2, 3] }
>>> data = bytes([0x2A, 24]) + struct.pack("<6f", *range(6))  # data: packed floats
>>> reader = WireReader(shape + data, "<bytes>")
>>> read_blob(reader, 0, reader.size, "blob").tolist()
[[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]]
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from keras_deconvnet.models.caffe.protobuf_wire import (
    I32,
    I64,
    LEN,
    VARINT,
    WireReader,
    signed_varint,
)

__all__ = ["read_blob", "read_blob_shape"]

# The value fields: float `data` and `double_data`, by field number.
_DATA, _DOUBLE_DATA = 5, 8
_WIDTHS = {_DATA: 4, _DOUBLE_DATA: 8}
_DTYPES = {_DATA: "<f4", _DOUBLE_DATA: "<f8"}


def read_blob_shape(reader: WireReader, start: int, end: int, where: str) -> tuple[int, ...]:
    """The dims of the BlobShape message in `[start, end)` (packed or not).

    Raises:
        CaffeModelError: for a corrupt or negative dimension.
    """
    dims: list[int] = []
    for number, wire, a, b, at in reader.fields(start, end, where):
        if number != 1:
            continue
        if wire == VARINT:
            dims.append(signed_varint(a))
        elif wire == LEN:
            dims.extend(signed_varint(v) for v in reader.packed_varints(a, b, where))
        else:
            raise reader.error(f"corrupt BlobShape: dim has wire type {wire}", where, at)
    if any(d < 0 for d in dims):
        raise reader.error(f"negative blob dimension in {tuple(dims)}", where, start)
    return tuple(dims)


def read_blob(reader: WireReader, start: int, end: int, where: str) -> np.ndarray:
    """The values of the BlobProto in `[start, end)`, read-only, in the blob's Caffe shape.

    The shape is the legacy 4-D `(num, channels, height, width)` when any of those fields
    is present (as BVLC's `Blob::FromProto`), else `shape.dim`. float32 from `data`,
    float64 from `double_data`.

    Raises:
        CaffeModelError: for a corrupt message, a negative dimension, or a value count that
            does not match the shape.
    """
    fields = _read_blob_fields(reader, start, end, where)
    shape = fields.shape if fields.shape is not None else ()
    if fields.legacy:
        shape = tuple(fields.legacy.get(i, 0) for i in (1, 2, 3, 4))
        if any(d < 0 for d in shape):
            raise reader.error(f"negative blob dimension in {shape}", where, start)
    values = fields.pieces[_DOUBLE_DATA] or fields.pieces[_DATA]
    dtype = np.dtype(_DTYPES[_DOUBLE_DATA if fields.pieces[_DOUBLE_DATA] else _DATA])
    count = sum(int(piece.size) for piece in values)
    expected = math.prod(shape)
    if count != expected:
        raise reader.error(
            f"blob of shape {shape} needs {expected} values but the file holds {count}",
            where, start)
    if not values:
        array = np.zeros(shape, dtype)
    elif len(values) == 1:
        array = values[0]
    else:
        array = np.concatenate(values)
    array = array.reshape(shape)
    array.flags.writeable = False
    return array


@dataclass
class _BlobFields:
    """What one pass over a BlobProto found: legacy dims, `shape`, value pieces."""

    legacy: dict[int, int] = field(default_factory=dict)
    shape: tuple[int, ...] | None = None
    pieces: dict[int, list[np.ndarray]] = field(
        default_factory=lambda: {_DATA: [], _DOUBLE_DATA: []})


def _read_blob_fields(reader: WireReader, start: int, end: int, where: str) -> _BlobFields:
    fields = _BlobFields()
    pos = start
    while pos < end:
        tag_at = pos
        key, pos = reader.varint(pos, end, where)
        number, wire = key >> 3, key & 7
        if wire in (I32, I64):
            pos = _read_fixed_width(reader, fields, key, tag_at, pos, end, where)
        elif wire == VARINT:
            value, pos = reader.varint(pos, end, where)
            if number in (1, 2, 3, 4):
                fields.legacy[number] = signed_varint(value)
        elif wire == LEN:
            pos = _read_length_delimited(reader, fields, number, tag_at, pos, end, where)
        else:
            raise reader.error(
                f"corrupt blob: field {number} has wire type {wire}", where, tag_at)
        # diff (6), double_diff (9) and unknown fields are skipped unread.
    return fields


def _read_fixed_width(
    reader: WireReader, fields: _BlobFields, key: int, tag_at: int, pos: int, end: int,
    where: str,
) -> int:
    """A fixed32 / fixed64 field: an unpacked run of values, or one skipped value."""
    number, wire = key >> 3, key & 7
    width = 4 if wire == I32 else 8
    if pos - tag_at != 1:
        if pos + width > end:
            raise reader.overrun(f"field {number}", pos + width, end, where, tag_at)
        return pos + width
    # An unpacked repeated float/double field (one tag per value, as some old writers
    # do): gather the whole run of equal tags at once.
    count, pos = reader.unpacked_run(tag_at, end, key, width, where)
    if (number, wire) in ((_DATA, I32), (_DOUBLE_DATA, I64)):
        records = np.frombuffer(
            reader.view, np.uint8, count * (1 + width), tag_at
        ).reshape(count, 1 + width)
        run = np.ascontiguousarray(records[:, 1:]).view(_DTYPES[number]).reshape(count)
        fields.pieces[number].append(run)
    return pos


def _read_length_delimited(
    reader: WireReader, fields: _BlobFields, number: int, tag_at: int, pos: int, end: int,
    where: str,
) -> int:
    """A length-delimited field: the BlobShape, or packed values viewed in place."""
    length, pos = reader.varint(pos, end, where)
    a, b = pos, pos + length
    if b > end:
        raise reader.overrun(f"field {number} of {length} bytes", b, end, where, tag_at)
    if number == 7:
        fields.shape = read_blob_shape(reader, a, b, where)
    elif number in _WIDTHS:
        width = _WIDTHS[number]
        if length % width:
            raise reader.error(
                f"packed {'float' if width == 4 else 'double'} data of {length} "
                f"bytes is not a multiple of {width}", where, tag_at)
        fields.pieces[number].append(
            np.frombuffer(reader.view, _DTYPES[number], length // width, a))
    return b
