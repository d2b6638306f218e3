"""Encoded images for the `predict_image_bytes` signature, as the clients send them.

`encode_image` sends a file's bytes as they are, and encodes an array losslessly as
PNG; with `exif_transpose=True` the EXIF orientation is applied first (re-encoded as
PNG), since the server, like TF Serving's `tf.io.decode_image`, ignores EXIF.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np

ImageLike = str | os.PathLike | bytes | np.ndarray


_EXIF_ORIENTATION = 0x0112


def exif_transposed(data: bytes) -> bytes:
    """`data` with its EXIF orientation applied to the pixels (re-encoded as PNG).

    The bytes come back unchanged when they carry no orientation other than 1 (or
    cannot be read: the server answers for them).

    Example:

    >>> exif_transposed(b"not an image")
    b'not an image'
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.getexif().get(_EXIF_ORIENTATION, 1) in (None, 1):
                return data
            image = ImageOps.exif_transpose(image)
            if image.mode not in ("RGB", "RGBA", "L", "LA"):
                image = image.convert("RGB")
            buffer = io.BytesIO()
            image.save(buffer, "PNG")
            return buffer.getvalue()
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        return data


def encode_image(image: ImageLike, exif_transpose: bool = False) -> bytes:
    """Encoded image bytes for `predict_image_bytes`.

    Args:
        image: a file path (its bytes are sent as they are), encoded bytes, or an
            array `(height, width, 3)` / `(height, width)` with values in 0-255
            (encoded losslessly as PNG).
        exif_transpose: apply the EXIF orientation of a file or encoded bytes before
            sending (re-encoded losslessly as PNG). The server, like TF Serving's
            `tf.io.decode_image`, ignores EXIF, as `load_image` (and so `deconvnet
            predict`) does by default; pass `True` where `load_image(...,
            exif_transpose=True)` (`deconvnet predict --exif-transpose`) is used, so
            both see the same pixels.

    Returns:
        The encoded image.

    Example:

    >>> data = encode_image(np.zeros((2, 3, 3)))
    >>> data[:4]
    b'\\x89PNG'
    """
    if isinstance(image, bytes):
        return exif_transposed(image) if exif_transpose else image
    if isinstance(image, str | os.PathLike):
        data = Path(image).read_bytes()
        return exif_transposed(data) if exif_transpose else data
    if isinstance(image, np.ndarray):
        from PIL import Image

        array = np.asarray(image)
        if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[-1] not in (1, 3, 4)):
            raise ValueError(
                "An image array must be (height, width), (height, width, 1|3|4). "
                f"Received: shape={array.shape}"
            )
        if array.ndim == 3 and array.shape[-1] == 1:
            array = array[..., 0]
        buffer = io.BytesIO()
        Image.fromarray(np.clip(np.rint(array), 0, 255).astype(np.uint8)).save(buffer, "PNG")
        return buffer.getvalue()
    raise TypeError(
        f"An image must be a path, bytes or a numpy array. Received: {type(image).__name__}"
    )
