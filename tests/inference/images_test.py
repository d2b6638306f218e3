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
