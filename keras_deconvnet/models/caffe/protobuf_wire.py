"""A protobuf wire-format reader over one buffer, as the caffemodel parser needs it.

Caffe's files are protobuf messages; rather than generating code from `caffe.proto`, the
reader walks the wire format directly (varints, fixed-width values and length-delimited
payloads), so that payloads are never copied: the caller takes NumPy views of the spans
it is given. Every error is a `CaffeModelError` naming the file and a byte offset.

Example:

>>> reader = WireReader(bytes([0x08, 0x96, 0x01, 0x12, 0x02, 0x68, 0x69]), "<bytes>")
>>> [(number, wire) for number, wire, *_ in reader.fields(0, reader.size, "")]
[(1, 0), (2, 2)]
>>> reader.varint(1, reader.size, "")  # 150, and the position after it
(150, 3)
>>> reader.string(5, 7, "")
'hi'
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from keras_deconvnet.models.caffe.caffe_net import CaffeModelError

__all__ = ["I32", "I64", "LEN", "VARINT", "WIRE_NAMES", "WireReader", "signed_varint"]

# Protobuf wire types.
VARINT, I64, LEN, I32 = 0, 1, 2, 5
WIRE_NAMES = {0: "varint", 1: "fixed64", 2: "length-delimited", 3: "start-group",
              4: "end-group", 5: "fixed32"}


def signed_varint(value: int) -> int:
    """Two's-complement int64 of a decoded varint (negative int32s take 10 bytes).

    Example:

    >>> signed_varint(2**64 - 1), signed_varint(7)
    (-1, 7)
    """
    return value - (1 << 64) if value >= 1 << 63 else value


class WireReader:
    """Wire-format walker over one buffer; every error names the file and an offset.

    Args:
        buffer: the bytes (or a memory map) to read.
        path: the file's name, for error messages.

    Attributes:
        view: a `memoryview` of `buffer`.
        size: its length in bytes.
    """

    def __init__(self, buffer: Any, path: str) -> None:
        self.buffer = buffer
        self.view = memoryview(buffer)
        self.size = len(self.view)
        self.path = path

    # -- errors -----------------------------------------------------------------------

    def error(self, message: str, where: str = "", offset: int | None = None) -> CaffeModelError:
        """A `CaffeModelError` naming the file, `where` in it and the byte `offset`."""
        parts = [self.path + ":"]
        if where:
            parts.append(where + ":")
        parts.append(message)
        if offset is not None:
            parts.append(f"(at byte offset {offset})")
        return CaffeModelError(" ".join(parts))

    def overrun(self, what: str, needed_end: int, end: int, where: str, at: int) -> CaffeModelError:
        """The error for `what` running to `needed_end`, past the message's `end`."""
        if end >= self.size:
            return self.error(
                f"truncated file: {what} needs bytes up to offset {needed_end} but the "
                f"file ends at {self.size} (an incomplete download?)", where, at)
        return self.error(
            f"corrupt message: {what} runs to offset {needed_end}, past the end of its "
            f"enclosing message at {end}", where, at)

    # -- wire primitives --------------------------------------------------------------

    def varint(self, pos: int, end: int, where: str) -> tuple[int, int]:
        """The varint at `pos` and the position after it."""
        view = self.view
        start = pos
        result = 0
        shift = 0
        while True:
            if pos >= end:
                raise self.overrun("a varint", pos + 1, end, where, start)
            byte = view[pos]
            pos += 1
            result |= (byte & 0x7F) << shift
            if byte < 0x80:
                return result, pos
            shift += 7
            if shift >= 70:
                raise self.error("corrupt varint longer than 10 bytes", where, start)

    def fields(self, start: int, end: int, where: str) -> Iterator[tuple[int, int, int, int, int]]:
        """Yields (field, wire type, value or payload start, payload end, tag offset)."""
        pos = start
        while pos < end:
            tag_at = pos
            key, pos = self.varint(pos, end, where)
            number, wire = key >> 3, key & 7
            if number == 0:
                raise self.error("corrupt message: field number 0", where, tag_at)
            if wire == VARINT:
                value, pos = self.varint(pos, end, where)
                yield number, wire, value, pos, tag_at
            elif wire in (I64, I32):
                width = 8 if wire == I64 else 4
                if pos + width > end:
                    raise self.overrun(f"field {number}", pos + width, end, where, tag_at)
                yield number, wire, pos, pos + width, tag_at
                pos += width
            elif wire == LEN:
                length, pos = self.varint(pos, end, where)
                if pos + length > end:
                    raise self.overrun(
                        f"field {number} of {length} bytes", pos + length, end, where, tag_at)
                yield number, wire, pos, pos + length, tag_at
                pos += length
            else:
                raise self.error(
                    f"corrupt message: field {number} has wire type {wire} "
                    f"({WIRE_NAMES.get(wire, 'invalid')}), which Caffe never writes",
                    where, tag_at)

    def string(self, start: int, end: int, where: str) -> str:
        """The UTF-8 text of `[start, end)`."""
        try:
            return bytes(self.view[start:end]).decode("utf-8")
        except UnicodeDecodeError:
            raise self.error("a name is not UTF-8 text", where, start) from None

    def packed_varints(self, start: int, end: int, where: str) -> list[int]:
        """The varints packed in `[start, end)`."""
        values = []
        pos = start
        while pos < end:
            value, pos = self.varint(pos, end, where)
            values.append(value)
        return values

    def unpacked_run(
        self, tag_at: int, end: int, key: int, width: int, where: str
    ) -> tuple[int, int]:
        """Counts the records `key, value` repeated from `tag_at`; returns (count, end)."""
        record = 1 + width
        available = (end - tag_at) // record
        if available == 0:
            raise self.overrun(f"field {key >> 3}", tag_at + record, end, where, tag_at)
        records = np.frombuffer(self.view, np.uint8, available * record, tag_at)
        records = records.reshape(available, record)
        mismatched = np.flatnonzero(records[:, 0] != key)
        count = int(mismatched[0]) if mismatched.size else available
        return count, tag_at + count * record
