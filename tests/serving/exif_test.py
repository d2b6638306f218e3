"""EXIF orientation: the served path and the local image loader agree.

TF Serving's `tf.io.decode_image` (inside the exported `predict_image_bytes`) ignores
EXIF, so by default neither the server nor `load_image` (`deconvnet predict`) applies
it; with `exif_transpose=True` both the loader and the client (`encode_image`) apply it.
"""

import io

import numpy as np
import pytest
from PIL import Image

from keras_deconvnet.inference.images import load_image
from keras_deconvnet.serving.client import RestClient
from keras_deconvnet.serving.image_encoding import encode_image

ROTATE_90 = 6  # EXIF orientation: the stored pixels are shown turned 90 degrees


def _photo(path, util, image_format="JPEG"):
    """A 160x120 (width x height) photo whose EXIF says to show it upright as 120x160."""
    pixels = util.random_images(1, seed=31, size=(120, 160))[0].astype(np.uint8)
    exif = Image.Exif()
    exif[0x0112] = ROTATE_90
    Image.fromarray(pixels).save(path, image_format, exif=exif)
    return path


def _png(array) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, "PNG")
    return buffer.getvalue()


@pytest.mark.parametrize("image_format", ["JPEG", "PNG"])
def test_local_and_served_orientation_agree(server, util, tmp_path, image_format):
    path = _photo(tmp_path / f"photo.{image_format.lower()}", util, image_format)
    client = RestClient(server.url, util.MODEL, timeout=60)
    # JPEG decoders (TensorFlow's, Pillow's) may differ by a level here and there: the
    # labels are compared exactly for the lossless PNG (which carries EXIF too).
    exact = image_format == "PNG"

    # Default: stored pixels on both sides (was: the loader rotated, the server not).
    local = load_image(path)
    served = client.predict_images([path])[0]
    assert local.shape[:2] == served.shape == (120, 160)
    if exact:  # the loader's image, sent losslessly, is labelled like the file
        np.testing.assert_array_equal(client.predict_images([_png(local)])[0], served)

    # Opt-in: both apply EXIF, the same way.
    local = load_image(path, exif_transpose=True)
    served = client.predict_images([path], exif_transpose=True)[0]
    assert local.shape[:2] == served.shape == (160, 120)
    decoded = np.asarray(Image.open(io.BytesIO(encode_image(path, exif_transpose=True))))
    np.testing.assert_array_equal(decoded, local)  # the very pixels the loader reads
    if exact:
        np.testing.assert_array_equal(client.predict_images([_png(local)])[0], served)


def test_encode_image_keeps_bytes_without_orientation(tmp_path, util):
    plain = util.png_bytes(util.random_images(1, seed=32, size=(10, 12))[0])
    assert encode_image(plain, exif_transpose=True) == plain
    assert encode_image(b"not an image", exif_transpose=True) == b"not an image"
    path = _photo(tmp_path / "photo.jpg", util)
    assert encode_image(path) == path.read_bytes()  # default: sent as they are
