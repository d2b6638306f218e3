"""Object proposals: a small pluggable interface, two generators, IoU helpers.

**The proposal interface.** A proposal generator is any callable

    proposals(image, image_id=None) -> float32 array (N, 4)

taking one RGB image (uint8 `(H, W, 3)` numpy array or tensor) and returning boxes
`[ymin, xmin, ymax, xmax]` in absolute pixel coordinates (pixel edges: a box over rows
3..7 has `ymin=3, ymax=8`), best first. `image_id` (str) is passed by pipelines that
know it; generators that do not need it ignore it, and plain one-argument callables
`f(image)` are accepted wherever a generator is (see `call_proposals`). Nothing here
depends on training: inference uses the same generators.

Built in:

- `SlidingWindowProposals`: windows at several scales and aspect ratios, jittered,
  ranked by a cheap edge-density score (EdgeBoxes-like, much simpler) and
  de-duplicated by non-maximum suppression. Works on any image, needs no files.
- `FileProposals`: precomputed proposals (e.g. EdgeBoxes, as in the paper) read per
  image id from `DIRECTORY/<image_id>.npy`, `.txt` or `.csv`, in EdgeBoxes' own
  `x y w h score` format (the default) or as `[ymin, xmin, ymax, xmax]`.
"""

from __future__ import annotations

import inspect
import os
import warnings

import numpy as np
import tensorflow as tf


def _as_boxes(boxes, name) -> np.ndarray:
    boxes = np.asarray(boxes, np.float32)
    if boxes.ndim != 2 or boxes.shape[-1] != 4:
        if boxes.size == 0:
            return np.zeros((0, 4), np.float32)
        raise ValueError(
            f"`{name}` must have shape (N, 4) as [ymin, xmin, ymax, xmax]. "
            f"Received: {name}.shape={boxes.shape}"
        )
    return boxes


def box_iou(boxes_a, boxes_b):
    """Pairwise intersection over union of two sets of boxes.

    Args:
        boxes_a: `(N, 4)` boxes `[ymin, xmin, ymax, xmax]`.
        boxes_b: `(M, 4)` boxes in the same format.

    Returns:
        `(N, M)` float32 IoUs; a numpy array for numpy (or list) inputs, a tensor if
        either input is a tensor. Degenerate boxes (zero area) have IoU 0.

    Example:

    >>> box_iou([[0, 0, 10, 10]], [[0, 0, 10, 10], [0, 5, 10, 15], [20, 20, 30, 30]]).round(3)
    array([[1.   , 0.333, 0.   ]], dtype=float32)
    """
    if not (tf.is_tensor(boxes_a) or tf.is_tensor(boxes_b)):
        return _iou_numpy(_as_boxes(boxes_a, "boxes_a"), _as_boxes(boxes_b, "boxes_b"))
    a = tf.reshape(tf.cast(boxes_a, tf.float32), (-1, 1, 4))
    b = tf.reshape(tf.cast(boxes_b, tf.float32), (1, -1, 4))
    inter_h = tf.nn.relu(tf.minimum(a[..., 2], b[..., 2]) - tf.maximum(a[..., 0], b[..., 0]))
    inter_w = tf.nn.relu(tf.minimum(a[..., 3], b[..., 3]) - tf.maximum(a[..., 1], b[..., 1]))
    inter = inter_h * inter_w
    area_a = tf.nn.relu(a[..., 2] - a[..., 0]) * tf.nn.relu(a[..., 3] - a[..., 1])
    area_b = tf.nn.relu(b[..., 2] - b[..., 0]) * tf.nn.relu(b[..., 3] - b[..., 1])
    union = area_a + area_b - inter
    return tf.math.divide_no_nan(inter, union)


def _iou_numpy(a, b):
    a, b = a[:, None, :], b[None, :, :]
    inter_h = np.maximum(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0)
    inter_w = np.maximum(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0)
    inter = inter_h * inter_w
    area_a = np.maximum(a[..., 2] - a[..., 0], 0) * np.maximum(a[..., 3] - a[..., 1], 0)
    area_b = np.maximum(b[..., 2] - b[..., 0], 0) * np.maximum(b[..., 3] - b[..., 1], 0)
    union = area_a + area_b - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = np.where(union > 0, inter / np.where(union > 0, union, 1), 0)
    return iou.astype(np.float32)


def filter_proposals(proposals, gt_boxes, iou_threshold: float = 0.5):
    """The proposals whose IoU with some ground-truth box is at least `iou_threshold`.

    Args:
        proposals: `(N, 4)` boxes, best first.
        gt_boxes: `(M, 4)` ground-truth boxes.
        iou_threshold: float in [0, 1].

    Returns:
        The kept proposals in their original order, as a numpy array (or a tensor if
        an input was a tensor). No ground truth keeps nothing.

    Example:

    >>> filter_proposals([[0, 0, 10, 10], [0, 5, 10, 15]], [[0, 0, 10, 10]], 0.5)
    array([[ 0.,  0., 10., 10.]], dtype=float32)
    """
    if not 0.0 <= float(iou_threshold) <= 1.0:
        raise ValueError(
            f"`iou_threshold` must be in [0, 1]. Received: iou_threshold={iou_threshold!r}"
        )
    iou = box_iou(proposals, gt_boxes)
    if tf.is_tensor(iou):
        best = tf.reduce_max(tf.concat([iou, tf.zeros_like(iou[:, :1]) - 1.0], 1), axis=1)
        return tf.boolean_mask(tf.reshape(tf.cast(proposals, tf.float32), (-1, 4)),
                               best >= iou_threshold)
    proposals = _as_boxes(proposals, "proposals")
    if iou.shape[1] == 0:
        return proposals[:0]
    return proposals[iou.max(axis=1) >= iou_threshold]


def call_proposals(generator, image, image_id=None, clip: bool = True) -> np.ndarray:
    """Calls a proposal generator, with `image_id` if it takes one; checks the result.

    Args:
        generator: a proposal generator (see the module docstring).
        image: uint8 `(H, W, 3)` image.
        image_id: str or None, passed on to generators that take `image_id`.
        clip: clip the boxes to the image (default). Stage 2 training passes False
            and pads windows past the border instead.

    Returns:
        float32 `(N, 4)` boxes, in the generator's order.
    """
    image = np.asarray(image)
    takes_id = False
    try:
        params = inspect.signature(generator).parameters
        takes_id = "image_id" in params or any(
            p.kind == p.VAR_KEYWORD for p in params.values()
        )
    except (TypeError, ValueError):
        pass
    boxes = generator(image, image_id=image_id) if takes_id else generator(image)
    boxes = _as_boxes(np.asarray(boxes), "proposals")
    if clip:
        height, width = image.shape[:2]
        boxes = np.clip(boxes, 0, [height, width, height, width]).astype(np.float32)
    return boxes


def _nms(boxes, scores, iou_threshold, max_output):
    """Greedy non-maximum suppression in numpy (safe inside `tf.numpy_function`)."""
    order = np.argsort(-scores, kind="stable")
    boxes = boxes[order]
    alive = np.ones(len(order), bool)
    keep = []
    for i in range(len(order)):
        if not alive[i]:
            continue
        keep.append(order[i])
        if len(keep) == max_output:
            break
        alive[i + 1:] &= _iou_numpy(boxes[i : i + 1], boxes[i + 1:])[0] <= iou_threshold
    return np.asarray(keep, np.int64)


class SlidingWindowProposals:
    """Sliding windows at several scales and aspect ratios, ranked by edge density.

    Window sides are `scale * min(H, W)` (times `sqrt(aspect_ratio)` in width and
    divided by it in height), placed on a grid with stride `stride_fraction` of the
    window side and shifted at random by up to `jitter` of it. Windows past the image
    are shifted back inside. Each window is scored by the image-gradient energy
    inside it divided by its perimeter to the power 1.5 (favouring windows that
    enclose edges); windows whose shorter side is under `min_size` are dropped, then
    non-maximum suppression at `nms_threshold` keeps the best `max_proposals`. The
    size filter comes before the cut, as in the authors' inference loop (skip boxes
    under 112 pixels, stop after 50 that ran), so `max_proposals` boxes of the
    wanted size come back whenever there are that many.

    Args:
        scales: window sides as fractions of the image's shorter side.
        aspect_ratios: width / height ratios.
        stride_fraction: grid stride as a fraction of the window side.
        jitter: random shift as a fraction of the window side (0 for none).
        max_proposals: most boxes returned (`None`: every window NMS keeps).
            Defaults to `50` (the paper's count).
        nms_threshold: IoU above which a lower-ranked window is dropped.
        seed: int or None; seeds the jitter (the same image gives the same boxes).
        min_size: windows with a shorter side under this many pixels are dropped
            before NMS and the cut. Defaults to `0` (none).

    Example:

    >>> import numpy as np
    >>> generator = SlidingWindowProposals(max_proposals=10)
    >>> generator(np.zeros((64, 96, 3), np.uint8)).shape
    (10, 4)
    """

    def __init__(
        self,
        scales=(0.25, 0.4, 0.6, 0.8, 1.0),
        aspect_ratios=(0.5, 1.0, 2.0),
        stride_fraction: float = 0.5,
        jitter: float = 0.1,
        max_proposals: int = 50,
        nms_threshold: float = 0.7,
        seed: int | None = 0,
        min_size: float = 0.0,
    ):
        scales = tuple(float(s) for s in scales)
        aspect_ratios = tuple(float(r) for r in aspect_ratios)
        if not scales or min(scales) <= 0 or max(scales) > 1:
            raise ValueError(f"`scales` must be fractions in (0, 1]. Received: scales={scales}")
        if not aspect_ratios or min(aspect_ratios) <= 0:
            raise ValueError(
                f"`aspect_ratios` must be positive. Received: aspect_ratios={aspect_ratios}"
            )
        if not 0 < stride_fraction <= 1:
            raise ValueError(
                f"`stride_fraction` must be in (0, 1]. Received: stride_fraction={stride_fraction}"
            )
        if not 0 <= jitter < 1:
            raise ValueError(f"`jitter` must be in [0, 1). Received: jitter={jitter}")
        _check_max_proposals(max_proposals)
        _check_min_size(min_size)
        self.scales = scales
        self.aspect_ratios = aspect_ratios
        self.stride_fraction = float(stride_fraction)
        self.jitter = float(jitter)
        self.max_proposals = max_proposals
        self.nms_threshold = float(nms_threshold)
        self.seed = seed
        self.min_size = float(min_size)

    def windows(self, height: int, width: int, rng=None) -> np.ndarray:
        """All candidate windows for an image size, before scoring."""
        side = min(height, width)
        boxes = []
        for scale in self.scales:
            for ratio in self.aspect_ratios:
                h = min(height, scale * side / np.sqrt(ratio))
                w = min(width, scale * side * np.sqrt(ratio))
                stride_y = max(1.0, self.stride_fraction * h)
                stride_x = max(1.0, self.stride_fraction * w)
                ys = np.arange(0, max(height - h, 0) + 1e-3, stride_y)
                xs = np.arange(0, max(width - w, 0) + 1e-3, stride_x)
                y0, x0 = (g.ravel() for g in np.meshgrid(ys, xs, indexing="ij"))
                boxes.append(np.stack([y0, x0, y0 + h, x0 + w], 1))
        boxes = np.concatenate(boxes).astype(np.float32)
        if rng is not None and self.jitter > 0:
            size = np.concatenate([boxes[:, 2:] - boxes[:, :2]] * 2, 1)
            shift = rng.uniform(-self.jitter, self.jitter, (len(boxes), 2)) * size[:, :2]
            boxes = boxes + np.concatenate([shift, shift], 1)
            # Shift back inside the image, keeping the window size.
            low = np.minimum(boxes[:, :2], 0)
            high = np.maximum(boxes[:, 2:] - [height, width], 0)
            boxes = boxes - np.concatenate([low + high] * 2, 1)
        return boxes.astype(np.float32)

    def __call__(self, image, image_id=None) -> np.ndarray:
        del image_id  # Not needed: proposals come from the pixels.
        image = np.asarray(image)
        if image.ndim != 3 or image.shape[-1] != 3:
            raise ValueError(
                f"`image` must be (H, W, 3) RGB. Received: shape={image.shape}"
            )
        height, width = image.shape[:2]
        seed = None if self.seed is None else [int(self.seed), height, width]
        rng = np.random.default_rng(seed)
        boxes = self.windows(height, width, rng)

        gray = image.astype(np.float32).mean(-1)
        energy = np.zeros((height, width), np.float32)
        energy[:, 1:] += np.abs(np.diff(gray, axis=1))
        energy[1:, :] += np.abs(np.diff(gray, axis=0))
        integral = np.pad(energy.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
        y0, x0, y1, x1 = np.round(boxes).astype(np.int64).T
        y0, y1 = np.clip(y0, 0, height), np.clip(y1, 0, height)
        x0, x1 = np.clip(x0, 0, width), np.clip(x1, 0, width)
        inside = integral[y1, x1] - integral[y0, x1] - integral[y1, x0] + integral[y0, x0]
        perimeter = 2.0 * ((y1 - y0) + (x1 - x0)) + 1.0
        scores = (inside / perimeter**1.5).astype(np.float32)
        if self.min_size > 0:
            large = _shorter_side(boxes) >= self.min_size
            boxes, scores = boxes[large], scores[large]
        keep = _nms(boxes, scores, self.nms_threshold, self.max_proposals or len(boxes))
        return boxes[keep]

    def get_config(self) -> dict:
        return {
            "scales": self.scales,
            "aspect_ratios": self.aspect_ratios,
            "stride_fraction": self.stride_fraction,
            "jitter": self.jitter,
            "max_proposals": self.max_proposals,
            "nms_threshold": self.nms_threshold,
            "seed": self.seed,
            "min_size": self.min_size,
        }


def _check_max_proposals(max_proposals) -> None:
    if max_proposals is not None and (
        isinstance(max_proposals, bool) or not isinstance(max_proposals, int)
        or max_proposals < 1
    ):
        raise ValueError(
            "`max_proposals` must be None or an int >= 1. "
            f"Received: max_proposals={max_proposals!r}"
        )


def _check_min_size(min_size) -> None:
    if isinstance(min_size, bool) or not isinstance(min_size, (int, float)) or min_size < 0:
        raise ValueError(f"`min_size` must be a number >= 0. Received: min_size={min_size!r}")


def _shorter_side(boxes: np.ndarray) -> np.ndarray:
    return np.minimum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])


BOX_FORMATS = ("edgeboxes", "xywh", "yxyx")


class FileProposals:
    """Precomputed proposals read from one file per image id.

    File format: `DIRECTORY/<image_id>.npy` holding a float array `(N, 4)` or
    `(N, 5)`, or `DIRECTORY/<image_id>.txt` / `.csv` with one box per line separated
    by commas and/or whitespace (blank lines and lines starting with `#` are
    skipped). Columns, by `box_format`:

    - `"edgeboxes"` (default): `x y w h [score]` as EdgeBoxes' MATLAB toolbox writes
      them (`edgeBoxes`, Zitnick & Dollar 2014, the paper's proposals): `x, y` the
      1-based column and row of the top-left pixel, `w, h` in pixels.
    - `"xywh"`: the same with 0-based `x, y` (OpenCV's `ximgproc` EdgeBoxes).
    - `"yxyx"`: `ymin xmin ymax xmax [score]`, 0-based pixel edges.

    With a 5th column boxes are sorted by it, highest first; otherwise the file order
    is taken as best first. Boxes whose shorter side is under `min_size` are dropped
    before the `max_proposals` cut. Boxes are clipped to the image when the image is
    given.
    The first of `.npy`, `.txt`, `.csv` that exists is read.

    Args:
        directory: path of the folder of proposal files.
        max_proposals: int or None; keep at most this many (the best).
        box_format: one of `BOX_FORMATS`. Defaults to `"edgeboxes"`.
        min_size: drop boxes with a shorter side under this many pixels, before the
            cut. Defaults to `0` (none).

    Example:

    >>> import tempfile, numpy as np
    >>> folder = tempfile.mkdtemp()
    >>> np.savetxt(f"{folder}/img1.txt", [[1, 1, 5, 4, 0.9]])  # x y w h score
    >>> FileProposals(folder)(np.zeros((8, 8, 3), np.uint8), image_id="img1")
    array([[0., 0., 4., 5.]], dtype=float32)
    """

    EXTENSIONS = (".npy", ".txt", ".csv")

    def __init__(self, directory: str, max_proposals: int | None = None,
                 box_format: str = "edgeboxes", min_size: float = 0.0):
        directory = os.fspath(directory)
        if box_format not in BOX_FORMATS:
            raise ValueError(
                f"`box_format` must be one of {BOX_FORMATS}. Received: box_format={box_format!r}"
            )
        if not os.path.isdir(directory):
            raise FileNotFoundError(f"Proposal directory not found: {directory}")
        _check_max_proposals(max_proposals)
        _check_min_size(min_size)
        self.directory = directory
        self.max_proposals = max_proposals
        self.box_format = box_format
        self.min_size = float(min_size)

    def path(self, image_id: str) -> str:
        """The file read for `image_id`; FileNotFoundError when there is none."""
        if isinstance(image_id, bytes):
            image_id = image_id.decode()
        for extension in self.EXTENSIONS:
            path = os.path.join(self.directory, f"{image_id}{extension}")
            if os.path.exists(path):
                return path
        raise FileNotFoundError(
            f"No proposal file for image_id={image_id!r} in {self.directory} "
            f"(looked for {', '.join(image_id + e for e in self.EXTENSIONS)})"
        )

    def load(self, image_id: str) -> np.ndarray:
        """The boxes of `image_id`, best first, unclipped."""
        path = self.path(image_id)
        try:
            if path.endswith(".npy"):
                array = np.load(path, allow_pickle=False)
            else:
                rows = []
                with open(path) as f:
                    for line in f:
                        line = line.strip()
                        if line and not line.startswith("#"):
                            rows.append([float(v) for v in line.replace(",", " ").split()])
                lengths = {len(r) for r in rows}
                if len(lengths) > 1:
                    raise ValueError(f"rows have different lengths {sorted(lengths)}")
                array = np.array(rows, np.float32).reshape(-1, lengths.pop() if rows else 4)
        except (ValueError, OSError) as error:
            raise ValueError(f"Cannot read proposals from {path}: {error}") from error
        array = np.asarray(array, np.float32)
        if array.ndim != 2 or array.shape[1] not in (4, 5):
            if array.size == 0:
                return np.zeros((0, 4), np.float32)
            raise ValueError(
                f"Proposals in {path} must have shape (N, 4) or (N, 5). "
                f"Received: shape={array.shape}"
            )
        if not np.all(np.isfinite(array)):
            raise ValueError(f"Proposals in {path} contain NaN or infinite values.")
        if array.shape[1] == 5:
            array = array[np.argsort(-array[:, 4], kind="stable"), :4]
        array = self._to_yxyx(array)
        flipped = (array[:, 2] < array[:, 0]) | (array[:, 3] < array[:, 1])
        if flipped.any():
            warnings.warn(
                f"{int(flipped.sum())} proposals in {path} have ymax < ymin or xmax < xmin; "
                "dropped them.",
                stacklevel=2,
            )
            array = array[~flipped]
        if self.min_size > 0:
            array = array[_shorter_side(array) >= self.min_size]
        if self.max_proposals is not None:
            array = array[: self.max_proposals]
        return array

    def _to_yxyx(self, array: np.ndarray) -> np.ndarray:
        if self.box_format == "yxyx":
            return array
        x, y, w, h = array.T
        if self.box_format == "edgeboxes":
            x, y = x - 1, y - 1  # MATLAB's 1-based pixel indices
        return np.stack([y, x, y + h, x + w], 1).astype(np.float32)

    def get_config(self) -> dict:
        return {"directory": self.directory, "max_proposals": self.max_proposals,
                "box_format": self.box_format, "min_size": self.min_size}

    def __call__(self, image=None, image_id: str | None = None) -> np.ndarray:
        if image_id is None:
            raise ValueError(
                "`FileProposals` needs the `image_id` of the image. Received: image_id=None"
            )
        boxes = self.load(image_id)
        if image is not None:
            height, width = np.shape(image)[:2]
            boxes = np.clip(boxes, 0, [height, width, height, width]).astype(np.float32)
        return boxes
