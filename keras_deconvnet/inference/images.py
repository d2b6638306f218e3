"""Reads any common image file as uint8 RGB: grayscale, RGBA, palette, 16-bit.

`load_image` (and `decode_image_bytes` for bytes in memory) checks the size in the
file's header against `max_pixels` (every frame counted) before decoding anything, so
a small file cannot take gigabytes, and applies the EXIF orientation only when asked
(`exif_transpose=True`): by default it reads the stored pixels, as TF Serving's
decoders (the `predict_image_bytes` signature) do, so local and served predictions
see the same image.

One decoding for every path: local inference (the CLI, the Python API, evaluation)
decodes with Pillow, the exported `predict_image_bytes` signature with
`decode_image_tensor` (TensorFlow ops only, so TF Serving runs it), and the two give
the same pixels, bit for bit: JPEG is decoded with libjpeg's accurate integer DCT and
fancy upsampling on both sides (Pillow's defaults; `tf.io.decode_jpeg(...,
dct_method="INTEGER_ACCURATE")`; `tf.io.decode_image` alone would use the fast DCT,
up to 5 levels off on most pixels), 16-bit PNGs keep their high byte on both sides,
and PNG, GIF (first frame), 24/32-bit BMP and WebP decode identically
(tests/inference/images_test.py checks each). One known exception: TensorFlow reads
an 8-bit palette BMP's indices as grey levels; send such images as PNG.
"""

from __future__ import annotations

import io
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


def decode_image_tensor(data):
    """Encoded image bytes (a scalar string tensor) -> uint8 `(height, width, 3)`.

    The served decoding (the `predict_image_bytes` signature), built from TensorFlow
    ops only: JPEG with the accurate integer DCT (bit-equal to `load_image`), any
    other format with `tf.io.decode_image` (first frame of an animation); grayscale
    and RGBA become RGB, EXIF orientation is ignored.

    Example:

    >>> import tensorflow as tf
    >>> decode_image_tensor(tf.io.encode_png(tf.zeros((2, 3, 3), tf.uint8))).shape
    TensorShape([2, 3, 3])
    """
    import tensorflow as tf

    return tf.cond(
        tf.io.is_jpeg(data),
        lambda: tf.io.decode_jpeg(data, channels=3, dct_method="INTEGER_ACCURATE"),
        lambda: tf.io.decode_image(data, channels=3, expand_animations=False),
    )


def decode_image_bytes(
    data: bytes,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    exif_transpose: bool = False,
    name: str = "image bytes",
) -> np.ndarray:
    """`load_image` for encoded bytes in memory (`name` is used in the messages).

    Example:

    >>> import io
    >>> from PIL import Image
    >>> buffer = io.BytesIO()
    >>> Image.new("RGB", (5, 4)).save(buffer, "JPEG")
    >>> decode_image_bytes(buffer.getvalue()).shape
    (4, 5, 3)
    """
    return _read(io.BytesIO(bytes(data)), name, max_pixels, exif_transpose)


def load_image(
    path: str | os.PathLike,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    exif_transpose: bool = False,
) -> np.ndarray:
    """Reads a JPEG/PNG/BMP/... file as `(H, W, 3)` uint8 RGB.

    16-bit PNGs keep their high byte (as TensorFlow's decoder does), grayscale is
    repeated to 3 channels, alpha is dropped and palette images are expanded.

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
    return _read(path, path, max_pixels, exif_transpose)


def _read(source, path, max_pixels: int | None, exif_transpose: bool) -> np.ndarray:
    try:
        with Image.open(source) as image:
            if max_pixels is not None:
                _check_pixels(path, image, max_pixels)
            if exif_transpose:
                image = ImageOps.exif_transpose(image)
            image.load()
            if image.mode in ("I;16", "I;16B", "I;16L", "I"):
                # 16-bit samples keep their high byte, as TensorFlow's PNG decoder
                # (and Pillow's own 16-bit RGB reading) does.
                array = np.asarray(image, dtype=np.int64)
                if image.mode != "I" or array.max() > 255:
                    array = np.clip(array, 0, 65535) >> 8
                return to_rgb_uint8(array.astype(np.uint8))
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
