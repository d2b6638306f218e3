import numpy as np
import pytest
from PIL import Image

from keras_deconvnet import visualize


def test_label_png_uses_the_voc_palette(tmp_path):
    labels = np.array([[0, 1], [15, 255]], np.uint8)
    path = visualize.save_label_png(labels, tmp_path / "l.png")
    image = Image.open(path)
    assert image.mode == "P"
    np.testing.assert_array_equal(np.asarray(image), labels)
    rgb = np.asarray(image.convert("RGB"))
    np.testing.assert_array_equal(rgb[0, 1], [128, 0, 0])  # aeroplane
    np.testing.assert_array_equal(rgb[1, 0], [192, 128, 128])  # person
    np.testing.assert_array_equal(rgb[1, 1], [224, 224, 192])  # ignore border


def test_overlay_keeps_background_and_blends_objects():
    image = np.full((2, 2, 3), 100, np.uint8)
    labels = np.array([[0, 1], [0, 0]])
    out = visualize.overlay(image, labels, alpha=0.5)
    np.testing.assert_array_equal(out[0, 0], [100, 100, 100])
    np.testing.assert_array_equal(out[0, 1], [114, 50, 50])


def test_pictures_are_written(tmp_path):
    image = np.zeros((30, 40, 3), np.uint8)
    labels = np.zeros((30, 40), np.uint8)
    labels[5:20, 5:20] = 2
    overlay = visualize.save_overlay(image, labels, tmp_path / "o.png", ["bg", "a", "b"])
    assert Image.open(overlay).size[0] > 40
    cm = visualize.save_confusion_matrix(np.eye(3) * 5, tmp_path / "cm.png", ["bg", "a", "b"])
    assert Image.open(cm).size[0] > 0


def test_bad_labels():
    with pytest.raises(ValueError, match="2D"):
        visualize.save_label_png(np.zeros((2, 2, 3)), "x.png")


def test_error_map_and_per_image_iou():
    truth = np.array([[0, 0, 1, 255]])
    labels = np.array([[0, 1, 1, 0]])
    picture = visualize.error_map(truth, labels)
    np.testing.assert_array_equal(picture[0, 0], visualize.CORRECT_COLOUR)
    np.testing.assert_array_equal(picture[0, 1], visualize.WRONG_COLOUR)
    np.testing.assert_array_equal(picture[0, 3], visualize.NOT_SCORED_COLOUR)
    # background 1/2, class 1 1/2; the 255 pixel is not scored.
    assert visualize.image_mean_iou(truth, labels, 2) == 0.5


def test_comparison_has_solid_maps_error_maps_and_a_legend(tmp_path):
    truth = np.zeros((40, 40), np.uint8)
    truth[10:30, 10:30] = 1
    wrong = np.zeros_like(truth)
    path = visualize.save_comparison(
        [np.full((40, 40, 3), 90, np.uint8)] * 2, [truth, truth],
        {"whole": [truth, wrong], "proposals": [truth, truth]}, tmp_path / "c.png",
        ["background", "square"], palette=[(0, 0, 0), (30, 90, 220)])
    picture = np.asarray(Image.open(path).convert("RGB"))
    # 6 columns (image, truth, 2 methods, 2 error maps), 2 rows.
    assert picture.shape[1] > 3 * picture.shape[0] / 2
    colours = {tuple(c) for c in picture.reshape(-1, 3)}
    assert (30, 90, 220) in colours  # the class drawn solid, not blended
    assert visualize.WRONG_COLOUR in colours and visualize.CORRECT_COLOUR in colours
