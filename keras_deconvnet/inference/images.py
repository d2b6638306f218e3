"""Reads any common image file as uint8 RGB: grayscale, RGBA, palette, 16-bit.

`load_image` checks the size in the file's header against `max_pixels` (every frame
counted) before decoding anything, so a small file cannot take gigabytes, and applies
the EXIF orientation only when asked (`exif_transpose=True`): by default it reads the
stored pixels, as TF Serving's `tf.io.decode_image` (the `predict_image_bytes`
signature) does, so local and served predictions see the same image.
"""

from __future__ import annotations

import os

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

DEFAULT_MAX_PIXELS = 40_000_000


class ImageReadError(ValueError):
    """An image file could not be read (or is over the pixel limit); the message
    names the file."""


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


def load_image(
    path: str | os.PathLike,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    exif_transpose: bool = False,
) -> np.ndarray:
    """Reads a JPEG/PNG/BMP/... file as `(H, W, 3)` uint8 RGB.

    16-bit PNGs are scaled to 8 bits, grayscale is repeated to 3 channels, alpha is
    dropped and palette images are expanded.

    Args:
        path: the image file.
        max_pixels: refuse files whose header declares more than this many pixels
            (width x height x frames), before decoding; `None`: no limit. Defaults to
            40 million, the local server's `--max-image-pixels`.
        exif_transpose: apply the EXIF orientation tag (rotate/flip the pixels as a
            photo viewer shows them). Off by default, as in TF Serving, whose
            `tf.io.decode_image` ignores EXIF; clients that turn it on send the
            transposed image (`keras_deconvnet.serving.encode_image(...,
            exif_transpose=True)`).

    Raises:
        ImageReadError: the file is missing, not an image, truncated, or over
            `max_pixels`; the message names the file.

    Example:

    >>> from PIL import Image
    >>> Image.new("L", (5, 4), 128).save("/tmp/gray.png")
    >>> load_image("/tmp/gray.png").shape
    (4, 5, 3)
    """
    try:
        with Image.open(path) as image:
            if max_pixels is not None:
                _check_pixels(path, image, max_pixels)
            if exif_transpose:
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
    except Image.DecompressionBombError as e:
        raise ImageReadError(f"{path}: {e}") from None
    except ImageReadError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise ImageReadError(f"{path}: not a readable image ({e})") from None


def _check_pixels(path, image: Image.Image, max_pixels: int) -> None:
    width, height = image.size
    frames = int(getattr(image, "n_frames", 1) or 1)
    pixels = width * height * frames
    if pixels > max_pixels:
        of_frames = f" of {frames} frames" if frames > 1 else ""
        raise ImageReadError(
            f"{path}: a {width}x{height} image{of_frames} ({pixels} pixels), over the "
            f"limit of {max_pixels} pixels (max_pixels)"
        )
