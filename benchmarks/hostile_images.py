"""Small image files that declare far more pixels than their headers first suggest.

Each file's first frame (or page) is 1x1, what a check of the logical screen or the
first frame sees; a later frame declares `width x height`. A decoder that sizes its
output by every frame's own descriptor (TensorFlow's GIF decoder does: its output is
the largest frame's size, and every frame is decoded) turns a few kilobytes into
gigabytes. The soak sends them to the local server, and the tests of the pixel limits
(tests/serving/limits_test.py) and of `load_image` use them.

Example:

>>> data = gif_with_large_frame(3000, 2000)
>>> data[:6], len(data) < 20_000
(b'GIF89a', True)
"""

from __future__ import annotations

import io
import struct
import zlib

_PALETTE = [0, 0, 0, 255, 255, 255, 128, 128, 128, 64, 64, 64]


def _gif_blocks(width: int, height: int) -> tuple[bytes, bytes]:
    """`(global colour table, image blocks)` of a one-frame GIF of one colour, as
    Pillow encodes it (LZW, so a uniform 8000x8000 frame takes about 48 KB)."""
    from PIL import Image

    image = Image.new("P", (width, height), 1)
    image.putpalette(_PALETTE)
    buffer = io.BytesIO()
    image.save(buffer, "GIF")
    data = buffer.getvalue()
    flags = data[10]
    table_end = 13 + (3 * (2 << (flags & 7)) if flags & 0x80 else 0)
    if data[-1:] != b";":
        raise ValueError("unexpected GIF layout from Pillow")
    return data[13:table_end], data[table_end:-1]


def gif_with_large_frame(width: int = 8000, height: int = 8000) -> bytes:
    """A GIF whose logical screen and first frame are 1x1 and whose second frame is
    `width x height` (one colour: about 48 KB at 8000x8000)."""
    table, first = _gif_blocks(1, 1)
    _, second = _gif_blocks(width, height)
    flags = 0x80 | 0x70 | ((len(table) // 3).bit_length() - 2)
    screen = struct.pack("<HHBBB", 1, 1, flags, 0, 0)
    return b"GIF89a" + screen + table + first + second + b";"


def _png_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    chunks, position = [], 8
    while position < len(data):
        (length,) = struct.unpack(">I", data[position:position + 4])
        kind = data[position + 4:position + 8]
        chunks.append((kind, data[position + 8:position + 8 + length]))
        position += 12 + length
    return chunks


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(
        ">I", zlib.crc32(kind + body) & 0xFFFFFFFF)


def apng_with_large_frame(width: int = 8000, height: int = 8000) -> bytes:
    """An animated PNG whose canvas (IHDR) and first frame are 1x1 and whose second
    frame's control chunk (fcTL) declares `width x height`."""
    from PIL import Image

    frames = [Image.new("RGB", (1, 1), (i * 90, 0, 0)) for i in range(2)]
    buffer = io.BytesIO()
    frames[0].save(buffer, "PNG", save_all=True, append_images=frames[1:], duration=40)
    out, seen = [], 0
    for kind, body in _png_chunks(buffer.getvalue()):
        if kind == b"fcTL":
            seen += 1
            if seen == 2:
                body = body[:4] + struct.pack(">II", width, height) + body[12:]
        out.append(_png_chunk(kind, body))
    return buffer.getvalue()[:8] + b"".join(out)


def webp_with_large_frame(width: int = 8000, height: int = 8000) -> bytes:
    """An animated WebP whose canvas and first frame are 1x1 and whose second frame
    (ANMF chunk) declares `width x height`."""
    from PIL import Image

    frames = [Image.new("RGB", (1, 1), (0, i * 90, 0)) for i in range(2)]
    buffer = io.BytesIO()
    frames[0].save(buffer, "WEBP", save_all=True, append_images=frames[1:], duration=40,
                   lossless=True)
    data = bytearray(buffer.getvalue())
    position, seen = 12, 0
    while position + 8 <= len(data):
        kind = bytes(data[position:position + 4])
        (length,) = struct.unpack("<I", data[position + 4:position + 8])
        if kind == b"ANMF":
            seen += 1
            if seen == 2:
                body = position + 8
                data[body + 6:body + 9] = (width - 1).to_bytes(3, "little")
                data[body + 9:body + 12] = (height - 1).to_bytes(3, "little")
        position += 8 + length + (length & 1)
    return bytes(data)


def tiff_with_large_page(width: int = 8000, height: int = 8000) -> bytes:
    """A two-page TIFF: a 1x1 first page, then a `width x height` one (deflated)."""
    from PIL import Image

    pages = [Image.new("L", (1, 1), 7), Image.new("L", (width, height), 9)]
    buffer = io.BytesIO()
    pages[0].save(buffer, "TIFF", save_all=True, append_images=pages[1:],
                  compression="tiff_deflate")
    return buffer.getvalue()
