"""A protobuf wire-format reader over one buffer, as the caffemodel parser needs it.

Caffe's files are protobuf messages; rather than generating code from `caffe.proto`, the
reader walks the wire format directly (varints, fixed-width values and length-delimited
payloads), so that payloads are never copied: the caller takes NumPy views of the spans
it is given. Every error is a `CaffeModelError` naming the file and a byte offset.

Work is linear in the file's size and bounded: the reader walks at most `MAX_FIELDS`
fields in all (a real caffemodel has a few thousand; a run of unpacked values counts
as one), packed varint lists stop at the caller's limit instead of being decoded
whole, and a run of equal tags is measured in chunks that grow with the run, so
interleaved fields cost O(1) each instead of a scan to the end of the message.

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

__all__ = [
    "I32", "I64", "LEN", "MAX_FIELDS", "VARINT", "WIRE_NAMES", "WireReader", "signed_varint",
]

# Protobuf wire types.
VARINT, I64, LEN, I32 = 0, 1, 2, 5
WIRE_NAMES = {0: "varint", 1: "fixed64", 2: "length-delimited", 3: "start-group",
              4: "end-group", 5: "fixed32"}

# Fields one read may walk. A real caffemodel has a few thousand (DeconvNet's: about 1,500);
# a run of unpacked values is one. Past this, the file is refused in bounded time.
MAX_FIELDS = 1_000_000
# Records of a run checked in plain Python before the chunked NumPy scan takes over.
_SHORT_RUN = 8


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
        self.fields_left = MAX_FIELDS

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

    def spend(self, count: int, where: str, at: int) -> None:
        """Counts `count` fields against `MAX_FIELDS`; raises once the budget is spent."""
        self.fields_left -= count
        if self.fields_left < 0:
            raise self.error(
                f"more than {MAX_FIELDS:,} protobuf fields; a real caffemodel has a few "
                "thousand (a corrupt or hostile file?)", where, at)

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
            self.spend(1, where, tag_at)
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

    def packed_varints(
        self, start: int, end: int, where: str, limit: int, what: str = "values"
    ) -> list[int]:
        """The varints packed in `[start, end)`; more than `limit` of them is an error.

        The error comes after `limit + 1` values, so a 16 MB list costs no more than a
        short one.
        """
        values: list[int] = []
        pos = start
        while pos < end:
            if len(values) == limit:
                raise self.error(f"more than {limit:,} {what}", where, start)
            value, pos = self.varint(pos, end, where)
            values.append(value)
        return values

    def run_length(self, tag_at: int, end: int, key: int, record: int, where: str) -> int:
        """How many `record`-byte records starting at `tag_at` begin with the byte `key`.

        The record at `tag_at` must fit before `end` (else: an overrun error); a partial
        record at the end of the run is left for the caller's next tag to report. Short
        runs are counted in Python; long ones in NumPy chunks that double, so the cost is
        proportional to the run, never to the rest of the message.
        """
        if tag_at + record > end:
            raise self.overrun(f"field {key >> 3}", tag_at + record, end, where, tag_at)
        view = self.view
        count, pos = 1, tag_at + record
        for _ in range(_SHORT_RUN):
            if pos + record > end or view[pos] != key:
                return count
            count, pos = count + 1, pos + record
        chunk = 64
        while True:
            available = (end - pos) // record
            if available == 0:
                return count
            n = min(chunk, available)
            tags = np.frombuffer(view, np.uint8, n * record, pos)[::record]
            mismatched = np.flatnonzero(tags != key)
            if mismatched.size:
                return count + int(mismatched[0])
            count, pos, chunk = count + n, pos + n * record, chunk * 2
