import numpy as np
import pytest
from PIL import Image

from keras_deconvnet.inference import ImageReadError, load_image, to_rgb_uint8


@pytest.mark.parametrize(
    "mode, array",
    [
        ("RGB", np.full((7, 9, 3), 200, np.uint8)),
        ("L", np.full((7, 9), 200, np.uint8)),
        ("RGBA", np.full((7, 9, 4), 200, np.uint8)),
        ("I;16", np.full((7, 9), 200 * 257, np.uint16)),
    ],
)
def test_png_modes(tmp_path, mode, array):
    path = tmp_path / f"{mode.replace(';', '')}.png"
    Image.fromarray(array).save(path)
    assert Image.open(path).mode.startswith(mode[0])
    image = load_image(path)
    assert image.shape == (7, 9, 3) and image.dtype == np.uint8
    np.testing.assert_array_equal(image, 200)


def test_jpeg_and_palette(tmp_path):
    Image.fromarray(np.full((8, 8, 3), 100, np.uint8)).save(tmp_path / "a.jpg")
    assert load_image(tmp_path / "a.jpg").shape == (8, 8, 3)
    p = Image.fromarray(np.zeros((4, 4), np.uint8), mode="P")
    p.putpalette([10, 20, 30] * 256)
    p.save(tmp_path / "p.png")
    np.testing.assert_array_equal(load_image(tmp_path / "p.png")[0, 0], [10, 20, 30])


def test_bad_files_name_the_file(tmp_path):
    (tmp_path / "text.png").write_text("not an image")
    with pytest.raises(ImageReadError, match="text.png"):
        load_image(tmp_path / "text.png")
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(tmp_path / "full.png")
    (tmp_path / "cut.png").write_bytes((tmp_path / "full.png").read_bytes()[:60])
    with pytest.raises(ImageReadError, match="cut.png"):
        load_image(tmp_path / "cut.png")
    with pytest.raises(ImageReadError, match="missing.jpg"):
        load_image(tmp_path / "missing.jpg")


def test_array_conversion():
    assert to_rgb_uint8(np.zeros((3, 4, 1), np.float32)).shape == (3, 4, 3)
    with pytest.raises(ValueError, match="shape"):
        to_rgb_uint8(np.zeros((3, 4, 2)))
    with pytest.raises(ValueError, match="NaN"):
        to_rgb_uint8(np.full((3, 4, 3), np.nan))


def test_pixel_limit_is_checked_from_the_header_before_decoding(tmp_path):
    # Was: an 8000x8000 PNG (220 KB) was decoded whole (8.8 GB at its peak).
    big = tmp_path / "big.png"
    Image.new("1", (8000, 8000)).save(big)
    assert big.stat().st_size < 1_000_000
    with pytest.raises(ImageReadError, match=r"big.png: a 8000x8000 image \(64000000 pixels\), "
                       r"over the limit of 40000000 pixels"):
        load_image(big)
    # Only the header is needed: the file cut after it is refused the same way.
    (tmp_path / "head.png").write_bytes(big.read_bytes()[:64])
    with pytest.raises(ImageReadError, match="over the limit"):
        load_image(tmp_path / "head.png")
    with pytest.raises(ImageReadError, match="over the limit of 1000"):
        load_image(big, max_pixels=1000)
    Image.new("RGB", (30, 20)).save(tmp_path / "small.png")
    assert load_image(tmp_path / "small.png", max_pixels=600).shape == (20, 30, 3)


def test_every_frame_counts_against_the_pixel_limit(tmp_path):
    frames = [Image.new("RGB", (100, 100), (80 * i, 0, 0)) for i in range(3)]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:])
    with pytest.raises(ImageReadError, match="100x100 image of 3 frames"):
        load_image(tmp_path / "anim.gif", max_pixels=29_999)
    assert load_image(tmp_path / "anim.gif", max_pixels=30_000).shape == (100, 100, 3)
    assert load_image(tmp_path / "anim.gif", max_pixels=None).shape == (100, 100, 3)


def test_exif_orientation_is_applied_only_when_asked(tmp_path):
    # As TF Serving's tf.io.decode_image (the served path): stored pixels by default.
    exif = Image.Exif()
    exif[0x0112] = 6  # shown turned 90 degrees
    Image.fromarray(np.zeros((12, 16, 3), np.uint8)).save(tmp_path / "p.jpg", exif=exif)
    assert load_image(tmp_path / "p.jpg").shape == (12, 16, 3)
    assert load_image(tmp_path / "p.jpg", exif_transpose=True).shape == (16, 12, 3)


def _photo(height, width, seed=0):
    """A photograph's statistics: smooth gradients, grain and sharp-edged objects."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    image = np.stack([120 + 90 * np.sin(x / 37 + y / 53), 100 + 70 * np.cos(y / 29),
                      80 + 60 * np.sin((x + y) / 41)], -1)
    image += rng.normal(0, 14, (height, width, 3))
    image[height // 3:height // 2, width // 4:width // 2] = (200, 30, 40)
    return np.clip(image, 0, 255).astype(np.uint8)


def _encoded(image, fmt, **kwargs):
    import io

    buffer = io.BytesIO()
    image.save(buffer, fmt, **kwargs)
    return buffer.getvalue()


def _cases():
    photo = Image.fromarray(_photo(427, 640))
    tall = Image.fromarray(_photo(500, 333, 1))
    small = Image.fromarray(_photo(37, 53, 2))
    noise = np.random.default_rng(3).integers(0, 65536, (37, 53)).astype(np.uint16)
    return {
        "jpeg_640x427": _encoded(photo, "JPEG", quality=85),
        "jpeg_333x500": _encoded(tall, "JPEG", quality=85),
        "jpeg_444": _encoded(tall, "JPEG", quality=90, subsampling=0),
        "jpeg_progressive": _encoded(photo, "JPEG", quality=80, progressive=True),
        "jpeg_gray": _encoded(tall.convert("L"), "JPEG", quality=85),
        "png_rgba": _encoded(small.convert("RGBA"), "PNG"),
        "png_palette": _encoded(small.convert("P"), "PNG"),
        "png_16bit_gray": _encoded(Image.fromarray(noise), "PNG"),
        "gif": _encoded(small.convert("P"), "GIF"),
        "bmp_24bit": _encoded(small, "BMP"),
        "webp": _encoded(small, "WEBP", quality=80),
    }


@pytest.mark.parametrize("name", sorted(_cases()))
def test_local_and_served_decoding_are_bit_equal(name):
    # Was: the served signature decoded JPEG with tf.io.decode_image's fast DCT, the
    # local path with Pillow: up to 5 levels apart on most pixels, 92-98% equal labels.
    import tensorflow as tf

    from keras_deconvnet.inference.images import decode_image_bytes, decode_image_tensor

    data = _cases()[name]
    local = decode_image_bytes(data)
    served = decode_image_tensor(tf.constant(data)).numpy()
    np.testing.assert_array_equal(served, local)
    if name.startswith("jpeg"):  # the fast DCT would not be equal
        fast = tf.io.decode_image(data, channels=3).numpy()
        assert np.mean(fast == local) < 0.99


@pytest.mark.parametrize(
    "builder", ["gif_with_large_frame", "apng_with_large_frame", "webp_with_large_frame",
                "tiff_with_large_page"])
def test_a_later_frame_larger_than_the_canvas_is_not_decoded(builder):
    # Only the first frame (page) is decoded locally: a 1x1 first frame with an
    # 8000x8000 second one reads as 1x1, without allocating the large frame.
    from keras_deconvnet.benchmarks import hostile_images
    from keras_deconvnet.inference.images import decode_image_bytes

    size = 3000 if builder == "tiff_with_large_page" else 8000
    data = getattr(hostile_images, builder)(size, size)
    assert decode_image_bytes(data, max_pixels=100).shape == (1, 1, 3)
