"""Box IoU, proposal filtering and the two proposal generators."""

import numpy as np
import pytest
import tensorflow as tf

from keras_deconvnet.data.proposals import (
    FileProposals,
    SlidingWindowProposals,
    box_iou,
    call_proposals,
    filter_proposals,
)


def test_box_iou_hand_values():
    a = [[0, 0, 10, 10], [0, 0, 0, 10]]
    b = [[0, 0, 10, 10], [5, 5, 15, 15], [0, 10, 10, 20], [0, 0, 5, 10]]
    expected = [[1.0, 25 / 175, 0.0, 0.5], [0.0, 0.0, 0.0, 0.0]]
    iou = box_iou(a, b)
    assert isinstance(iou, np.ndarray) and iou.shape == (2, 4)
    np.testing.assert_allclose(iou, expected, rtol=1e-6)
    np.testing.assert_allclose(box_iou(tf.constant(a, tf.float32), b).numpy(), expected,
                               rtol=1e-6)
    assert box_iou(np.zeros((0, 4)), b).shape == (0, 4)
    with pytest.raises(ValueError, match="boxes_a"):
        box_iou([[1, 2, 3]], b)


def test_filter_proposals():
    proposals = [[0, 0, 10, 10], [5, 5, 15, 15], [0, 0, 5, 10], [50, 50, 60, 60]]
    gt = [[0, 0, 10, 10], [50, 50, 61, 61]]
    np.testing.assert_array_equal(
        filter_proposals(proposals, gt, 0.5), [[0, 0, 10, 10], [0, 0, 5, 10], [50, 50, 60, 60]]
    )
    assert filter_proposals(proposals, np.zeros((0, 4)), 0.5).shape == (0, 4)
    kept = filter_proposals(tf.constant(proposals, tf.float32), gt, 0.9)
    np.testing.assert_array_equal(kept.numpy(), [[0, 0, 10, 10]])
    with pytest.raises(ValueError, match="iou_threshold"):
        filter_proposals(proposals, gt, 2.0)


def test_sliding_windows_inside_image_sorted_and_deterministic():
    image = np.full((60, 90, 3), 100, np.uint8)
    image[20:40, 30:50] = 250  # one bright square: the best box should hold it.
    generator = SlidingWindowProposals(max_proposals=15, seed=1)
    boxes = generator(image)
    assert boxes.shape == (15, 4) and boxes.dtype == np.float32
    assert (boxes[:, :2] >= 0).all() and (boxes[:, 2] <= 60).all() and (boxes[:, 3] <= 90).all()
    assert (boxes[:, 2:] > boxes[:, :2]).all()
    np.testing.assert_array_equal(boxes, generator(image))
    assert box_iou(boxes[:1], [[20, 30, 40, 50]])[0, 0] > 0.3
    # No near-duplicates survive the NMS.
    iou = box_iou(boxes, boxes)
    assert (np.triu(iou, 1) <= 0.7 + 1e-6).all()
    with pytest.raises(ValueError, match="image"):
        generator(np.zeros((10, 10), np.uint8))
    with pytest.raises(ValueError, match="scales"):
        SlidingWindowProposals(scales=(0.5, 2.0))


def test_file_proposals_formats(tmp_path):
    np.save(tmp_path / "a.npy", np.array([[0, 0, 5, 5], [1, 1, 20, 30]], np.float32))
    (tmp_path / "b.txt").write_text("# ymin xmin ymax xmax score\n1 2 3 4 0.1\n\n5 6 7 8 0.9\n")
    (tmp_path / "c.csv").write_text("1,2,3,4\n5,6,7,8\n")
    proposals = FileProposals(tmp_path, box_format="yxyx")
    image = np.zeros((10, 10, 3), np.uint8)
    np.testing.assert_array_equal(proposals(image, image_id="a"), [[0, 0, 5, 5], [1, 1, 10, 10]])
    np.testing.assert_array_equal(proposals.load("a"), [[0, 0, 5, 5], [1, 1, 20, 30]])
    np.testing.assert_array_equal(proposals.load("b"), [[5, 6, 7, 8], [1, 2, 3, 4]])  # by score
    np.testing.assert_array_equal(proposals.load("c"), [[1, 2, 3, 4], [5, 6, 7, 8]])
    first = FileProposals(tmp_path, max_proposals=1, box_format="yxyx").load("c")
    np.testing.assert_array_equal(first, [[1, 2, 3, 4]])
    # call_proposals passes the id to generators that take one, not to plain callables.
    np.testing.assert_array_equal(call_proposals(proposals, image, "c"), proposals.load("c"))
    np.testing.assert_array_equal(call_proposals(lambda im: [[0, 0, 1, 1]], image, "c"),
                                  [[0, 0, 1, 1]])
    # Clipped to the image unless clip=False.
    np.testing.assert_array_equal(call_proposals(lambda im: [[-2, 0, 12, 5]], image),
                                  [[0, 0, 10, 5]])
    np.testing.assert_array_equal(call_proposals(lambda im: [[-2, 0, 12, 5]], image, clip=False),
                                  [[-2, 0, 12, 5]])
    with pytest.raises(ValueError, match="proposals"):
        call_proposals(lambda im: [[1, 2, 3]], image)


def test_file_proposals_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        FileProposals(tmp_path / "nowhere")
    proposals = FileProposals(tmp_path, box_format="yxyx")
    with pytest.raises(FileNotFoundError, match="missing"):
        proposals.load("missing")
    (tmp_path / "bad.txt").write_text("1 2 3 four\n")
    with pytest.raises(ValueError, match="bad.txt"):
        proposals.load("bad")
    (tmp_path / "ragged.csv").write_text("1,2,3,4\n1,2,3\n")
    with pytest.raises(ValueError, match="ragged.csv"):
        proposals.load("ragged")
    np.save(tmp_path / "shape.npy", np.zeros((3, 3)))
    with pytest.raises(ValueError, match="shape.npy"):
        proposals.load("shape")
    (tmp_path / "corrupt.npy").write_bytes(b"not numpy")
    with pytest.raises(ValueError, match="corrupt.npy"):
        proposals.load("corrupt")
    with pytest.raises(ValueError, match="image_id"):
        proposals(np.zeros((4, 4, 3), np.uint8))


def test_edgeboxes_files_in_their_own_format(tmp_path):
    """EdgeBoxes' MATLAB toolbox writes `x y w h score`, 1-based; OpenCV's is 0-based."""
    np.savetxt(tmp_path / "a.txt", [[11, 21, 30, 40, 0.2], [1, 1, 5, 4, 0.9]])
    boxes = FileProposals(tmp_path)(image_id="a")
    # Sorted by score; [ymin, xmin, ymax, xmax] with 0-based pixel edges.
    np.testing.assert_array_equal(boxes, [[0, 0, 4, 5], [20, 10, 60, 40]])
    zero_based = FileProposals(tmp_path, box_format="xywh")(image_id="a")
    np.testing.assert_array_equal(zero_based[0], [1, 1, 5, 6])
    with pytest.raises(ValueError, match="box_format"):
        FileProposals(tmp_path, box_format="xyxy")


def test_generators_filter_by_size_before_the_cut(tmp_path):
    # The authors' loop skips boxes under 112 pixels and stops after 50 that ran:
    # the size filter comes first. Cut first, then filter, would leave fewer. Small
    # textured patches on a flat image: the small windows around them rank first.
    image = np.full((375, 500, 3), 120, np.uint8)
    rng = np.random.default_rng(0)
    for y, x in [(30, 40), (200, 300), (100, 400), (300, 100), (250, 450)]:
        image[y : y + 40, x : x + 40] = rng.integers(0, 256, (40, 40, 3))

    def sides(boxes):
        return np.minimum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])

    assert (sides(SlidingWindowProposals(max_proposals=None)(image)) >= 112).sum() >= 30
    filtered = SlidingWindowProposals(max_proposals=30, min_size=112)(image)
    assert len(filtered) == 30 and (sides(filtered) >= 112).all()
    cut_first = SlidingWindowProposals(max_proposals=30)(image)
    assert (sides(cut_first) >= 112).sum() < 30
    # Files: small boxes first in the file; the cut keeps the 2 large ones.
    (tmp_path / "a.txt").write_text("0 0 5 5\n0 0 6 6\n0 0 50 50\n0 0 60 60\n0 0 70 70\n")
    kept = FileProposals(tmp_path, max_proposals=2, box_format="yxyx", min_size=40).load("a")
    np.testing.assert_array_equal(kept, [[0, 0, 50, 50], [0, 0, 60, 60]])
    with pytest.raises(ValueError, match="min_size"):
        SlidingWindowProposals(min_size=-1)
    with pytest.raises(ValueError, match="max_proposals"):
        FileProposals(tmp_path, max_proposals=0)
