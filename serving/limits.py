"""Limits on the work one request can cause, checked before anything is decoded or run.

A small request must not cause huge work. Every predict request is checked against
`RequestLimits` before it reaches the graph, and refused with `INVALID_ARGUMENT`
(HTTP 400) and a one-line message naming the limit (the `deconvnet serve` flag) and
the value received:

- rows: at most `max_rows_per_request` rows (the batch axis), as TF Serving refuses a
  task larger than its maximum batch size;
- encoded images (string inputs whose name contains "image"): their sizes are read from
  the headers only (Pillow's `Image.open` does not decode). Each image counts
  `width x height x frames` against `max_image_pixels`, with the size the decoder
  will really produce: for a GIF, the largest of the logical screen and every frame's
  own descriptor (TensorFlow sizes its output by the largest frame, and decodes every
  frame even with `expand_animations=False`); a GIF frame counts at least
  `MIN_FRAME_PIXELS`, the decoder's cost per frame, and GIF frames are counted by a
  scan that stops once over the limit. The request counts
  `largest height x largest width x all frames` against `max_request_pixels`, since
  the label maps of one batch are padded to its largest image. Bytes whose size cannot
  be read are refused: they cannot be bounded;
- non-finite numbers (NaN, Infinity, or values out of the input's float range) are
  refused (see `tensors.convert_input`);
- the answer: at most `max_response_values` values, estimated from the signature's
  output shapes before the graph runs when they are known, and checked again on the
  real outputs before anything is encoded (an estimate is never trusted alone).
"""

from __future__ import annotations

import dataclasses
import io
import math
import struct
from collections.abc import Sequence

import numpy as np

from keras_deconvnet.serving.errors import ServingError

DEFAULT_MAX_ROWS_PER_REQUEST = 8
DEFAULT_MAX_IMAGE_PIXELS = 40_000_000
DEFAULT_MAX_REQUEST_PIXELS = 40_000_000
DEFAULT_MAX_RESPONSE_VALUES = 50_000_000

IMAGE_FORMATS = "JPEG, PNG, GIF, BMP or WebP"
# What decoding one GIF frame costs beyond its pixels, in pixels (measured: ~2 us per
# frame against ~6 ns per pixel); a frame counts at least this much.
MIN_FRAME_PIXELS = 1024


@dataclasses.dataclass(frozen=True)
class RequestLimits:
    """The limits on one predict request (see the module docstring).

    Args:
        max_rows_per_request: rows (batch size) of one request; with batching, at
            most the batching `max_batch_size`.
        max_image_pixels: `width x height x frames` of one encoded image.
        max_request_pixels: `largest height x largest width x frames` summed over
            the encoded images of one request (the padded label maps).
        max_response_values: values (elements) of all the outputs of one answer.
    """

    max_rows_per_request: int = DEFAULT_MAX_ROWS_PER_REQUEST
    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS
    max_request_pixels: int = DEFAULT_MAX_REQUEST_PIXELS
    max_response_values: int = DEFAULT_MAX_RESPONSE_VALUES

    def __post_init__(self):
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"`{field.name}` must be an int >= 1. Received: {value!r}")

    def check_rows(self, rows: int) -> None:
        """Refuses a request of more than `max_rows_per_request` rows."""
        if rows > self.max_rows_per_request:
            raise ServingError(
                f"The request has {rows} rows, over the limit of "
                f"{self.max_rows_per_request} rows per request (--max-rows-per-request, "
                "the batch size); send smaller batches"
            )


@dataclasses.dataclass(frozen=True)
class ImageExtent:
    """The decoded size of one encoded image (or of a padded batch of them).

    Attributes:
        height, width: the (largest) size.
        frames: the frames decoded (all images together for a batch).
        frame_cost: the pixels one frame counts at least (the decoder's overhead per
            frame; 0 for single-frame images).
    """

    height: int
    width: int
    frames: int = 1
    frame_cost: int = 0

    @property
    def pixels(self) -> int:
        return max(self.height * self.width, self.frame_cost) * self.frames


def gif_frames(data: bytes, stop_after: int) -> int:
    """The image descriptors (frames) of a GIF, counting no further than `stop_after`."""
    return gif_frame_extent(data, stop_after)[0]


def gif_frame_extent(data: bytes, stop_after: int) -> tuple[int, int, int]:
    """`(frames, largest frame width, largest frame height)` of a GIF, from its image
    descriptors, counting no further than `stop_after` frames.

    Walks the block structure without decoding (Pillow's `n_frames` does too, but at
    ~14 us a frame, a minute for a 64 MB file of tiny frames). Every frame's own
    descriptor counts: TensorFlow's GIF decoder sizes its output by the largest frame,
    whatever the logical screen says (a 1x1 screen with an 8000x8000 second frame
    decodes to 8000x8000).
    """
    size = len(data)
    if size < 13:
        return 1, 0, 0
    position = 13
    if data[10] & 0x80:  # global colour table
        position += 3 * (2 << (data[10] & 7))
    frames = width = height = 0
    while position < size and frames <= stop_after:
        block = data[position]
        if block == 0x2C:  # image descriptor, local colour table, LZW code size
            frames += 1
            if position + 10 > size:
                break
            frame_width, frame_height = struct.unpack_from("<HH", data, position + 5)
            width, height = max(width, frame_width), max(height, frame_height)
            flags = data[position + 9]
            position += 10 + (3 * (2 << (flags & 7)) if flags & 0x80 else 0) + 1
        elif block == 0x21:  # extension: label, then data sub-blocks
            position += 2
        else:  # trailer (0x3B) or corrupt: the decoder stops here too
            break
        while position < size:  # data sub-blocks, up to an empty one
            length = data[position]
            position += 1 + length
            if length == 0:
                break
    return max(frames, 1), width, height


def read_extent(
    data: bytes, index: int = 0, name: str = "image_bytes", max_pixels: int | None = None
) -> ImageExtent:
    """The `ImageExtent` of encoded image bytes, from the header only (no decoding).

    Frames are counted where `tf.io.decode_image` decodes them all (GIF; animated
    WebP), each GIF frame at least `MIN_FRAME_PIXELS`; with `max_pixels`, the GIF scan
    stops once the count is over it.

    Raises:
        ServingError: `INVALID_ARGUMENT` when the bytes are not an image whose size can
            be read (a server cannot bound what it cannot measure).
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
            frames, frame_cost = 1, 0
            if image.format == "GIF":
                frame_cost = MIN_FRAME_PIXELS
                stop = (max_pixels // frame_cost + 1) if max_pixels else len(data)
                frames, frame_width, frame_height = gif_frame_extent(data, stop)
                width, height = max(width, frame_width), max(height, frame_height)
            elif image.format == "WEBP":
                frames = int(getattr(image, "n_frames", 1) or 1)
    except Image.DecompressionBombError as e:
        raise ServingError(f"Input {name!r}[{index}]: {e}") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError, struct.error):
        raise ServingError(
            f"Input {name!r}[{index}] is not a readable {IMAGE_FORMATS} image "
            f"({len(data)} bytes): unknown image file format or corrupt header"
        ) from None
    return ImageExtent(height, width, frames, frame_cost if frames > 1 else 0)


def check_images(
    encoded: np.ndarray, limits: RequestLimits, name: str = "image_bytes"
) -> list[ImageExtent]:
    """Reads the extents of a batch of encoded images and checks both pixel limits.

    Args:
        encoded: an object array of bytes (any shape; flattened).
        limits: the `RequestLimits`.
        name: the input's name, for the messages.

    Returns:
        One `ImageExtent` per image.

    Raises:
        ServingError: `INVALID_ARGUMENT` naming the limit and the value received.
    """
    extents = []
    for index, data in enumerate(np.asarray(encoded, dtype=object).reshape(-1)):
        extent = read_extent(bytes(data), index, name, limits.max_image_pixels)
        if extent.pixels > limits.max_image_pixels:
            frames = f" of {extent.frames} frames" if extent.frames > 1 else ""
            if extent.frame_cost > extent.width * extent.height:
                frames += f" (each counted as at least {extent.frame_cost} pixels)"
            raise ServingError(
                f"Input {name!r}[{index}] is a {extent.width}x{extent.height} image{frames} "
                f"({extent.pixels} pixels), over the limit of {limits.max_image_pixels} "
                "pixels per image (--max-image-pixels)"
            )
        extents.append(extent)
    padded = padded_extent(extents)
    if padded is not None and padded.pixels > limits.max_request_pixels:
        raise ServingError(
            f"The request decodes {padded.pixels} pixels ({len(extents)} images padded to "
            f"{padded.width}x{padded.height}, {padded.frames} frames in all), over the "
            f"limit of {limits.max_request_pixels} pixels per request "
            "(--max-request-pixels); send fewer images, or images of similar sizes, per "
            "request"
        )
    return extents


def padded_extent(extents: Sequence[ImageExtent]) -> ImageExtent | None:
    """The largest height, largest width and total frames of `extents` (None if empty).

    `padded_extent(...).pixels` is what a batch of these images costs: every label map
    is padded to the largest height and width, and every frame is decoded.
    """
    if not extents:
        return None
    return ImageExtent(
        max(e.height for e in extents),
        max(e.width for e in extents),
        sum(e.frames for e in extents),
        max(e.frame_cost for e in extents),
    )


def check_response_values(values: int | None, limits: RequestLimits) -> None:
    """Refuses an answer of more than `max_response_values` values (`None`: unknown)."""
    if values is not None and values > limits.max_response_values:
        raise ServingError(
            f"The answer would hold {values} values, over the limit of "
            f"{limits.max_response_values} values per answer (--max-response-values); "
            "send fewer rows or smaller images per request"
        )


def count_values(shape: Sequence[int]) -> int:
    """The number of elements of `shape` (a Python int: no overflow)."""
    return math.prod(int(d) for d in shape)
