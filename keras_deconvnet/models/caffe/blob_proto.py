"""Caffe `BlobProto` messages as read-only NumPy views into the file.

BlobProto (fork and BVLC): num 1, channels 2, height 3, width 4 (the legacy 4-D shape),
data 5 (packed float), diff 6; BVLC only: shape 7 (BlobShape: dim 1, packed int64),
double_data 8, double_diff 9. Packed values are views into the buffer, never copies;
unpacked repeated values (one tag per value, as some old writers do) are gathered into
one copy. Caffe reads `double_data` when present, else `data`; `diff` and `double_diff`
are skipped unread.

Reading is linear in the blob's bytes however its fields are ordered: each piece of
values (a packed field or a run of unpacked ones) is recorded as `(offset, count,
stride)` in flat integer arrays and gathered once at the end, so values interleaved
with another field cost O(1) each. A shape has at most 32 axes (`kMaxBlobAxes` in BVLC
`include/caffe/blob.hpp`).

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
from array import array
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

__all__ = ["MAX_BLOB_AXES", "read_blob", "read_blob_shape"]

# BVLC include/caffe/blob.hpp: `const int kMaxBlobAxes = 32;` (Blob::Reshape checks it).
MAX_BLOB_AXES = 32

# The value fields: float `data` and `double_data`, by field number.
_DATA, _DOUBLE_DATA = 5, 8
_WIDTHS = {_DATA: 4, _DOUBLE_DATA: 8}
_DTYPES = {_DATA: "<f4", _DOUBLE_DATA: "<f8"}
# Gathering many pieces: a piece this long is copied on its own; shorter ones are
# gathered together, about this many values at a time.
_LARGE_PIECE = 1 << 16
_GATHER_CHUNK = 1 << 20
# Their one-byte tags when unpacked: data as fixed32, double_data as fixed64.
_UNPACKED_KEYS = (_DATA << 3 | I32, _DOUBLE_DATA << 3 | I64)


def read_blob_shape(reader: WireReader, start: int, end: int, where: str) -> tuple[int, ...]:
    """The dims of the BlobShape message in `[start, end)` (packed or not).

    Raises:
        CaffeModelError: for a corrupt or negative dimension, or more than
            `MAX_BLOB_AXES` of them.
    """
    dims: list[int] = []
    for number, wire, a, b, at in reader.fields(start, end, where):
        if number != 1:
            continue
        if wire == VARINT:
            dims.append(signed_varint(a))
        elif wire == LEN:
            left = MAX_BLOB_AXES - len(dims)
            dims.extend(signed_varint(v) for v in reader.packed_varints(
                a, b, where, max(left, 0), "blob dimensions (Caffe allows 32)"))
        else:
            raise reader.error(f"corrupt BlobShape: dim has wire type {wire}", where, at)
        if len(dims) > MAX_BLOB_AXES:
            raise reader.error(
                f"more than {MAX_BLOB_AXES} blob dimensions (Caffe allows 32)", where, at)
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
    number = _DOUBLE_DATA if fields.pieces[_DOUBLE_DATA].count else _DATA
    pieces = fields.pieces[number]
    expected = math.prod(shape)
    if pieces.count != expected:
        raise reader.error(
            f"blob of shape {shape} needs {expected} values but the file holds "
            f"{pieces.count}", where, start)
    array_ = pieces.gather(reader, number).reshape(shape)
    array_.flags.writeable = False
    return array_


class _Pieces:
    """Where a value field's pieces lie: `(first value offset, count, stride)` each.

    A packed field is one piece of stride `width`; a run of unpacked values one piece of
    stride `1 + width` (a one-byte tag before each value). Flat integer arrays, not a
    Python object per piece, so a million one-value pieces cost 24 MB, not 300.
    """

    def __init__(self) -> None:
        self.starts = array("q")
        self.counts = array("q")
        self.strides = array("q")
        self.count = 0

    def add(self, start: int, count: int, stride: int) -> None:
        self.starts.append(start)
        self.counts.append(count)
        self.strides.append(stride)
        self.count += count

    def gather(self, reader: WireReader, number: int) -> np.ndarray:
        """The values, a view of the buffer when they are one packed piece, else a copy."""
        dtype, width = np.dtype(_DTYPES[number]), _WIDTHS[number]
        if not self.starts:
            return np.zeros(0, dtype)
        if len(self.starts) == 1 and self.strides[0] == width:
            return np.frombuffer(reader.view, dtype, self.count, self.starts[0])
        buffer = np.frombuffer(reader.view, np.uint8)
        out = np.empty((self.count, width), np.uint8)
        counts = np.frombuffer(self.counts, np.int64)
        firsts = np.frombuffer(self.starts, np.int64)
        strides = np.frombuffer(self.strides, np.int64)
        ends = np.cumsum(counts)
        # Chunks of pieces: a large piece alone (one strided copy), small ones together
        # up to about _GATHER_CHUNK values (one vectorised gather), so the temporary
        # offsets stay small whatever the file holds.
        large = np.flatnonzero(counts >= _LARGE_PIECE)
        splits = np.union1d(
            np.searchsorted(ends, np.arange(_GATHER_CHUNK, self.count, _GATHER_CHUNK)),
            np.concatenate([large, large + 1]))
        splits = splits[(splits > 0) & (splits < len(counts))]
        for first, last in zip([0, *splits.tolist()], [*splits.tolist(), len(counts)]):
            row = int(ends[first] - counts[first])
            if last - first == 1:
                count, start, stride = int(counts[first]), int(firsts[first]), int(strides[first])
                out[row:row + count] = np.lib.stride_tricks.as_strided(
                    buffer[start:], (count, width), (stride, 1), writeable=False)
                continue
            chunk = counts[first:last]
            total = int(chunk.sum())
            index = np.arange(total, dtype=np.int64)
            index -= np.repeat(np.cumsum(chunk) - chunk, chunk)
            offsets = np.repeat(firsts[first:last], chunk)
            offsets += index * np.repeat(strides[first:last], chunk)
            del index
            for byte in range(width):
                out[row:row + total, byte] = buffer[offsets + byte]
        return out.view(dtype).reshape(self.count)


@dataclass
class _BlobFields:
    """What one pass over a BlobProto found: legacy dims, `shape`, value pieces."""

    legacy: dict[int, int] = field(default_factory=dict)
    shape: tuple[int, ...] | None = None
    pieces: dict[int, _Pieces] = field(
        default_factory=lambda: {_DATA: _Pieces(), _DOUBLE_DATA: _Pieces()})


def _read_blob_fields(reader: WireReader, start: int, end: int, where: str) -> _BlobFields:
    fields = _BlobFields()
    view = reader.view
    pos = start
    while pos < end:
        tag_at = pos
        reader.fields_left -= 1
        if reader.fields_left < 0:
            reader.spend(0, where, tag_at)  # raises
        key = view[pos]
        if key < 0x80:
            pos += 1
        else:
            key, pos = reader.varint(pos, end, where)
        wire = key & 7
        if wire == I32 or wire == I64:
            width = 4 if wire == I32 else 8
            if pos - tag_at != 1:
                if pos + width > end:
                    raise reader.overrun(f"field {key >> 3}", pos + width, end, where, tag_at)
                pos += width
                continue
            # An unpacked repeated field (one tag per value, as some old writers do): the
            # whole run of equal one-byte tags at once.
            record = 1 + width
            if tag_at + 2 * record <= end and view[tag_at + record] == key:
                count = reader.run_length(tag_at, end, key, record, where)
            elif tag_at + record <= end:
                count = 1  # the common case of interleaved fields, without a call
            else:
                raise reader.overrun(f"field {key >> 3}", tag_at + record, end, where, tag_at)
            if key in _UNPACKED_KEYS:
                fields.pieces[key >> 3].add(pos, count, 1 + width)
            pos = tag_at + count * (1 + width)
        elif wire == VARINT:
            value, pos = reader.varint(pos, end, where)
            if 1 <= key >> 3 <= 4:
                fields.legacy[key >> 3] = signed_varint(value)
        elif wire == LEN:
            pos = _read_length_delimited(reader, fields, key >> 3, tag_at, pos, end, where)
        else:
            raise reader.error(
                f"corrupt blob: field {key >> 3} has wire type {wire}", where, tag_at)
        # diff (6), double_diff (9) and unknown fields are skipped unread.
    return fields


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
        if length:
            fields.pieces[number].add(a, length // width, width)
    return b
