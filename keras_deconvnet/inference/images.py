"""Reads any common image file as uint8 RGB: grayscale, RGBA, palette, 16-bit, EXIF-rotated."""

from __future__ import annotations

import os

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError


class ImageReadError(ValueError):
    """An image file could not be read; the message names the file."""


def to_rgb_uint8(array: np.ndarray) -> np.ndarray:
    """An image array of any common layout as `(H, W, 3)` uint8 RGB.

    Accepts `(H, W)` grayscale, `(H, W, 1)`, `(H, W, 3)` and `(H, W, 4)` (alpha is
    dropped), uint8, uint16 (scaled down by 257) or float in [0, 255].
    """
    array = np.asarray(array)
    if array.ndim == 2:
        array = array[..., None]
    if array.ndim != 3 or array.shape[-1] not in (1, 3, 4):
        raise ValueError(
            "An image must be (H, W), (H, W, 1), (H, W, 3) or (H, W, 4). "
            f"Received: shape={array.shape}"
        )
    if array.shape[0] < 1 or array.shape[1] < 1:
        raise ValueError(f"An image must not be empty. Received: shape={array.shape}")
    if array.dtype == np.uint16:
        array = (array.astype(np.float32) / 257.0).round()
    elif array.dtype == bool:
        array = array.astype(np.float32) * 255
    elif np.issubdtype(array.dtype, np.floating) and not np.all(np.isfinite(array)):
        raise ValueError("An image must not contain NaN or infinite values.")
    array = np.clip(array, 0, 255).astype(np.uint8)
    if array.shape[-1] == 1:
        array = np.repeat(array, 3, axis=-1)
    return np.ascontiguousarray(array[..., :3])


def load_image(path: str | os.PathLike) -> np.ndarray:
    """Reads a JPEG/PNG/BMP/... file as `(H, W, 3)` uint8 RGB.

    16-bit PNGs are scaled to 8 bits, grayscale is repeated to 3 channels, alpha is
    dropped, palette images are expanded, and EXIF orientation is applied.

    Raises:
        ImageReadError: the file is missing, not an image, or truncated; the message
            names the file.

    Example:

    >>> from PIL import Image
    >>> Image.new("L", (5, 4), 128).save("/tmp/gray.png")
    >>> load_image("/tmp/gray.png").shape
    (4, 5, 3)
    """
    try:
        with Image.open(path) as image:
            image = ImageOps.exif_transpose(image)
            image.load()
            if image.mode in ("I;16", "I;16B", "I;16L", "I"):
                array = np.asarray(image, dtype=np.uint32)
                array = (array.astype(np.float32) / (257.0 if array.max() > 255 else 1.0))
                return to_rgb_uint8(array)
            if image.mode not in ("RGB", "L"):
                image = image.convert("RGBA" if "A" in image.mode or "transparency"
                                      in image.info else "RGB")
            return to_rgb_uint8(np.asarray(image))
    except FileNotFoundError:
        raise ImageReadError(f"{path}: no such file") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise ImageReadError(f"{path}: not a readable image ({e})") from None
