"""The authors' `.mat` proposal cache (`boxes_padded`), written here with scipy."""

import numpy as np
import pytest
import scipy.io

from keras_deconvnet.data import PaddedBoxProposals


def _padded(box, height, width):
    """[ymin, xmin, ymax, xmax] image edges -> the cache's 1-based inclusive
    [x1 y1 x2 y2] in the image padded by its width (rows) and height (columns)."""
    ymin, xmin, ymax, xmax = box
    return [xmin + 1 + height, ymin + 1 + width, xmax + height, ymax + width]


def test_boxes_come_back_in_image_coordinates(tmp_path):
    height, width = 30, 50
    boxes = [[0, 0, 30, 50], [-5, -8, 20, 40], [10, 20, 35, 60]]  # two past the border
    scipy.io.savemat(tmp_path / "2007_000033.mat",
                     {"boxes_padded": np.array([_padded(b, height, width) for b in boxes],
                                               np.float64)})
    proposals = PaddedBoxProposals(tmp_path)
    got = proposals(np.zeros((height, width, 3), np.uint8), image_id="2007_000033")
    np.testing.assert_array_equal(got, boxes)  # not clipped: the padding is read as zeros
    assert proposals.boxes_extended
    assert proposals.get_config() == {"directory": str(tmp_path), "key": "boxes_padded"}


def test_bad_caches_are_one_line_errors(tmp_path):
    image = np.zeros((10, 20, 3), np.uint8)  # canvas: 50 rows x 40 columns
    scipy.io.savemat(tmp_path / "far.mat", {"boxes_padded": [[1, 1, 41, 10]]})
    scipy.io.savemat(tmp_path / "flipped.mat", {"boxes_padded": [[5, 5, 4, 10]]})
    scipy.io.savemat(tmp_path / "other.mat", {"boxes": [[1, 1, 2, 2]]})
    scipy.io.savemat(tmp_path / "shape.mat", {"boxes_padded": [[1, 2, 3]]})
    (tmp_path / "junk.mat").write_bytes(b"not a mat file at all" * 10)
    proposals = PaddedBoxProposals(tmp_path)
    for image_id, message in (("far", "Box 0 of .*outside the padded 50x40 canvas"),
                              ("flipped", "outside"), ("other", "no `boxes_padded`"),
                              ("shape", r"\(N, 4\)"), ("junk", "Cannot read"),
                              ("missing", "No proposal cache")):
        error = FileNotFoundError if image_id == "missing" else ValueError
        with pytest.raises(error, match=message) as info:
            proposals(image, image_id=image_id)
        assert "\n" not in str(info.value)
    with pytest.raises(ValueError, match="image_id"):
        proposals(image)
    with pytest.raises(FileNotFoundError, match="directory"):
        PaddedBoxProposals(tmp_path / "nowhere")
    scipy.io.savemat(tmp_path / "empty.mat", {"boxes_padded": np.zeros((0, 4))})
    assert proposals(image, image_id="empty").shape == (0, 4)
